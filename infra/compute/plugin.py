"""Registers the compute module (entry point ``compute``), enabled for every tenant by default."""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from infra.compute import hooks
from infra.compute.cli import cli
from infra.compute.container import ComputeContainer
from infra.compute.settings import ComputeSettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="compute",
            layer="infra",
            description="Batch jobs per business date: partitioned, resumable, in-process or on Dask",
            settings_model=ComputeSettings,
            migrations=Path(__file__).parent / "migrations",
            cli=cli,
            cli_aliases={"jobs": ""},
            hookspecs=hooks,
            container=ComputeContainer,
            default_enabled=True,
        )
    ]
