"""Partner remittances: the money a partner collected for repayments, handed over to the bank.

A repayment a partner collects (``POST /v1/credit_pay/repayments`` through the super entry) pays
the customer's account at once and debits that partner's repayment clearing account
(``credit_pay:repayment_clearing:<currency>:<partner_id>``, an asset: what the partner owes the
bank). When the partner transfers the money, the bank records the remittance:
:meth:`Remittances.record` posts ``credit_pay:remittance:<remittance_id>``, debiting the account
the money arrives in (the setting ``remittance_account``, ``<remittance_account>:<currency>``, a
bank asset) and crediting the partner's clearing account, and stores it with what the partner
collected on the remittance's business date, so a short or excess remittance shows at once.
The clearing account's balance is always what the partner has collected and not remitted
(:meth:`Remittances.position`). Idempotent on ``remittance_id``; the bank's own decision, never
a partner's.

The bank's own channel is settled the same way, with no partner (``partner_id`` None): a repayment
taken in the bank's app debits ``credit_pay:repayment_clearing:<currency>``, and when core banking
has moved the money from the customers' deposit accounts, the bank records that transfer as the
channel's remittance, against what the channel collected that day; the channel's position is its
clearing account's balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from core.errors import Conflict, NotFound, ValidationFailed
from infra.ledger import EntryDraft, Posting, UnknownAccount
from products.credit_pay.end_of_day import repayment_clearing_account
from products.credit_pay.models import CreditPayRemittance, CreditPayRepayment
from products.credit_pay.settings import ID_PATTERN

if TYPE_CHECKING:
    from products.credit_pay.service import CreditPayService


class RemittanceDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    remittance_id: str = Field(
        min_length=1, max_length=64, pattern=ID_PATTERN, description="the bank's id; a retry returns the same"
    )
    partner_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="the partner that collected the repayments; none: the bank's own channel",
    )
    business_date: date = Field(description="the day whose collections the remittance pays")
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


@dataclass(frozen=True)
class RemittanceView:
    remittance_id: str
    partner_id: str | None  # None: the bank's own channel
    currency: str
    business_date: date
    amount_minor: int
    # What the partner collected on that business date, and the remittance less it.
    collected_minor: int
    difference_minor: int
    entry_id: str
    created_at: datetime
    created: bool = True

    @classmethod
    def of(cls, row: CreditPayRemittance, *, created: bool) -> RemittanceView:
        return cls(
            remittance_id=row.remittance_id,
            partner_id=row.partner_id,
            currency=row.currency,
            business_date=row.business_date,
            amount_minor=row.amount_minor,
            collected_minor=row.collected_minor,
            difference_minor=row.amount_minor - row.collected_minor,
            entry_id=row.entry_id,
            created_at=row.created_at,
            created=created,
        )


@dataclass(frozen=True)
class PartnerPosition:
    """What a partner has collected and remitted, in one currency; ``outstanding_minor`` (its
    clearing account's balance) is the difference. ``partner_id`` None: the bank's own channel."""

    partner_id: str | None
    currency: str
    collected_minor: int
    remitted_minor: int
    outstanding_minor: int


class Remittances:
    """One tenant's partner remittances, within the unit of work of ``pay``."""

    def __init__(self, pay: CreditPayService) -> None:
        self.pay = pay
        self.session = pay.session
        self.uow = pay.uow

    def record(self, draft: RemittanceDraft) -> RemittanceView:
        """Record a partner's remittance (see the module docstring). A retry with the same id
        answers the stored one (``created`` false); the same id with other content is a conflict."""
        existing = self.session.scalars(
            select(CreditPayRemittance).where(CreditPayRemittance.remittance_id == draft.remittance_id)
        ).one_or_none()
        if existing is not None:
            for name in ("partner_id", "currency", "business_date", "amount_minor"):
                if getattr(existing, name) != getattr(draft, name):
                    raise Conflict(
                        f"remittance {draft.remittance_id!r} exists with a different {name}",
                        details=[
                            {
                                "field": name,
                                "code": f"exists_with_different_{name}",
                                "message": "differs from the stored remittance",
                            }
                        ],
                    )
            return RemittanceView.of(existing, created=False)
        if draft.business_date > self.pay.tenant.business_date():
            raise ValidationFailed(
                f"business_date {draft.business_date} is after today's",
                details=[{"field": "business_date", "code": "in_future", "message": "not a day yet"}],
            )
        clearing = repayment_clearing_account(draft.currency, draft.partner_id)
        ledger = self.pay.ledger
        try:
            ledger.get_account(clearing)
        except UnknownAccount:
            raise NotFound(
                f"{_collector(draft.partner_id)} has collected no credit-pay repayment in {draft.currency}"
            ) from None
        received = f"{self.pay.settings.remittance_account}:{draft.currency}"
        ledger.open_account(received, draft.currency, "asset")
        entry_id = f"credit_pay:remittance:{draft.remittance_id}"
        ledger.post(
            EntryDraft(
                entry_id,
                [Posting.debit(received, draft.amount_minor), Posting.credit(clearing, draft.amount_minor)],
                description="remittance of collected repayments",
                metadata={"partner_id": draft.partner_id, "business_date": draft.business_date.isoformat()},
            )
        )
        row = CreditPayRemittance(
            remittance_id=draft.remittance_id,
            partner_id=draft.partner_id,
            currency=draft.currency,
            business_date=draft.business_date,
            amount_minor=draft.amount_minor,
            collected_minor=self._collected(draft.partner_id, draft.currency, draft.business_date),
            entry_id=entry_id,
            created_at=self.uow.clock.now(),
        )
        self.session.add(row)
        self.session.flush()
        view = RemittanceView.of(row, created=True)
        self.uow.publish(
            "credit_pay.remittance.recorded",
            {
                "remittance_id": view.remittance_id,
                "partner_id": view.partner_id,
                "currency": view.currency,
                "business_date": view.business_date.isoformat(),
                "amount_minor": view.amount_minor,
                "collected_minor": view.collected_minor,
                "difference_minor": view.difference_minor,
            },
            subject=f"partner:{view.partner_id}" if view.partner_id is not None else "bank_channel",
        )
        return view

    def remittances(self, partner_id: str | None, currency: str = "CNY") -> list[RemittanceView]:
        """The partner's remittances (None: the bank's own channel's), oldest first."""
        rows = self.session.scalars(
            select(CreditPayRemittance)
            .where(CreditPayRemittance.partner_id == partner_id, CreditPayRemittance.currency == currency)
            .order_by(CreditPayRemittance.id)
        ).all()
        return [RemittanceView.of(row, created=False) for row in rows]

    def position(self, partner_id: str | None, currency: str = "CNY") -> PartnerPosition:
        """What the partner (None: the bank's own channel) has collected, remitted and still owes,
        in ``currency``."""
        collected = self._collected(partner_id, currency)
        remitted = self.session.scalar(
            select(func.coalesce(func.sum(CreditPayRemittance.amount_minor), 0)).where(
                CreditPayRemittance.partner_id == partner_id, CreditPayRemittance.currency == currency
            )
        )
        try:
            outstanding = self.pay.ledger.balance(repayment_clearing_account(currency, partner_id)).net_posted_minor
        except UnknownAccount:
            outstanding = 0
        return PartnerPosition(partner_id, currency, int(collected), int(remitted or 0), outstanding)

    def _collected(self, partner_id: str | None, currency: str, day: date | None = None) -> int:
        # ``== None`` is SQL's IS NULL: the bank's own channel's repayments have no partner.
        query = select(func.coalesce(func.sum(CreditPayRepayment.amount_minor), 0)).where(
            CreditPayRepayment.partner_id == partner_id, CreditPayRepayment.currency == currency
        )
        if day is not None:
            query = query.where(CreditPayRepayment.business_date == day)
        return int(self.session.scalar(query) or 0)


def _collector(partner_id: str | None) -> str:
    return "the bank's own channel" if partner_id is None else f"partner {partner_id!r}"
