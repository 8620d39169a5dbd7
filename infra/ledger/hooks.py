"""Hookspecs of the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.hookspecs import hookspec

if TYPE_CHECKING:
    from core.tenancy import Tenant
    from infra.ledger.settings import AccountSpec


@hookspec
def sceneos_ledger_chart_of_accounts(tenant: Tenant) -> list[AccountSpec]:  # type: ignore[empty-body]
    """Declare accounts a module or bank plugin needs in ``tenant``'s chart of accounts.

    Called once per tenant at startup, after the accounts from configuration are opened; every
    account is opened idempotently (an existing account with other attributes is an error).

    :param tenant: the bank whose chart is being opened.
    :return: a list of :class:`infra.ledger.settings.AccountSpec` (collected from every plugin).
    """
