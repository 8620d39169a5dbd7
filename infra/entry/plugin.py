"""Registers the super entry: an infrastructure module every tenant has, the HTTP surface for
partners, and the outbox subscriber that turns events into webhook deliveries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from infra.entry.cli import cli
from infra.entry.container import EntryContainer
from infra.entry.retention import PURGE
from infra.entry.settings import EntryModuleSettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="entry",
            layer="infra",
            description="Super entry: signed partner API, idempotency, consent, rate limits, webhooks",
            settings_model=EntryModuleSettings,
            migrations=Path(__file__).parent / "migrations",
            cli=cli,
            cli_aliases={"partners": "partners", "webhooks": "webhooks"},
            container=EntryContainer,
            jobs=(PURGE,),
            default_enabled=True,
        )
    ]


@hookimpl
def sceneos_startup(app: Any, tenant: Any) -> None:
    from infra.entry.runtime import entry_of

    # Fails startup (one line) when secrets cannot be protected: no master key on a server database.
    entry_of(app)


@hookimpl
def sceneos_on_event(event: Any, tenant: Any) -> None:
    from infra.entry.webhooks import record_event

    record_event(event, tenant)


@hookimpl
def sceneos_http_app(app: Any, http: Any) -> None:
    from infra.entry.surface import extend_http

    extend_http(app, http)
