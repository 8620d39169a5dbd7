"""``sceneos outbox ...``: run the relay, see what is undelivered."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app

cli = typer.Typer(help="Transactional outbox: event delivery.", no_args_is_help=True)
console = Console()


@cli.command("relay")
def relay(
    config: str | None = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)"),
    loop: bool = typer.Option(False, "--loop", help="keep running, polling every --interval seconds"),
    interval: float = typer.Option(1.0, min=0.05, help="seconds between sweeps with --loop"),
    max_sweeps: int = typer.Option(0, min=0, help="stop after this many sweeps with --loop (0: never)"),
) -> None:
    """Deliver due events (new, retries, crashed deliveries) once, or continuously with --loop."""
    from infra.outbox.service import OutboxRelay

    with open_app(config) as app:
        outbox = OutboxRelay(app)
        sweeps = 0
        while True:
            report = outbox.run_once()
            sweeps += 1
            if report.claimed or not loop:
                console.print(f"claimed {report.claimed}, delivered {report.delivered}, failed {report.failed}")
            if not loop or (max_sweeps and sweeps >= max_sweeps):
                break
            time.sleep(interval)


@cli.command("status")
def status(config: str | None = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")) -> None:
    """Events, undelivered events and dead deliveries per tenant."""
    from infra.outbox.service import outbox_counts

    with open_app(config) as app:
        table = Table(title="Outbox")
        for column in ("tenant", "events", "undelivered", "dead deliveries"):
            table.add_column(column)
        for tenant in app.tenants.values():
            if not tenant.has_module("outbox"):
                continue
            with tenant.unit_of_work() as uow:
                counts = outbox_counts(uow.session)
            table.add_row(tenant.id, str(counts["events"]), str(counts["undelivered"]), str(counts["dead_deliveries"]))
    console.print(table)
