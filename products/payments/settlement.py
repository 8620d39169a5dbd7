"""A merchant's daily settlement, and the ``payments.settlement`` compute job that posts it.

Every payment taken through the bank (QR or payment code, from an account or a funding source)
credits the merchant's payable account (``settlement_account``) with the amount less the merchant
discount, and the bank's fee income with the discount (per payment, ``amount x fee_rate`` rounded
the tenant's way, at the moment of payment); a refund takes both back pro rata. The day's
settlement sums that day: gross (non-cash sales), refunds, fees (discount on sales less the part
refunded) and net = gross - refunds - fees, which is exactly what the day added to the merchant's
payable account. Settling posts one entry moving the net from the payable account to the payout
account (the merchant's ``payout_account``, or the module's ``settlement_clearing_account``), and
records the figures. A day is settled once: the record is unique per merchant and day, and the
ledger entry id (``payments:settlement:<merchant>:<day>``) is deterministic, so re-running a day
changes nothing. A day with more refunds than sales posts the other way (the merchant owes).

:class:`Settlements` is a part of :class:`products.payments.service.PaymentsService`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.errors import NotFound, ValidationFailed
from core.modules import JobSpec
from infra.ledger import EntryDraft, OwnerType, Posting, UnknownAccount
from infra.payouts import Payouts
from products.payments.errors import DayNotOver
from products.payments.models import Merchant, Payment, Refund, Settlement
from products.payments.statements import day_window, decimal_amount

if TYPE_CHECKING:
    from products.payments.service import PaymentsService

JOB_NAME = "payments.settlement"


@dataclass(frozen=True)
class SettlementView:
    merchant_id: str
    business_date: date
    currency: str
    payment_count: int
    gross_minor: int
    refund_count: int
    refunds_minor: int
    fees_minor: int
    net_minor: int
    payout_account: str
    posted: bool
    entry_id: str | None
    settled_at: datetime | None

    @classmethod
    def of(cls, row: Settlement) -> SettlementView:
        return cls(row.merchant_id, row.business_date, row.currency, row.payment_count, row.gross_minor,
                   row.refund_count, row.refunds_minor, row.fees_minor, row.net_minor, row.payout_account, True,
                   row.entry_id, row.created_at)


SETTLEMENT_COLUMNS = ("merchant_id", "business_date", "currency", "payment_count", "gross", "refund_count",
                      "refunds", "fees", "net", "payout_account", "posted", "entry_id")


def settlement_row(s: SettlementView) -> dict[str, str]:
    return {"merchant_id": s.merchant_id, "business_date": s.business_date.isoformat(), "currency": s.currency,
            "payment_count": str(s.payment_count), "gross": decimal_amount(s.gross_minor, s.currency),
            "refund_count": str(s.refund_count), "refunds": decimal_amount(s.refunds_minor, s.currency),
            "fees": decimal_amount(s.fees_minor, s.currency), "net": decimal_amount(s.net_minor, s.currency),
            "payout_account": s.payout_account, "posted": "true" if s.posted else "false",
            "entry_id": s.entry_id or ""}


def settlement_json(s: SettlementView) -> dict[str, Any]:
    document = {key: getattr(s, key) for key in SettlementView.__dataclass_fields__}
    document["business_date"] = s.business_date.isoformat()
    document["settled_at"] = s.settled_at.isoformat() if s.settled_at else None
    for key in ("gross", "refunds", "fees", "net"):
        document[key] = decimal_amount(getattr(s, f"{key}_minor"), s.currency)
    return document


def entry_id_of(merchant_id: str, day: date) -> str:
    return f"payments:settlement:{merchant_id}:{day.isoformat()}"


class Settlements:
    """Daily merchant settlement (mixed into ``PaymentsService``)."""

    def settlement(self: PaymentsService, merchant_id: str, day: date) -> SettlementView:
        """The day's settlement: as posted, or (not yet posted) as it would be now."""
        merchant = self._settling_merchant(merchant_id)
        row = self._settlement_row(merchant_id, day)
        return SettlementView.of(row) if row is not None else self._figures(merchant, day)

    def settle(self: PaymentsService, merchant_id: str, day: date) -> tuple[SettlementView, bool]:
        """Post the merchant's settlement of a business day that has ended. Idempotent: a second
        call returns the first one's record (``False``) and posts nothing."""
        merchant = self._settling_merchant(merchant_id)
        existing = self._settlement_row(merchant_id, day)
        if existing is not None:
            return SettlementView.of(existing), False
        _, end = day_window(self.tenant, day)
        if self.uow.clock.now() < end:
            raise DayNotOver(f"business day {day.isoformat()} has not ended; settle it after midnight",
                             details=[{"field": "day", "code": "day_not_over", "message": "the day is still open"}])
        figures = self._figures(merchant, day)
        ledger = self.ledger
        if merchant.payout_account is None:
            ledger.open_account(figures.payout_account, figures.currency, "liability", OwnerType.BANK)
        else:
            try:
                ledger.get_account(figures.payout_account)
            except UnknownAccount:
                raise ValidationFailed(f"payout account {figures.payout_account!r} of merchant {merchant_id} does "
                                       "not exist in the ledger") from None
        entry_id = None
        if figures.net_minor:
            entry_id = entry_id_of(merchant_id, day)
            amount = abs(figures.net_minor)
            payable, payout = merchant.settlement_account, figures.payout_account
            postings = ([Posting.debit(payable, amount), Posting.credit(payout, amount)] if figures.net_minor > 0
                        else [Posting.debit(payout, amount), Posting.credit(payable, amount)])
            ledger.post(EntryDraft(entry_id, postings, description="merchant daily settlement",
                                   metadata={"merchant_id": merchant_id, "business_date": day.isoformat(),
                                             "gross_minor": figures.gross_minor, "refunds_minor": figures.refunds_minor,
                                             "fees_minor": figures.fees_minor}))
        row = Settlement(merchant_id=merchant_id, business_date=day, currency=figures.currency,
                         payment_count=figures.payment_count, gross_minor=figures.gross_minor,
                         refund_count=figures.refund_count, refunds_minor=figures.refunds_minor,
                         fees_minor=figures.fees_minor, net_minor=figures.net_minor,
                         payout_account=figures.payout_account, entry_id=entry_id, created_at=self.uow.clock.now())
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            # Settled concurrently: the ledger answered our entry as a retry of the other's.
            existing = self._settlement_row(merchant_id, day)
            assert existing is not None
            return SettlementView.of(existing), False
        if figures.net_minor > 0:
            self._instruct_payout(merchant_id, day, figures)
        self.uow.publish("payments.settlement.posted",
                         {"merchant_id": merchant_id, "business_date": day.isoformat(), "currency": figures.currency,
                          "gross_minor": figures.gross_minor, "refunds_minor": figures.refunds_minor,
                          "fees_minor": figures.fees_minor, "net_minor": figures.net_minor},
                         subject=f"merchant:{merchant_id}")
        return SettlementView.of(row), True

    def _instruct_payout(self: PaymentsService, merchant_id: str, day: date, figures: SettlementView) -> None:
        """With the payouts module on and the merchant's bank account configured, the day's net
        goes out of the bank: a payout instruction owed from the payout account (infra/payouts)."""
        config = next((m for m in self.settings.merchants if m.merchant_id == merchant_id), None)
        if config is None or config.bank_account is None or not self.tenant.has_module("payouts"):
            return
        Payouts.of(self.uow).instruct(config.bank_account.draft(
            instruction_id=entry_id_of(merchant_id, day), source="payments", debit_account=figures.payout_account,
            amount_minor=figures.net_minor, currency=figures.currency,
            remittance_info=f"settlement {merchant_id} {day.isoformat()}",
        ))

    def _figures(self: PaymentsService, merchant: Merchant, day: date) -> SettlementView:
        start, end = day_window(self.tenant, day)
        count, gross, fees = self.session.execute(
            select(func.count(), func.coalesce(func.sum(Payment.amount_minor), 0),
                   func.coalesce(func.sum(Payment.fee_minor), 0))
            .where(Payment.merchant_id == merchant.merchant_id, Payment.tender != "cash",
                   Payment.status == "succeeded", Payment.completed_at >= start, Payment.completed_at < end)).one()
        refund_count, refunds, refund_fees = self.session.execute(
            select(func.count(), func.coalesce(func.sum(Refund.amount_minor), 0),
                   func.coalesce(func.sum(Refund.fee_minor), 0))
            .join(Payment, Payment.payment_no == Refund.payment_no)
            .where(Payment.merchant_id == merchant.merchant_id, Refund.tender != "cash",
                   Refund.created_at >= start, Refund.created_at < end)).one()
        gross, refunds, fees = int(gross), int(refunds), int(fees) - int(refund_fees)
        return SettlementView(merchant.merchant_id, day, self.tenant.currency, int(count), gross, int(refund_count),
                              refunds, fees, gross - refunds - fees,
                              merchant.payout_account or self.settings.settlement_clearing_account, False, None, None)

    def _settling_merchant(self: PaymentsService, merchant_id: str) -> Merchant:
        merchant = self._merchant_row(merchant_id)
        if merchant is None:
            raise NotFound(f"no merchant {merchant_id!r}")
        return merchant

    def _settlement_row(self: PaymentsService, merchant_id: str, day: date) -> Settlement | None:
        return self.session.scalars(select(Settlement).where(Settlement.merchant_id == merchant_id,
                                                             Settlement.business_date == day)).one_or_none()


# --- the compute job -----------------------------------------------------------------------------


def _merchants(ctx: Any) -> list[str]:
    return list(ctx.session.scalars(select(Merchant.merchant_id).order_by(Merchant.merchant_id)))


def _settle_merchant(ctx: Any) -> dict[str, int]:
    service = ctx.module("payments").container.service(uow=ctx.uow)
    view, created = service.settle(ctx.key, ctx.business_date)
    return {"settled": int(created), "already_settled": int(not created), "gross_minor": view.gross_minor,
            "fees_minor": view.fees_minor, "net_minor": view.net_minor}


SETTLEMENT_JOB = JobSpec(
    name=JOB_NAME,
    partitions=_merchants,
    run_partition=_settle_merchant,
    description="post each merchant's settlement of the business date (gross, refunds, fees, net); idempotent",
)

JOBS = (SETTLEMENT_JOB,)
