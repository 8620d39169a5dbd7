"""``sceneos payments reconcile FILE`` and ``sceneos payments recon list|show|resolve|audit``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app
from core.errors import SceneOSError
from core.money import Money
from products.payments.reconciliation import KINDS, ReconciliationService, ReconExceptionView, ReconRunView

T = TypeVar("T")
recon_cli = typer.Typer(help="Reconciliation runs against the acquiring channel's statement files.",
                        no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

TENANT = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
CONFIG = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")
ACTOR = typer.Option(..., "--as", help="the named user doing it (recorded in the audit)")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except SceneOSError as exc:
        errors.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _call(config: str | None, tenant: str, fn: Callable[[ReconciliationService], T]) -> T:
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            return fn(ReconciliationService(uow, runtime.settings))  # type: ignore[arg-type]


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _money(amount_minor: int | None, currency: str | None) -> str:
    return "" if amount_minor is None or currency is None else str(Money(amount_minor, currency))


def _run_table(run: ReconRunView) -> Table:
    table = Table("run", "date", "file", "status", "lines", "ours", "matched", "exceptions", "open",
                  title=f"reconciliation {run.run_no}")
    table.add_row(run.run_no, run.business_date.isoformat(), f"{run.file_name} ({run.file_format})", run.status,
                  str(run.line_count), _n(run.our_count), _n(run.matched_count), _n(run.exception_count),
                  _n(run.open_count))
    return table


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _summary_table(run: ReconRunView) -> Table:
    table = Table("kind", "count")
    for kind in KINDS:
        table.add_row(kind, str(run.summary.get(kind, 0)))
    return table


def _exceptions_table(rows: list[ReconExceptionView]) -> Table:
    table = Table("exception", "kind", "payment", "channel ref", "ours", "channel", "difference", "resolution")
    for e in rows:
        ours = " ".join(filter(None, [_money(e.our_amount_minor, e.our_currency), e.our_status]))
        theirs = " ".join(filter(None, [_money(e.channel_amount_minor, e.channel_currency), e.channel_status]))
        currency = e.our_currency or e.channel_currency
        resolution = f"{e.resolution} by {e.resolved_by}" if e.resolution else "open"
        subject = f"{e.refund_no} (refund of {e.payment_no})" if e.refund_no else e.payment_no or ""
        table.add_row(e.exception_no, e.kind, subject, e.channel_ref or "", ours, theirs,
                      _money(e.difference_minor, currency), resolution)
    return table


def register(cli: typer.Typer) -> None:
    """Add ``reconcile`` and the ``recon`` group to the payments CLI."""

    @cli.command("reconcile")
    def reconcile(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="the channel's statement file"),
        day: str = typer.Option(..., "--date", "-d", help="business date the file covers, YYYY-MM-DD"),
        file_format: str = typer.Option(..., "--format", "-f", help="csv or camt053"),
        actor: str = ACTOR,
        tenant: str = TENANT,
        config: str | None = CONFIG,
    ) -> None:
        """Receive a statement file for a day and reconcile it (the same file again shows the same run)."""
        business_date = _day(day)
        with _one_line_errors():
            run, created = _call(config, tenant, lambda svc: svc.receive(
                business_date, file.read_bytes(), file_format, file_name=file.name, actor=actor))
        console.print(_run_table(run))
        console.print(_summary_table(run))
        if not created:
            console.print("already received: the same file for this day is this run")

    cli.add_typer(recon_cli, name="recon")


@recon_cli.command("list")
def list_runs(day: str | None = typer.Option(None, "--date", "-d", help="only this business date"),
              tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Reconciliation runs, newest first."""
    business_date = _day(day) if day else None
    with _one_line_errors():
        runs = _call(config, tenant, lambda svc: svc.list_runs(business_date))
    table = Table("run", "date", "file", "status", "lines", "matched", "exceptions", "open")
    for run in runs:
        table.add_row(run.run_no, run.business_date.isoformat(), run.file_name, run.status, str(run.line_count),
                      _n(run.matched_count), _n(run.exception_count), _n(run.open_count))
    console.print(table)


@recon_cli.command("show")
def show(run_no: str = typer.Argument(..., help="run number (rec_...)"),
         open_only: bool = typer.Option(False, "--open", help="only unresolved exceptions"),
         kind: str | None = typer.Option(None, "--kind", help=f"one of {', '.join(KINDS)}"),
         limit: int = typer.Option(200, "--limit", min=1, max=1000),
         tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """A run's counts and its exceptions."""
    def go(svc: ReconciliationService) -> tuple[ReconRunView, list[ReconExceptionView]]:
        return svc.get_run(run_no), svc.exceptions(run_no, open_only=open_only, kind=kind, limit=limit)

    with _one_line_errors():
        run, rows = _call(config, tenant, go)
    console.print(_run_table(run))
    console.print(_summary_table(run))
    console.print(_exceptions_table(rows))


@recon_cli.command("resolve")
def resolve(exception_no: str = typer.Argument(..., help="exception number (rec_...-L2 or rec_...-Ppay_...)"),
            action: str = typer.Option(..., "--action", help="accept, write_off or fixed"),
            note: str = typer.Option(..., "--note", help="why"),
            later_run: str | None = typer.Option(None, "--later-run", help="for fixed: the later file's run"),
            actor: str = ACTOR, tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Resolve one exception (once); a write-off posts a ledger adjustment entry."""
    with _one_line_errors():
        e = _call(config, tenant, lambda svc: svc.resolve(exception_no, action, actor, note, later_run_no=later_run))
    console.print(_exceptions_table([e]))
    if e.ledger_entry_id:
        console.print(f"ledger entry {e.ledger_entry_id}")


@recon_cli.command("audit")
def audit(run_no: str = typer.Argument(...), tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Who received, reconciled and resolved what, and when."""
    with _one_line_errors():
        rows = _call(config, tenant, lambda svc: svc.audit(run_no))
    table = Table("at", "action", "by", "exception", "note", "ledger entry")
    for a in rows:
        table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}Z", a.action, a.actor, a.exception_no or "", a.note or "",
                      a.ledger_entry_id or "")
    console.print(table)


