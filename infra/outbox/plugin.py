"""Registers the outbox: an infrastructure module every tenant has, and the application's event bus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from infra.outbox.cli import cli
from infra.outbox.retention import PURGE
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
            jobs=(PURGE,),
            default_enabled=True,
        )
    ]


@hookimpl
def sceneos_make_event_bus(app: Any) -> Any:
    from infra.outbox.service import OutboxEventBus

    return OutboxEventBus(app)


RELAY_POLL_SECONDS = 1.0


@hookimpl
def sceneos_http_app(app: Any, http: Any) -> None:
    """``sceneos serve`` sweeps the outbox in the background: retries and crashed deliveries are
    relayed without a separate worker (several API processes may sweep; claims keep it single)."""
    import asyncio
    import contextlib

    from infra.outbox.service import OutboxRelay, log

    inner = http.router.lifespan_context

    async def sweep() -> None:
        relay = OutboxRelay(app)
        while True:
            await asyncio.sleep(RELAY_POLL_SECONDS)
            try:
                await asyncio.to_thread(relay.run_once)
            except Exception as exc:  # keep sweeping; the next pass retries
                log.error("outbox sweep failed", error=f"{type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(asgi: Any) -> Any:
        task = asyncio.create_task(sweep())
        try:
            async with inner(asgi) as state:
                yield state
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    http.router.lifespan_context = lifespan
