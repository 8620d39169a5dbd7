"""Registers the party module. Built-in modules are plugins like any other (entry point ``party``)."""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from middle.party import hooks
from middle.party.api import router
from middle.party.cli import cli
from middle.party.container import PartyContainer
from middle.party.settings import PartySettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="party",
            layer="middle",
            description="Customer registry with validated resident ID and mobile numbers",
            settings_model=PartySettings,
            migrations=Path(__file__).parent / "migrations",
            router=router,
            cli=cli,
            hookspecs=hooks,
            container=PartyContainer,
        )
    ]
