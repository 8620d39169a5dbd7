"""Settings of the ledger, under ``[tenants.<id>.modules.ledger]``: the bank's chart of accounts.

    [[tenants.bank_a.modules.ledger.accounts]]
    code = "bank:settlement"
    type = "asset"
"""

from __future__ import annotations

from pydantic import Field, field_validator

from core.money import validate_currency
from core.settings import ModuleSettings, StrictModel
from infra.ledger.models import AccountType, BalanceConstraint, OwnerType


class AccountSpec(StrictModel):
    """One account of the chart; opened (idempotently) when the application starts."""

    code: str = Field(min_length=1, max_length=120)
    type: AccountType
    currency: str | None = Field(default=None, description="default: the tenant's currency")
    owner_type: OwnerType = OwnerType.BANK
    owner_id: str = ""
    constraint: BalanceConstraint = BalanceConstraint.NONE

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return validate_currency(value) if value is not None else None


class LedgerSettings(ModuleSettings):
    accounts: list[AccountSpec] = Field(default_factory=list)
    rollup_wait_seconds: float = Field(
        default=60.0, gt=0, le=3600,
        description="ledger.rollup on PostgreSQL: how long to wait for transactions that may still add "
        "postings below the new mark before giving up (RollupBusy, nothing written)",
    )
