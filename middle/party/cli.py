"""``sceneos party ...``: register and look up customers from the command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app

cli = typer.Typer(help="Customers (party registry).", no_args_is_help=True)
console = Console()


@cli.command("register")
def register(
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant (bank) id"),
    name: str = typer.Option(..., help="full name"),
    id_number: str = typer.Option(..., "--id-number", help="18-character resident ID number"),
    phone: str = typer.Option(..., help="mainland mobile number"),
    config: str | None = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)"),
) -> None:
    """Register a customer (idempotent on the ID number)."""
    from middle.party.service import CustomerDraft

    with open_app(config) as app:
        runtime = app.tenant(tenant).module("party")
        with runtime.tenant.unit_of_work() as uow:
            result = runtime.container.service(uow=uow).register(
                CustomerDraft(name=name, id_number=id_number, phone=phone)
            )
    verb = "registered" if result.created else "already registered"
    console.print(f"{verb}: {result.customer.customer_no} {result.customer.name} {result.customer.id_number_masked}")


@cli.command("show")
def show(
    customer_no: str = typer.Argument(..., help="customer number (cus_...)"),
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant (bank) id"),
    config: str | None = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)"),
) -> None:
    """Show one customer, identifiers masked."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("party")
        with runtime.tenant.unit_of_work() as uow:
            customer = runtime.container.service(uow=uow).get(customer_no)
    table = Table(show_header=False)
    for key, value in customer.__dict__.items():
        table.add_row(key, str(value))
    console.print(table)
