"""Payouts: money a module owes outside the bank (a merchant's settlement), sent by the bank's
payment system as ISO 20022 credit transfers.

One unit of work per call. The life of a payout:

1. :meth:`Payouts.instruct` records an instruction (idempotent on the caller's ``instruction_id``):
   whom to pay (name, account, bank code), how much, and which ledger account owes it (e.g. the
   merchant's payout account). Nothing moves yet.
2. :meth:`Payouts.batch` puts every pending instruction of a currency into one pain.001 file (a
   *batch*, kept with the file) and posts one entry ``payouts:sent:<batch_no>``: each owing account
   debited, ``<in_transit_account>:<currency>`` credited (sent, not yet confirmed). The bank sends
   the file to its payment system; the compute job ``payouts.batch`` does this daily.
3. :meth:`Payouts.apply_status_report` reads the payment system's pain.002: a transfer accepted
   posts ``payouts:settled:<payout_no>`` (in transit debited, ``<funding_account>:<currency>`` -
   the bank's money at the payment system - credited); a transfer rejected posts
   ``payouts:returned:<payout_no>`` (in transit debited, the owing account credited again: the
   money is owed once more) and keeps the reason code. Each transfer ends once: a report read again
   changes nothing.
4. :meth:`Payouts.apply_payment_return` reads a pacs.004 that brings back, after acceptance, a
   transfer the beneficiary's bank could not credit (account closed, name mismatch): it posts
   ``payouts:payment_return:<payout_no>`` (the funding account debited - the money is back - and the
   owing account credited: owed again) and marks the payout ``returned`` with the reason code. A
   payout no report answered yet is settled first (it was executed). Less than the payout coming
   back (charges kept on the way) is refused for that transfer unless ``return_charges`` says who
   bears them; never half applied.

The ledger's balances therefore say at any time what is owed and not sent (the owing accounts),
what is sent and not confirmed (in transit), and what has left the bank (the funding account).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core.errors import Conflict, NotFound, ValidationFailed
from core.tenancy import UnitOfWork
from infra.ledger import EntryDraft, Ledger, OwnerType, Posting, UnknownAccount
from infra.payouts.iso20022 import (
    ACCEPTED,
    REJECTED,
    ReturnedTransfer,
    Transfer,
    credit_transfer_initiation,
    parse_payment_return,
    parse_status_report,
)
from infra.payouts.models import PayoutBatch, PayoutInstruction
from infra.payouts.settings import PayoutsSettings

log = structlog.get_logger("sceneos.payouts")
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_LOOKUP_CHUNK = 1_000


class BankAccount(BaseModel):
    """Where a beneficiary (a merchant) is paid outside the bank; modules keep it in configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holder_name: str = Field(min_length=1, max_length=140, description="the account holder's name")
    account_number: str = Field(pattern=r"^[A-Za-z0-9]{1,34}$", description="IBAN or account number")
    bank_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,35}$",
                                  description="the account's bank: BIC or clearing code (e.g. CNAPS)")

    def draft(self, *, instruction_id: str, source: str, debit_account: str, amount_minor: int, currency: str,
              remittance_info: str) -> PayoutDraft:
        """An instruction to pay this account."""
        return PayoutDraft(instruction_id=instruction_id, source=source, debit_account=debit_account,
                           creditor_name=self.holder_name, creditor_account=self.account_number,
                           creditor_agent=self.bank_code, amount_minor=amount_minor, currency=currency,
                           remittance_info=remittance_info)


class PayoutDraft(BaseModel):
    """An instruction to pay ``amount_minor`` out of the bank, owed from ``debit_account``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction_id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
                                description="the caller's id; a retry returns the same instruction")
    source: str = Field(min_length=1, max_length=40, description="the module asking (e.g. payments)")
    debit_account: str = Field(min_length=1, max_length=64, description="ledger account that owes the money")
    creditor_name: str = Field(min_length=1, max_length=140)
    creditor_account: str = Field(pattern=r"^[A-Za-z0-9]{1,34}$", description="IBAN or account number")
    creditor_agent: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,35}$",
                                       description="the beneficiary's bank: BIC or clearing code")
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    remittance_info: str = Field(min_length=1, max_length=140, description="what the beneficiary sees")


@dataclass(frozen=True)
class PayoutView:
    instruction_id: str
    payout_no: str
    source: str
    debit_account: str
    creditor_name: str
    amount_minor: int
    currency: str
    status: str
    batch_no: str | None
    reason: str | None
    created: bool = True

    @classmethod
    def of(cls, row: PayoutInstruction, *, created: bool) -> PayoutView:
        return cls(row.instruction_id, row.payout_no, row.source, row.debit_account, row.creditor_name,
                   row.amount_minor, row.currency, row.status, row.batch_no, row.reason, created)


@dataclass(frozen=True)
class BatchView:
    batch_no: str
    business_date: date
    currency: str
    count: int
    total_minor: int
    entry_id: str
    created_at: datetime
    document: str


@dataclass(frozen=True)
class ReturnOutcome:
    """What a payment return changed: transfers returned now, those already ended otherwise (or
    not yet sent), end-to-end ids of no payout of this bank, and returns refused for an amount or
    currency other than the payout's (nothing applied for them)."""

    returned: tuple[str, ...]
    unchanged: tuple[str, ...]
    unknown: tuple[str, ...]
    refused: tuple[str, ...]


@dataclass(frozen=True)
class StatusOutcome:
    """What a status report changed: transfers accepted and rejected now, those already final, and
    end-to-end ids that name no payout of this bank."""

    accepted: tuple[str, ...]
    rejected: tuple[str, ...]
    unchanged: tuple[str, ...]
    unknown: tuple[str, ...]


class Payouts:
    """One tenant's payouts within one unit of work (see the module docstring)."""

    def __init__(self, uow: UnitOfWork, settings: PayoutsSettings, ledger: Ledger) -> None:
        self.uow = uow
        self.session = uow.session
        self.settings = settings
        self.ledger = ledger

    @classmethod
    def of(cls, uow: UnitOfWork) -> Payouts:
        """The payouts of ``uow``'s tenant (its ``payouts`` settings, its ledger on the same session)."""
        tenant = uow.tenant
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        return cls(uow, tenant.module("payouts").settings, ledger)  # type: ignore[arg-type]

    def instruct(self, draft: PayoutDraft) -> PayoutView:
        existing = self._by_instruction(draft.instruction_id)
        if existing is not None:
            for name in ("source", "debit_account", "creditor_account", "amount_minor", "currency"):
                if getattr(existing, name) != getattr(draft, name):
                    raise Conflict(f"payout {draft.instruction_id!r} exists with a different {name}",
                                   details=[{"field": name, "code": f"exists_with_different_{name}",
                                             "message": "differs from the stored instruction"}])
            return PayoutView.of(existing, created=False)
        try:
            owing = self.ledger.get_account(draft.debit_account)
        except UnknownAccount:
            raise ValidationFailed(f"debit_account {draft.debit_account!r} is not a ledger account",
                                   details=[{"field": "debit_account", "code": "unknown_account",
                                             "message": "open it first"}]) from None
        if owing.currency != draft.currency:
            raise ValidationFailed(f"debit_account {draft.debit_account!r} is in {owing.currency}, not {draft.currency}",
                                   details=[{"field": "currency", "code": "currency_mismatch",
                                             "message": f"the account is in {owing.currency}"}])
        now = self.uow.clock.now()
        row = PayoutInstruction(
            instruction_id=draft.instruction_id,
            payout_no="po" + "".join(secrets.choice(_ALPHABET) for _ in range(20)),
            source=draft.source,
            debit_account=draft.debit_account,
            creditor_name=draft.creditor_name,
            creditor_account=draft.creditor_account,
            creditor_agent=draft.creditor_agent,
            amount_minor=draft.amount_minor,
            currency=draft.currency,
            remittance_info=draft.remittance_info,
            status="pending",
            batch_no=None,
            reason=None,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        self.session.flush()
        self._publish("payouts.payout.instructed", row)
        return PayoutView.of(row, created=True)

    def batch(self, business_date: date, currency: str) -> BatchView | None:
        """The pending instructions of ``currency`` in one pain.001 (None when there are none)."""
        if self.settings.debtor_account is None or not self.settings.debtor_name:
            raise ValidationFailed(
                "payouts need the bank's debtor_name and debtor_account (modules.payouts) before a file is made",
                details=[{"field": "debtor_account", "code": "not_configured", "message": "the bank's account"}])
        rows = self.session.scalars(
            select(PayoutInstruction)
            .where(PayoutInstruction.status == "pending", PayoutInstruction.currency == currency)
            .order_by(PayoutInstruction.id)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return None
        now = self.uow.clock.now()
        batch_no = f"pob{business_date:%Y%m%d}" + "".join(secrets.choice(_ALPHABET) for _ in range(12))
        document = credit_transfer_initiation(
            message_id=batch_no, created_at=now, execution_date=business_date,
            debtor_name=self.settings.debtor_name, debtor_account=self.settings.debtor_account,
            debtor_agent_bic=self.settings.debtor_agent_bic, currency=currency,
            transfers=[Transfer(r.payout_no, r.amount_minor, r.currency, r.creditor_name, r.creditor_account,
                                r.creditor_agent, r.remittance_info) for r in rows],
        )
        owed: dict[str, int] = defaultdict(int)
        for row in rows:
            owed[row.debit_account] += row.amount_minor
        total = sum(owed.values())
        in_transit = self._open(self.settings.in_transit_account, currency, "liability")
        entry_id = f"payouts:sent:{batch_no}"
        self.ledger.post(EntryDraft(
            entry_id,
            [*(Posting.debit(code, amount) for code, amount in sorted(owed.items())), Posting.credit(in_transit, total)],
            description="payouts sent", metadata={"batch_no": batch_no, "count": len(rows)},
        ))
        batch = PayoutBatch(batch_no=batch_no, business_date=business_date, currency=currency, count=len(rows),
                            total_minor=total, document=document.decode("utf-8"), entry_id=entry_id, created_at=now)
        self.session.add(batch)
        for row in rows:
            row.status, row.batch_no, row.updated_at = "sent", batch_no, now
        self.session.flush()
        self.uow.publish("payouts.batch.created", {"batch_no": batch_no, "currency": currency, "count": len(rows),
                                                   "total_minor": total, "business_date": business_date.isoformat()})
        log.info("payout batch created", batch_no=batch_no, currency=currency, count=len(rows))
        return self._batch_view(batch)

    def apply_status_report(self, content: bytes) -> StatusOutcome:
        """Apply a pain.002 (see the module docstring). A group status RJCT with no transfer listed
        rejects every transfer of the batch it answers."""
        report = parse_status_report(content)
        statuses = list(report.transfers)
        if not statuses and report.group_status == REJECTED and report.original_message_id:
            statuses = [(row.payout_no, REJECTED, None) for row in self.session.scalars(
                select(PayoutInstruction).where(PayoutInstruction.batch_no == report.original_message_id))]
        final = [payout_no for payout_no, status, _ in statuses if status in ACCEPTED or status == REJECTED]
        rows = self._locked(final)
        accepted, rejected, unchanged, unknown = [], [], [], []
        for payout_no, status, reason in statuses:
            if status not in ACCEPTED and status != REJECTED:
                unchanged.append(payout_no)  # pending at the payment system: nothing final yet
                continue
            row = rows.get(payout_no)
            if row is None:
                unknown.append(payout_no)
            elif row.status != "sent":
                unchanged.append(payout_no)
            elif status == REJECTED:
                self._end(row, "rejected", f"payouts:returned:{row.payout_no}", row.debit_account, reason)
                rejected.append(payout_no)
            else:
                funding = self._open(self.settings.funding_account, row.currency, "asset")
                self._end(row, "accepted", f"payouts:settled:{row.payout_no}", funding, None)
                accepted.append(payout_no)
        return StatusOutcome(tuple(accepted), tuple(rejected), tuple(unchanged), tuple(unknown))

    def apply_payment_return(self, content: bytes) -> ReturnOutcome:
        """Apply a pacs.004 payment return (see the module docstring)."""
        returned = parse_payment_return(content)
        rows = self._locked([r.end_to_end_id for r in returned])
        done, unchanged, unknown, refused = [], [], [], []
        for item in returned:
            row = rows.get(item.end_to_end_id)
            if row is None:
                unknown.append(item.end_to_end_id)
            elif row.status not in ("sent", "accepted"):
                unchanged.append(item.end_to_end_id)  # returned or rejected already, or never sent
            elif not self._returnable(row, item):
                refused.append(item.end_to_end_id)
                log.warning("payout return refused: the amount differs", payout_no=row.payout_no,
                            returned_minor=item.amount_minor, currency=item.currency)
            else:
                self._return(row, item)
                done.append(item.end_to_end_id)
        return ReturnOutcome(tuple(done), tuple(unchanged), tuple(unknown), tuple(refused))

    def _returnable(self, row: PayoutInstruction, item: ReturnedTransfer) -> bool:
        """The whole payout came back, or less of it with ``return_charges`` saying who bears the rest."""
        if item.currency != row.currency or item.amount_minor > row.amount_minor:
            return False
        return item.amount_minor == row.amount_minor or self.settings.return_charges != "refuse"

    def _return(self, row: PayoutInstruction, item: ReturnedTransfer) -> None:
        """``payouts:payment_return:<payout_no>``: what came back, at the funding account, to the
        owing account (owed again the whole payout, the charges kept on the way being the bank's
        expense, or only what came back: ``return_charges``). A payout returned before any status
        report was executed first: it is settled (``payouts:settled:<payout_no>``) before."""
        funding = self._open(self.settings.funding_account, row.currency, "asset")
        if row.status == "sent":
            self._end(row, "accepted", f"payouts:settled:{row.payout_no}", funding, None)
        charges = row.amount_minor - item.amount_minor
        bank_pays = self.settings.return_charges == "bank"
        postings = [Posting.debit(funding, item.amount_minor)]
        if charges and bank_pays:
            expense = self._open(self.settings.return_charges_account, row.currency, "expense")
            postings.append(Posting.debit(expense, charges))
        postings.append(Posting.credit(row.debit_account, row.amount_minor if bank_pays else item.amount_minor))
        self.ledger.post(EntryDraft(
            f"payouts:payment_return:{row.payout_no}", postings, description="payout returned",
            metadata={"payout_no": row.payout_no, "returned_minor": item.amount_minor, "charges_minor": charges},
        ))
        row.status, row.reason, row.updated_at = "returned", item.reason, self.uow.clock.now()
        self.session.flush()
        self._publish("payouts.payout.returned", row)

    # --- reading ---------------------------------------------------------------------------------

    def payout(self, instruction_id: str) -> PayoutView:
        row = self._by_instruction(instruction_id)
        if row is None:
            raise NotFound(f"no payout {instruction_id!r}")
        return PayoutView.of(row, created=False)

    def payouts(self, status: str | None = None, *, limit: int = 100) -> list[PayoutView]:
        query = select(PayoutInstruction).order_by(PayoutInstruction.id.desc()).limit(limit)
        if status is not None:
            query = query.where(PayoutInstruction.status == status)
        return [PayoutView.of(row, created=False) for row in self.session.scalars(query)]

    def get_batch(self, batch_no: str) -> BatchView:
        row = self.session.scalars(select(PayoutBatch).where(PayoutBatch.batch_no == batch_no)).one_or_none()
        if row is None:
            raise NotFound(f"no payout batch {batch_no!r}")
        return self._batch_view(row)

    # --- inside ----------------------------------------------------------------------------------

    def _locked(self, payout_nos: list[str]) -> dict[str, PayoutInstruction]:
        """The payouts of ``payout_nos``, locked (a file of thousands: a few statements)."""
        rows: dict[str, PayoutInstruction] = {}
        for start in range(0, len(payout_nos), _LOOKUP_CHUNK):
            chunk = payout_nos[start : start + _LOOKUP_CHUNK]
            rows.update((row.payout_no, row) for row in self.session.scalars(
                select(PayoutInstruction).where(PayoutInstruction.payout_no.in_(chunk))
                .order_by(PayoutInstruction.id).with_for_update()))
        return rows

    def _end(self, row: PayoutInstruction, status: str, entry_id: str, credit: str, reason: str | None) -> None:
        """Post the payout's money from in transit to ``credit`` and set its status."""
        in_transit = self._open(self.settings.in_transit_account, row.currency, "liability")
        self.ledger.post(EntryDraft(
            entry_id, [Posting.debit(in_transit, row.amount_minor), Posting.credit(credit, row.amount_minor)],
            description=f"payout {status}", metadata={"payout_no": row.payout_no, "batch_no": row.batch_no},
        ))
        row.status, row.reason, row.updated_at = status, reason, self.uow.clock.now()
        self.session.flush()
        self._publish(f"payouts.payout.{status}", row)

    def _open(self, code: str, currency: str, kind: str) -> str:
        account = f"{code}:{currency}"
        self.ledger.open_account(account, currency, kind, OwnerType.BANK)
        return account

    def _by_instruction(self, instruction_id: str) -> PayoutInstruction | None:
        return self.session.scalars(
            select(PayoutInstruction).where(PayoutInstruction.instruction_id == instruction_id)
        ).one_or_none()

    def _publish(self, type: str, row: PayoutInstruction) -> None:
        self.uow.publish(type, {"instruction_id": row.instruction_id, "payout_no": row.payout_no,
                                "source": row.source, "amount_minor": row.amount_minor, "currency": row.currency,
                                "status": row.status, "batch_no": row.batch_no, "reason": row.reason},
                         subject=f"payout:{row.payout_no}")

    @staticmethod
    def _batch_view(row: PayoutBatch) -> BatchView:
        return BatchView(row.batch_no, row.business_date, row.currency, row.count, row.total_minor, row.entry_id,
                         row.created_at, row.document)


def currencies_pending(uow: UnitOfWork) -> list[str]:
    """Currencies with pending instructions (the batch job's partitions)."""
    return sorted(set(uow.session.scalars(
        select(PayoutInstruction.currency).where(PayoutInstruction.status == "pending").distinct())))
