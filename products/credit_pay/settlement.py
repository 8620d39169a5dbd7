"""Merchant settlement: what the bank owes each merchant for its credit-pay sales, settled daily.

A captured purchase credits the merchant's payable (``credit_pay:merchant:<currency>:<merchant_id>``,
a liability); a refund, and a merchant's payment for its interest-free plans, debit it. After
business day D has ended, :meth:`MerchantSettlements.settle` moves what the payable owes through
the end of D, and has not been settled yet, to ``credit_pay:merchant_payout:<currency>`` (a bank
liability: the payouts the bank's payment rails send to merchants' bank accounts; with the
``payouts`` module on and the merchant's ``merchant_bank_accounts`` entry, each settlement is also
instructed as a payout, which its pain.001 sends)
in one entry ``credit_pay:merchant_settlement:<currency>:<merchant_id>:<D>``, and records it
(``credit_pay_merchant_settlements``, one per merchant, currency and day).

The amount is cumulative, so the order days are settled in never pays twice:
``owed through the end of D (settlements apart) - everything settled so far``. A payable in the
merchant's disfavour (refunds and subsidies above its sales) is carried into the next day: nothing
is paid and nothing recorded. Settling a day again answers its record and posts nothing; settling
an earlier day after a later one finds nothing left. Settlements of one merchant are serialized
(SQLite's one writer; a transaction-scoped advisory lock on PostgreSQL).

A payment the payments module funds from credit pay is not settled here: that module empties the
payable (it is the funding source's clearing account) into its own merchant settlement in the same
unit of work, so it nets to zero here.

The compute job ``credit_pay.merchant_settlement`` settles a business date for every merchant
with a credit-pay purchase (one partition per merchant and currency).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, text

from core.clock import day_window
from core.errors import NotFound, ValidationFailed
from core.modules import JobSpec
from core.money import validate_currency
from infra.ledger import EntryDraft, Posting, UnknownAccount
from infra.payouts import Payouts
from products.credit_pay.models import CreditPayMerchantSettlement, CreditPayPurchase
from products.credit_pay.service import CreditPayService, merchant_account
from products.credit_pay.settings import ID_PATTERN


def merchant_payout_account(currency: str) -> str:
    """Payouts due to merchants, sent by the bank's payment rails (liability)."""
    return f"credit_pay:merchant_payout:{currency}"


def settlement_entry_id(currency: str, merchant_id: str, day: date) -> str:
    return f"credit_pay:merchant_settlement:{currency}:{merchant_id}:{day.isoformat()}"


@dataclass(frozen=True)
class SettlementView:
    merchant_id: str
    currency: str
    business_date: date
    amount_minor: int
    # What the merchant's sales, refunds and subsidies came to through the end of the day, and
    # what had been settled before this settlement.
    owed_through_day_minor: int
    settled_before_minor: int
    entry_id: str | None
    posted: bool
    created_at: datetime | None

    @classmethod
    def of(cls, row: CreditPayMerchantSettlement) -> SettlementView:
        return cls(
            merchant_id=row.merchant_id,
            currency=row.currency,
            business_date=row.business_date,
            amount_minor=row.amount_minor,
            owed_through_day_minor=row.owed_through_day_minor,
            settled_before_minor=row.settled_before_minor,
            entry_id=row.entry_id,
            posted=True,
            created_at=row.created_at,
        )


class MerchantSettlements:
    """One tenant's credit-pay merchant settlements, within the unit of work of ``pay``."""

    def __init__(self, pay: CreditPayService) -> None:
        self.pay = pay
        self.session = pay.session
        self.uow = pay.uow
        self.tenant = pay.tenant

    def settle(self, merchant_id: str, day: date, currency: str = "CNY") -> tuple[SettlementView, bool]:
        """Settle the merchant's payable through the end of business day ``day`` (see the module
        docstring). Answers the settlement and whether this call posted it; a day already settled
        answers its record (``False``), a day with nothing to pay a view with amount 0, not
        recorded."""
        merchant_id, currency = _check(merchant_id, currency)
        _, end = day_window(self.tenant.timezone, day)
        if self.uow.clock.now() < end:
            raise ValidationFailed(
                f"business day {day.isoformat()} has not ended; settle it after midnight",
                details=[{"field": "business_date", "code": "day_not_over", "message": "the day is still open"}],
            )
        self._serialize(merchant_id, currency)
        existing = self._row(merchant_id, currency, day)
        if existing is not None:
            return SettlementView.of(existing), False
        view = self._figures(merchant_id, currency, day, end)
        if view.amount_minor <= 0:
            return view, False
        ledger = self.pay.ledger
        payable = merchant_account(currency, merchant_id)
        ledger.open_account(merchant_payout_account(currency), currency, "liability")
        entry_id = settlement_entry_id(currency, merchant_id, day)
        posted = ledger.post(
            EntryDraft(
                entry_id,
                [Posting.debit(payable, view.amount_minor), Posting.credit(merchant_payout_account(currency), view.amount_minor)],
                description="credit pay merchant settlement",
                metadata={"merchant_id": merchant_id, "business_date": day.isoformat()},
            )
        )
        row = CreditPayMerchantSettlement(
            merchant_id=merchant_id,
            currency=currency,
            business_date=day,
            amount_minor=view.amount_minor,
            owed_through_day_minor=view.owed_through_day_minor,
            settled_before_minor=view.settled_before_minor,
            entry_id=entry_id,
            posted_at=posted.created_at,
            created_at=self.uow.clock.now(),
        )
        self.session.add(row)
        self.session.flush()
        self._instruct_payout(merchant_id, currency, day, view.amount_minor, entry_id)
        self.uow.publish(
            "credit_pay.merchant.settled",
            {
                "merchant_id": merchant_id,
                "currency": currency,
                "business_date": day.isoformat(),
                "amount_minor": view.amount_minor,
                "entry_id": entry_id,
            },
            subject=f"merchant:{merchant_id}",
        )
        return SettlementView.of(row), True

    def settlements(self, merchant_id: str, currency: str = "CNY") -> list[SettlementView]:
        """The merchant's settlements, oldest first."""
        merchant_id, currency = _check(merchant_id, currency)
        rows = self.session.scalars(
            select(CreditPayMerchantSettlement)
            .where(
                CreditPayMerchantSettlement.merchant_id == merchant_id,
                CreditPayMerchantSettlement.currency == currency,
            )
            .order_by(CreditPayMerchantSettlement.business_date)
        ).all()
        return [SettlementView.of(row) for row in rows]

    def merchants(self) -> list[tuple[str, str]]:
        """``(currency, merchant_id)`` of every merchant with a credit-pay purchase."""
        rows = self.session.execute(
            select(CreditPayPurchase.currency, CreditPayPurchase.merchant_id)
            .distinct()
            .order_by(CreditPayPurchase.currency, CreditPayPurchase.merchant_id)
        ).all()
        return [(currency, merchant_id) for currency, merchant_id in rows]

    # --- inside -------------------------------------------------------------------------------

    def _figures(self, merchant_id: str, currency: str, day: date, end: datetime) -> SettlementView:
        try:
            balance = self.pay.ledger.balance(merchant_account(currency, merchant_id), as_of=end)
        except UnknownAccount:
            raise NotFound(f"no credit-pay merchant {merchant_id!r} in {currency}") from None
        # The payable's balance through the end of the day counts the settlements posted by then
        # as debits; adding them back gives what the merchant's sales came to.
        settled = self.session.execute(
            select(
                func.coalesce(func.sum(CreditPayMerchantSettlement.amount_minor), 0),
                func.coalesce(
                    func.sum(CreditPayMerchantSettlement.amount_minor).filter(
                        CreditPayMerchantSettlement.posted_at <= end
                    ),
                    0,
                ),
            ).where(
                CreditPayMerchantSettlement.merchant_id == merchant_id,
                CreditPayMerchantSettlement.currency == currency,
            )
        ).one()
        settled_before, settled_by_end = int(settled[0]), int(settled[1])
        owed = balance.net_posted_minor + settled_by_end
        return SettlementView(
            merchant_id=merchant_id,
            currency=currency,
            business_date=day,
            amount_minor=max(owed - settled_before, 0),
            owed_through_day_minor=owed,
            settled_before_minor=settled_before,
            entry_id=None,
            posted=False,
            created_at=None,
        )

    def _instruct_payout(self, merchant_id: str, currency: str, day: date, amount_minor: int, entry_id: str) -> None:
        """With the payouts module on and the merchant's bank account configured, the settlement goes
        out of the bank: a payout owed from the payout account (infra/payouts)."""
        account = self.pay.settings.merchant_bank_accounts.get(merchant_id)
        if account is None or not self.tenant.has_module("payouts"):
            return
        Payouts.of(self.uow).instruct(account.draft(
            instruction_id=entry_id, source="credit_pay", debit_account=merchant_payout_account(currency),
            amount_minor=amount_minor, currency=currency, remittance_info=f"credit pay settlement {day.isoformat()}",
        ))

    def _row(self, merchant_id: str, currency: str, day: date) -> CreditPayMerchantSettlement | None:
        return self.session.scalars(
            select(CreditPayMerchantSettlement).where(
                CreditPayMerchantSettlement.merchant_id == merchant_id,
                CreditPayMerchantSettlement.currency == currency,
                CreditPayMerchantSettlement.business_date == day,
            )
        ).one_or_none()

    def _serialize(self, merchant_id: str, currency: str) -> None:
        """One settler of a merchant at a time: the amount depends on every earlier settlement."""
        if self.session.get_bind().dialect.name == "postgresql":
            key = f"credit_pay:merchant_settlement:{self.tenant.id}:{currency}:{merchant_id}"
            self.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


def _check(merchant_id: str, currency: str) -> tuple[str, str]:
    if not isinstance(merchant_id, str) or not re.match(ID_PATTERN, merchant_id):
        raise ValidationFailed(
            "merchant_id must be 1 to 64 of A-Z a-z 0-9 _ . : - (starting alphanumeric)",
            details=[{"field": "merchant_id", "code": "invalid", "message": "not a valid id"}],
        )
    try:
        return merchant_id, validate_currency(currency)
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), details=[{"field": "currency", "code": "invalid", "message": str(exc)}]
        ) from None


# --- the compute job -----------------------------------------------------------------------------


def _plan(ctx: Any) -> Sequence[str]:
    service = ctx.module("credit_pay").container.service(uow=ctx.uow)
    return [f"{currency}:{merchant_id}" for currency, merchant_id in MerchantSettlements(service).merchants()]


def _run_partition(ctx: Any) -> Mapping[str, Any]:
    currency, merchant_id = ctx.key.split(":", 1)
    service = ctx.module("credit_pay").container.service(uow=ctx.uow)
    view, posted = MerchantSettlements(service).settle(merchant_id, ctx.business_date, currency)
    return {"merchants_settled": int(posted), f"settled_minor_{currency}": view.amount_minor if posted else 0}


MERCHANT_SETTLEMENT = JobSpec(
    name="credit_pay.merchant_settlement",
    partitions=_plan,
    run_partition=_run_partition,
    description="Credit pay merchant settlement: each merchant's payable through the business date to payouts",
)
