"""``sceneos payments ...``: merchants, operators and shift statements from the command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app
from core.money import Money

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
