"""Registers the outbox: an infrastructure module every tenant has, and the application's event bus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from infra.outbox.cli import cli
from infra.outbox.settings import OutboxSettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="outbox",
            layer="infra",
            description="Transactional outbox: events committed with their change, delivered at-least-once",
            settings_model=OutboxSettings,
            migrations=Path(__file__).parent / "migrations",
            cli=cli,
            default_enabled=True,
        )
    ]


@hookimpl
def sceneos_make_event_bus(app: Any) -> Any:
    from infra.outbox.service import OutboxEventBus

    return OutboxEventBus(app)
