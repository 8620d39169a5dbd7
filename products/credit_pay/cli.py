"""``sceneos credit_pay ...``: the bank's view of credit-pay accounts, purchases and plan trials."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app

cli = typer.Typer(help="Credit pay: accounts, purchases, installment trials.", no_args_is_help=True)
console = Console()

TENANT = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
CONFIG = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")


@cli.command("trial")
def trial(
    amount_minor: int = typer.Argument(..., help="amount in minor units (fen)"),
    tenant: str = TENANT,
    product: str = typer.Option("standard", help="product code"),
    terms: int | None = typer.Option(None, help="only plans of this many terms"),
    config: str | None = CONFIG,
) -> None:
    """Every installment of each plan for an amount, with the annualized rate (IRR)."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("credit_pay")
        with runtime.tenant.unit_of_work() as uow:
            result = runtime.container.service(uow=uow).trial(product, amount_minor, terms=terms)
    for plan in result.plans:
        table = Table(
            title=f"{plan.terms} x {plan.method}: annualized {plan.annualized_rate_bps} bps "
            f"(IRR), total charge {plan.total_charge_minor}"
        )
        for column in ("#", "principal", "charge", "total"):
            table.add_column(column, justify="right")
        for item in plan.installments:
            table.add_row(
                str(item.number), str(item.principal_minor), str(item.charge_minor), str(item.total_minor)
            )
        console.print(table)
    for withheld in result.withheld:
        console.print(f"withheld (above the {result.annual_rate_ceiling_bps} bps ceiling): {withheld}")


@cli.command("account")
def account(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """One account: line, available, held and outstanding amounts, price."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("credit_pay")
        with runtime.tenant.unit_of_work() as uow:
            view = runtime.container.service(uow=uow).account(account_no)
    table = Table(show_header=False)
    for key, value in view.model_dump().items():
        table.add_row(key, str(value))
    console.print(table)


@cli.command("purchases")
def purchases(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Every purchase of an account, oldest first."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("credit_pay")
        with runtime.tenant.unit_of_work() as uow:
            rows = runtime.container.service(uow=uow).purchases(account_no)
    table = Table()
    for column in ("purchase", "merchant", "amount", "status", "refunded", "reasons", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.purchase_id,
            row.merchant_id,
            str(row.amount_minor),
            row.status,
            str(row.refunded_minor),
            ",".join(row.reasons),
            row.created_at.isoformat(),
        )
    console.print(table)
