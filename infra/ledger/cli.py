"""``sceneos ledger ...``: accounts, balances and the trial balance of one tenant."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app
from core.errors import ValidationFailed
from core.money import Money

cli = typer.Typer(help="Double-entry ledger.", no_args_is_help=True)
console = Console()
TenantOption = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
ConfigOption = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"--as-of {value!r} is not an ISO 8601 date-time") from None
    if instant.tzinfo is None:
        raise ValidationFailed("--as-of needs a timezone, e.g. 2026-03-01T00:00:00+08:00")
    return instant


@cli.command("accounts")
def accounts(tenant: str = TenantOption, as_of: str | None = typer.Option(None, help="ISO date-time"),
             config: str | None = ConfigOption) -> None:
    """Every account with its posted, pending and available balance."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("ledger")
        with runtime.tenant.unit_of_work() as uow:
            ledger = runtime.container.ledger(session=uow.session)
            rows = ledger.accounts()
            balances = ledger.balances([a.code for a in rows], as_of=_as_of(as_of))
    table = Table(title=f"Accounts of {tenant}")
    for column in ("code", "type", "currency", "constraint", "posted", "pending", "available"):
        table.add_column(column, justify="right" if column in ("posted", "pending", "available") else "left")
    for account in rows:
        balance = balances[account.code]
        table.add_row(account.code, str(account.type), account.currency, str(account.constraint),
                      str(Money(balance.net_posted_minor, account.currency).amount),
                      str(Money(balance.debits_pending_minor - balance.credits_pending_minor, account.currency).amount),
                      str(Money(balance.available_minor, account.currency).amount) if account.constraint != "none" else "-")
    console.print(table)


@cli.command("trial-balance")
def trial_balance(tenant: str = TenantOption, currency: str | None = typer.Option(None, help="default: the tenant's"),
                  as_of: str | None = typer.Option(None, help="ISO date-time"), config: str | None = ConfigOption) -> None:
    """Debits minus credits by account type; the total is always zero."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("ledger")
        code = currency or runtime.tenant.currency
        with runtime.tenant.unit_of_work() as uow:
            result = runtime.container.ledger(session=uow.session).trial_balance(code, as_of=_as_of(as_of))
    table = Table(title=f"Trial balance of {tenant} ({code})")
    table.add_column("type")
    table.add_column("debits - credits", justify="right")
    for account_type, net in sorted(result.by_type.items()):
        table.add_row(str(account_type), str(Money(net, code).amount))
    table.add_row("[bold]total[/bold]", str(Money(result.net_minor, code).amount))
    console.print(table)
