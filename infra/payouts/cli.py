"""``sceneos payouts ...``: make a pain.001 file, read a pain.002 status report, list payouts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app
from core.errors import ValidationFailed
from infra.payouts.service import Payouts

cli = typer.Typer(help="Payouts: ISO 20022 credit transfers out of the bank.", no_args_is_help=True)
console = Console()
TenantOption = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
ConfigOption = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")
T = TypeVar("T")


def _call(config: str | None, tenant: str, fn: Callable[[Payouts], T]) -> T:
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payouts")  # refused in one line when the bank has it off
        with runtime.tenant.unit_of_work() as uow:
            return fn(Payouts.of(uow))


@cli.command("batch")
def batch(
    day: str = typer.Option(..., "--date", help="requested execution date (YYYY-MM-DD)"),
    out: Path = typer.Option(..., "--out", "-o", help="where to write the pain.001 file"),
    currency: str = typer.Option("CNY", help="currency"),
    tenant: str = TenantOption,
    config: str | None = ConfigOption,
) -> None:
    """Put the pending payouts of a currency into one pain.001 file for the payment system."""
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise ValidationFailed(f"--date {day!r} is not a date (YYYY-MM-DD)") from None
    made = _call(config, tenant, lambda payouts: payouts.batch(when, currency))
    if made is None:
        console.print(f"no pending payouts in {currency}")
        return
    out.write_text(made.document, encoding="utf-8")
    console.print(f"batch {made.batch_no}: {made.count} payouts, {made.total_minor} {currency} minor units -> {out}")


@cli.command("file")
def file(batch_no: str, out: Path = typer.Option(..., "--out", "-o"), tenant: str = TenantOption,
         config: str | None = ConfigOption) -> None:
    """Write a batch's pain.001 again (e.g. to send it once more)."""
    made = _call(config, tenant, lambda payouts: payouts.get_batch(batch_no))
    out.write_text(made.document, encoding="utf-8")
    console.print(f"batch {made.batch_no} -> {out}")


@cli.command("status")
def status(report: Path = typer.Argument(..., help="a pain.002 status report"), tenant: str = TenantOption,
           config: str | None = ConfigOption) -> None:
    """Apply the payment system's pain.002 status report: accepted payouts leave the bank, rejected
    ones are owed again."""
    content = _read(report)
    outcome = _call(config, tenant, lambda payouts: payouts.apply_status_report(content))
    console.print(f"accepted {len(outcome.accepted)}, rejected {len(outcome.rejected)}, "
                  f"unchanged {len(outcome.unchanged)}, unknown {len(outcome.unknown)}")
    for payout_no in outcome.unknown:
        console.print(f"unknown end-to-end id: {payout_no}")


@cli.command("return")
def payment_return(file: Path = typer.Argument(..., help="a pacs.004 payment return"), tenant: str = TenantOption,
                   config: str | None = ConfigOption) -> None:
    """Apply a pacs.004 payment return: payouts brought back after acceptance are owed again."""
    content = _read(file)
    outcome = _call(config, tenant, lambda payouts: payouts.apply_payment_return(content))
    console.print(f"returned {len(outcome.returned)}, unchanged {len(outcome.unchanged)}, "
                  f"unknown {len(outcome.unknown)}, refused {len(outcome.refused)}")
    for payout_no in outcome.unknown:
        console.print(f"unknown end-to-end id: {payout_no}")
    for payout_no in outcome.refused:
        console.print(f"refused (the amount or currency differs from the payout's): {payout_no}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None


@cli.command("list")
def list_payouts(status: str | None = typer.Option(None, help="pending, sent, accepted, rejected or returned"),
                 tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """The latest payouts."""
    rows: list[Any] = _call(config, tenant, lambda payouts: payouts.payouts(status))
    table = Table(title=f"payouts of {tenant}")
    for column in ("payout", "instruction", "beneficiary", "amount", "currency", "status", "batch", "reason"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for row in rows:
        table.add_row(row.payout_no, row.instruction_id, row.creditor_name, str(row.amount_minor), row.currency,
                      row.status, row.batch_no or "", row.reason or "")
    console.print(table)
