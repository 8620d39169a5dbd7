"""``sceneos payments ...``: merchants, operators and shift statements from the command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app
from core.money import Money
from products.payments.recon_cli import register as register_recon

cli = typer.Typer(help="Payments: the smart cashier.", no_args_is_help=True)
console = Console()

TENANT = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
CONFIG = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")


@cli.command("sync")
def sync(tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """Write the configured merchants, stores and terminals (also done at startup)."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            ids = runtime.container.service(uow=uow).sync_configuration()
    console.print(f"merchants synced: {', '.join(ids) or '(none configured)'}")


@cli.command("merchants")
def merchants(tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """List merchants with their stores and terminals."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            views = runtime.container.service(uow=uow).list_merchants()
    table = Table("merchant", "name", "city", "MCC", "fee rate", "settlement account", "terminals")
    for m in views:
        terminals = ", ".join(t["terminal_id"] for s in m.stores for t in s["terminals"])
        table.add_row(m.merchant_id, m.name, m.city, m.mcc, m.fee_rate, m.settlement_account, terminals)
    console.print(table)


@cli.command("add-operator")
def add_operator(
    tenant: str = TENANT,
    employee_no: str = typer.Option(..., "--employee-no"),
    merchant_id: str = typer.Option(..., "--merchant"),
    name: str = typer.Option(...),
    role: str = typer.Option("cashier", help="cashier or supervisor"),
    pin: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    config: str | None = CONFIG,
) -> None:
    """Add a cashier or supervisor (the PIN is hashed with scrypt; never stored or shown)."""
    from products.payments.service import OperatorDraft

    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            view, created = runtime.container.service(uow=uow).add_operator(
                OperatorDraft(employee_no=employee_no, merchant_id=merchant_id, name=name, role=role, pin=pin))
    console.print(f"{'added' if created else 'already exists'}: {view.employee_no} {view.name} ({view.role})")


@cli.command("statement")
def statement(
    shift_no: str = typer.Argument(..., help="shift number (shf_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """A shift's statement: counts and amounts by tender, refunds, net."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            s = runtime.container.service(uow=uow).statement(shift_no)
    console.print(f"shift {s.shift_no}  operator {s.employee_no}  terminal {s.terminal_id}")
    table = Table("", "tender", "count", "amount")
    for kind, lines in (("sales", s.sales), ("refunds", s.refunds)):
        for line in lines:
            table.add_row(kind, line.tender, str(line.count), str(Money(line.amount_minor, s.currency)))
    table.add_row("net", "", "", str(Money(s.net_minor, s.currency)))
    console.print(table)


def _day_table(s) -> Table:
    """A day statement as a table: sales and refunds by tender, totals, fees."""
    table = Table("", "tender", "count", "amount", title=f"{s.scope} {s.scope_id}  {s.day.isoformat()}  ({s.currency})")
    for kind, lines in (("sales", s.sales), ("refunds", s.refunds)):
        for line in lines:
            table.add_row(kind, line.tender, str(line.count), str(Money(line.amount_minor, s.currency)))
    table.add_row("total sales", "", str(sum(line.count for line in s.sales)), str(Money(s.sales_minor, s.currency)))
    table.add_row("total refunds", "", str(sum(line.count for line in s.refunds)),
                  str(Money(s.refunds_minor, s.currency)))
    table.add_row("net", "", "", str(Money(s.net_minor, s.currency)))
    table.add_row("fees (merchant discount)", "", "", str(Money(s.fees_minor, s.currency)))
    return table


def _parse_day(day: str):
    from datetime import date

    try:
        return date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter("day must be YYYY-MM-DD") from None


DAY = typer.Option(..., "--day", help="business day, YYYY-MM-DD (the bank's time zone)")


@cli.command("terminal-statement")
def terminal_statement(terminal_id: str = typer.Argument(..., help="terminal (window) id"), day: str = DAY,
                       tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """A terminal's day: sales and refunds by tender, net."""
    business_day = _parse_day(day)
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            s = runtime.container.service(uow=uow).terminal_statement(terminal_id, business_day)
    console.print(_day_table(s))


@cli.command("merchant-statement")
def merchant_statement(merchant_id: str = typer.Argument(..., help="merchant id"), day: str = DAY,
                       tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """A merchant's day over all its terminals: sales and refunds by tender, net, fees."""
    business_day = _parse_day(day)
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            s = runtime.container.service(uow=uow).merchant_statement(merchant_id, business_day)
    console.print(_day_table(s))


@cli.command("settlement")
def settlement(merchant_id: str = typer.Argument(..., help="merchant id"), day: str = DAY,
               post: bool = typer.Option(False, "--post", help="post it now (once; the day must have ended)"),
               tenant: str = TENANT, config: str | None = CONFIG) -> None:
    """A merchant's settlement of a day: gross, refunds, fees, net; --post posts it to the ledger."""
    business_day = _parse_day(day)
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("payments")
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow)
            s = service.settle(merchant_id, business_day)[0] if post else service.settlement(merchant_id, business_day)
    table = Table("", "count", "amount", title=f"settlement {s.merchant_id}  {s.business_date.isoformat()}  "
                                               f"({'posted ' + (s.entry_id or 'nothing to move') if s.posted else 'not posted'})")
    table.add_row("gross", str(s.payment_count), str(Money(s.gross_minor, s.currency)))
    table.add_row("refunds", str(s.refund_count), str(Money(s.refunds_minor, s.currency)))
    table.add_row("fees", "", str(Money(s.fees_minor, s.currency)))
    table.add_row("net", "", str(Money(s.net_minor, s.currency)))
    table.add_row("payout account", "", s.payout_account)
    console.print(table)


register_recon(cli)  # `reconcile` and `recon ...` (recon_cli.py)
