"""The smart cashier's operations within one unit of work. No HTTP here: the API and CLI call these.

Money moves through the ledger (``infra.ledger``): a QR payment holds the payer's funds (a pending
entry: payer debited, merchant's settlement account and the bank's fee income credited) and captures
the hold; a refund is an ordinary entry the other way. Cash is counted at the window and recorded
here only: it never passes through a bank account.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

import iso4217
from pydantic import BaseModel, Field
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, SceneOSError, ValidationFailed
from core.funding import FundingSource, funding_sources
from core.money import Money
from core.tenancy import UnitOfWork
from infra.ledger import EntryDraft, InsufficientFunds, Ledger, OwnerType, Posting, UnknownAccount
from products.payments import emv
from products.payments.codes import PaymentCodes
from products.payments.errors import (
    Forbidden,
    FundingSourceUnavailable,
    InvalidQr,
    OperatorLocked,
    PaymentFailed,
    PinRejected,
    QrExpired,
    RefundExceedsPaid,
    WrongState,
)
from products.payments.models import Merchant, Operator, Payment, Refund, Shift, Store, Terminal
from products.payments.pins import hash_pin, verify_pin
from products.payments.settings import MerchantConfig, PaymentsSettings
from products.payments.settlement import Settlements
from products.payments.statements import DayStatements, day_window
from products.payments.webhooks import secret_cipher

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ROLES = ("cashier", "supervisor")
# Every statement lists these tenders (with zeros); other tenders (a scanned payment "code") when taken.
TENDERS = ("qr", "cash")
ACCOUNT = "account"  # funding from the payer's own ledger account; other names are core.funding sources
BILL_NO = re.compile(r"^[A-Za-z0-9_.-]{1,25}$")
MAX_AMOUNT_MINOR = 2**63 - 1  # BIGINT, as in the ledger
QR_AMOUNT_MAX_CHARS = 13  # EMVCo MPM tag 54 (transaction amount) holds at most 13 characters
# A PIN used by a module that never saw it is still refused in constant work: a hash to compare with.
_DUMMY_HASH = "scrypt$1024$8$1$00000000000000000000000000000000$" + "00" * 32


# Rows this unit of work has read, by (kind, key), in ``session.info``: a QR sale needs its merchant,
# terminal and payment in several steps of one call (and the pay route resolves the QR again after
# paying), so each is read once per unit of work. The cache holds the session's own ORM objects (the
# identity map's), so a change made in the unit of work is seen through it; it is dropped on any
# rollback, a savepoint's included, and dies with the session. A payment is kept with whether this
# unit of work holds its row lock (read ``FOR UPDATE``, or inserted here).
_ROWS_KEY = "sceneos_payments_rows"


@event.listens_for(Session, "after_soft_rollback")
def _forget_rows(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_ROWS_KEY, None)


def new_no(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(16))


# --- inputs ----------------------------------------------------------------------------------------


class OperatorDraft(BaseModel):
    employee_no: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    merchant_id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(pattern="^(cashier|supervisor)$")
    pin: str = Field(pattern=r"^\d{4,12}$", description="4 to 12 digits; only a hash is stored")


# --- views -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TerminalView:
    terminal_id: str
    store_id: str
    label: str


@dataclass(frozen=True)
class MerchantView:
    merchant_id: str
    name: str
    city: str
    mcc: str
    settlement_account: str
    fee_rate: str
    stores: list[dict[str, Any]] = field(default_factory=list)
    payout_account: str | None = None
    webhook_url: str | None = None
    # Whether a webhook secret is set; the secret itself is never shown.
    webhook_secret_set: bool = False
    webhook_events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OperatorView:
    employee_no: str
    merchant_id: str
    name: str
    role: str
    locked_until: datetime | None

    @classmethod
    def of(cls, row: Operator) -> OperatorView:
        return cls(row.employee_no, row.merchant_id, row.name, row.role, row.locked_until)


@dataclass(frozen=True)
class Verified:
    """Proof that an operator gave the right PIN in this unit of work (only :meth:`verify_pin` makes one)."""

    employee_no: str
    role: str
    merchant_id: str


@dataclass(frozen=True)
class PinCheck:
    verified: Verified | None
    error: SceneOSError | None

    def raise_if_failed(self) -> Verified:
        if self.error is not None:
            raise self.error
        assert self.verified is not None
        return self.verified


@dataclass(frozen=True)
class ShiftView:
    shift_no: str
    employee_no: str
    terminal_id: str
    merchant_id: str
    opened_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, row: Shift) -> ShiftView:
        return cls(row.shift_no, row.employee_no, row.terminal_id, row.merchant_id, row.opened_at, row.closed_at)


@dataclass(frozen=True)
class PaymentView:
    payment_no: str
    request_id: str
    tender: str
    status: str
    merchant_id: str
    terminal_id: str
    shift_no: str
    employee_no: str
    bill_no: str
    amount_minor: int
    currency: str
    fee_minor: int
    refunded_minor: int
    payload: str | None
    expires_at: datetime | None
    failure_code: str | None
    created_at: datetime
    completed_at: datetime | None
    funding_source: str | None = None
    code_ref: str | None = None

    @classmethod
    def of(cls, row: Payment) -> PaymentView:
        return cls(row.payment_no, row.request_id, row.tender, row.status, row.merchant_id, row.terminal_id,
                   row.shift_no, row.employee_no, row.bill_no, row.amount_minor, row.currency, row.fee_minor,
                   row.refunded_minor, row.payload, row.expires_at, row.failure_code, row.created_at,
                   row.completed_at, row.funding_source, row.code_ref)

    @property
    def amount(self) -> str:
        return f"{Money(self.amount_minor, self.currency).amount:f}"

    def raise_unless_paid(self) -> PaymentView:
        """For a payer's call: the payment's failure as an error (after its unit of work committed it)."""
        if self.status == "expired":
            raise QrExpired(f"payment {self.payment_no} expired at {self.expires_at:%Y-%m-%dT%H:%M:%SZ}")
        if self.status == "failed":
            source = self.funding_source or "account"
            message = ("the payer's account was not debited" if source == "account"
                       else f"declined by the funding source {source!r}; nothing was charged")
            raise PaymentFailed(f"payment {self.payment_no} failed: {self.failure_code}",
                                details=[{"field": "funding_source", "code": self.failure_code or "failed",
                                          "message": message}])
        return self


@dataclass(frozen=True)
class QrQuote:
    """What a payer's wallet shows after scanning: who is paid, how much, for which bill."""

    payment_no: str
    status: str
    merchant_name: str
    merchant_city: str
    mcc: str
    terminal_label: str
    bill_no: str
    amount: str
    amount_minor: int
    currency: str
    expires_at: datetime | None


@dataclass(frozen=True)
class RefundView:
    refund_no: str
    request_id: str
    payment_no: str
    amount_minor: int
    currency: str
    approved_by: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class TenderLine:
    tender: str
    count: int
    amount_minor: int


@dataclass(frozen=True)
class ShiftStatement:
    shift_no: str
    employee_no: str
    terminal_id: str
    opened_at: datetime
    closed_at: datetime | None
    currency: str
    sales: list[TenderLine]
    refunds: list[TenderLine]
    sales_minor: int
    refunds_minor: int
    net_minor: int


@dataclass(frozen=True)
class OperatorStatement:
    employee_no: str
    day: date
    shift_nos: list[str]
    currency: str
    sales: list[TenderLine]
    refunds: list[TenderLine]
    sales_minor: int
    refunds_minor: int
    net_minor: int


class PaymentsService(PaymentCodes, DayStatements, Settlements):
    """Operations on one tenant's cashier within one unit of work (payment codes, day statements
    and settlement are in ``codes.py``, ``statements.py`` and ``settlement.py``)."""

    def __init__(self, uow: UnitOfWork, settings: PaymentsSettings) -> None:
        self.uow = uow
        self.session = uow.session
        self.settings = settings
        self.tenant = uow.tenant

    @cached_property
    def ledger(self) -> Ledger:
        # One per service, so per session: building one through the container is not free.
        return self.tenant.module("ledger").container.ledger(session=self.session)

    # --- merchants, stores, terminals -----------------------------------------------------------

    def sync_configuration(self) -> list[str]:
        """Write the configured merchants, stores and terminals (idempotent; configuration wins)."""
        return [self.put_merchant(m).merchant_id for m in self.settings.merchants]

    def put_merchant(self, config: MerchantConfig) -> MerchantView:
        """Create or update a merchant with its stores and terminals, and open its settlement account."""
        row = self._merchant_row(config.merchant_id)
        if row is None:
            row = Merchant(merchant_id=config.merchant_id, created_at=self.uow.clock.now())
            self.session.add(row)
        row.name, row.city, row.mcc = config.name, config.city, config.mcc
        row.settlement_account, row.fee_rate = config.settlement_account, str(config.fee_rate)
        row.payout_account, row.webhook_url = config.payout_account, config.webhook_url
        row.webhook_events = list(config.webhook_events)
        if config.webhook_secret is not None:
            row.webhook_secret_encrypted = secret_cipher(self.tenant, self.session).encrypt(config.webhook_secret.get_secret_value())
        elif config.webhook_url is None:
            row.webhook_secret_encrypted = None
        for store in config.stores:
            srow = self.session.scalars(select(Store).where(Store.store_id == store.store_id)).one_or_none()
            if srow is None:
                srow = Store(store_id=store.store_id, merchant_id=config.merchant_id)
                self.session.add(srow)
            elif srow.merchant_id != config.merchant_id:
                raise Conflict(f"store {store.store_id!r} belongs to merchant {srow.merchant_id!r}")
            srow.name = store.name
            for terminal in store.terminals:
                trow = self.session.scalars(
                    select(Terminal).where(Terminal.terminal_id == terminal.terminal_id)).one_or_none()
                if trow is None:
                    trow = Terminal(terminal_id=terminal.terminal_id, merchant_id=config.merchant_id,
                                    store_id=store.store_id)
                    self.session.add(trow)
                elif trow.merchant_id != config.merchant_id:
                    raise Conflict(f"terminal {terminal.terminal_id!r} belongs to merchant {trow.merchant_id!r}")
                trow.store_id, trow.label = store.store_id, terminal.label
        self.session.flush()
        ledger = self.ledger
        ledger.open_account(config.settlement_account, self.tenant.currency, "liability",
                            OwnerType.MERCHANT, config.merchant_id)
        ledger.open_account(self.settings.fee_income_account, self.tenant.currency, "income", OwnerType.BANK)
        return self.get_merchant(config.merchant_id)

    def get_merchant(self, merchant_id: str) -> MerchantView:
        row = self._merchant_row(merchant_id)
        if row is None:
            raise NotFound(f"no merchant {merchant_id!r}")
        stores = []
        for store in self.session.scalars(select(Store).where(Store.merchant_id == merchant_id).order_by(Store.id)):
            terminals = self.session.scalars(
                select(Terminal).where(Terminal.store_id == store.store_id).order_by(Terminal.id))
            stores.append({"store_id": store.store_id, "name": store.name,
                           "terminals": [{"terminal_id": t.terminal_id, "label": t.label} for t in terminals]})
        return MerchantView(row.merchant_id, row.name, row.city, row.mcc, row.settlement_account, row.fee_rate, stores,
                            row.payout_account, row.webhook_url, row.webhook_secret_encrypted is not None,
                            list(row.webhook_events or []))

    def list_merchants(self) -> list[MerchantView]:
        ids = self.session.scalars(select(Merchant.merchant_id).order_by(Merchant.id)).all()
        return [self.get_merchant(merchant_id) for merchant_id in ids]

    # --- operators and shifts ------------------------------------------------------------------

    def add_operator(self, draft: OperatorDraft) -> tuple[OperatorView, bool]:
        """Create an operator; the same employee number again with the same attributes is a retry
        (the PIN is not changed), with other attributes a conflict."""
        if self._merchant_row(draft.merchant_id) is None:
            raise NotFound(f"no merchant {draft.merchant_id!r}")
        existing = self._operator_row(draft.employee_no)
        if existing is not None:
            for name in ("merchant_id", "name", "role"):
                if getattr(existing, name) != getattr(draft, name):
                    raise Conflict(f"operator {draft.employee_no} exists with a different {name}",
                                   details=[{"field": name, "code": f"exists_with_different_{name}",
                                             "message": "differs from the existing operator"}])
            return OperatorView.of(existing), False
        row = Operator(employee_no=draft.employee_no, merchant_id=draft.merchant_id, name=draft.name,
                       role=draft.role, pin_hash=hash_pin(draft.pin, n=self.settings.pin_scrypt_n),
                       failed_attempts=0, locked_until=None, created_at=self.uow.clock.now())
        self.session.add(row)
        self.session.flush()
        self.uow.publish("payments.operator.added", {"employee_no": row.employee_no, "role": row.role,
                                                     "merchant_id": row.merchant_id},
                         subject=f"operator:{row.employee_no}")
        return OperatorView.of(row), True

    def verify_pin(self, employee_no: str, pin: str) -> PinCheck:
        """Check a PIN. Never raises for a wrong PIN: the failure count must commit, so the caller
        raises ``PinCheck.error`` after its unit of work ends. ``max_pin_failures`` wrong PINs in a
        row lock the operator for ``lockout_seconds``; a right PIN resets the count."""
        now = self.uow.clock.now()
        row = self.session.scalars(
            select(Operator).where(Operator.employee_no == employee_no).with_for_update()).one_or_none()
        if row is None:
            verify_pin(pin, _DUMMY_HASH)
            return PinCheck(None, PinRejected("wrong employee number or PIN"))
        if row.locked_until is not None and row.locked_until > now:
            return PinCheck(None, OperatorLocked(
                f"operator {employee_no} is locked until {row.locked_until:%Y-%m-%dT%H:%M:%SZ} after repeated wrong PINs"))
        if not verify_pin(pin, row.pin_hash):
            row.failed_attempts += 1
            if row.failed_attempts >= self.settings.max_pin_failures:
                row.locked_until = now + timedelta(seconds=self.settings.lockout_seconds)
                row.failed_attempts = 0
                self.uow.publish("payments.operator.locked", {"employee_no": employee_no},
                                 subject=f"operator:{employee_no}")
                return PinCheck(None, OperatorLocked(f"operator {employee_no} is locked after repeated wrong PINs"))
            return PinCheck(None, PinRejected("wrong employee number or PIN"))
        row.failed_attempts, row.locked_until = 0, None
        return PinCheck(Verified(row.employee_no, row.role, row.merchant_id), None)

    def sign_in(self, who: Verified, terminal_id: str) -> ShiftView:
        """Open a shift at a terminal of the operator's merchant. Signing in again at the same
        terminal returns the open shift; at another terminal it is refused until sign-out."""
        terminal = self._terminal(terminal_id)
        if terminal.merchant_id != who.merchant_id:
            raise Forbidden(f"terminal {terminal_id!r} is not one of merchant {who.merchant_id!r}'s")
        open_shift = self._open_shift(who.employee_no)
        if open_shift is not None:
            if open_shift.terminal_id == terminal_id:
                return ShiftView.of(open_shift)
            raise Conflict(f"operator {who.employee_no} has an open shift at terminal {open_shift.terminal_id}; sign out first",
                           details=[{"code": "shift_already_open", "message": open_shift.shift_no}])
        row = Shift(shift_no=new_no("shf_"), employee_no=who.employee_no, terminal_id=terminal_id,
                    merchant_id=who.merchant_id, open_key=who.employee_no, opened_at=self.uow.clock.now(),
                    closed_at=None)
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            raise Conflict(f"operator {who.employee_no} signed in concurrently; retry") from None
        self.uow.publish("payments.shift.opened", {"shift_no": row.shift_no, "employee_no": row.employee_no,
                                                   "terminal_id": terminal_id}, subject=f"shift:{row.shift_no}")
        return ShiftView.of(row)

    def sign_out(self, shift_no: str) -> ShiftStatement:
        """Close a shift (idempotent) and return its statement."""
        row = self._shift(shift_no)
        if row.closed_at is None:
            row.closed_at, row.open_key = self.uow.clock.now(), None
            self.session.flush()
            self.uow.publish("payments.shift.closed", {"shift_no": shift_no, "employee_no": row.employee_no},
                             subject=f"shift:{shift_no}")
        return self.statement(shift_no)

    def open_shift_of(self, employee_no: str) -> ShiftView | None:
        row = self._open_shift(employee_no)
        return ShiftView.of(row) if row else None

    # --- taking payments -----------------------------------------------------------------------

    def create_qr(self, shift_no: str, amount_minor: int, bill_no: str, request_id: str) -> PaymentView:
        """A dynamic QR for ``amount_minor`` at the shift's terminal, payable until it expires."""
        return self._new_payment("qr", shift_no, amount_minor, bill_no, request_id)

    def record_cash(self, shift_no: str, amount_minor: int, bill_no: str, request_id: str) -> PaymentView:
        """Cash taken at the window: succeeded at once, counted in the shift's statement."""
        return self._new_payment("cash", shift_no, amount_minor, bill_no, request_id)

    def get_payment(self, payment_no: str) -> PaymentView:
        return PaymentView.of(self._expire_if_due(self._payment(payment_no)))

    def cancel(self, payment_no: str) -> PaymentView:
        """Cancel a QR nobody has paid (idempotent)."""
        row = self._expire_if_due(self._payment(payment_no, lock=True))
        if row.status == "cancelled":
            return PaymentView.of(row)
        if row.status != "created":
            raise WrongState(f"payment {payment_no} is {row.status} and cannot be cancelled")
        self._set_status(row, "cancelled")
        return PaymentView.of(row)

    def resolve(self, payload: str) -> QrQuote:
        """What a scanned payload pays: merchant, terminal, bill and amount, and its status."""
        row = self._expire_if_due(self._by_payload(payload))
        merchant, terminal = self._merchant_row(row.merchant_id), self._terminal(row.terminal_id)
        assert merchant is not None
        return QrQuote(row.payment_no, row.status, merchant.name, merchant.city, merchant.mcc, terminal.label,
                       row.bill_no, PaymentView.of(row).amount, row.amount_minor, row.currency, row.expires_at)

    def pay(self, payload: str, payer_account: str | None, request_id: str, *, payer_customer_no: str | None = None,
            funding_source: str = ACCOUNT) -> PaymentView:
        """Pay a scanned QR, idempotent on ``request_id``: from the payer's ledger account
        (``funding_source="account"``) or from a funding source another module offers
        (``core.funding``, e.g. ``"credit_pay"``, for the customer ``payer_customer_no``).

        From an account: holds the amount on the payer's account (pending), then captures it: the
        merchant's settlement account gets the amount less the fee, the bank's fee income the fee.
        An expired QR becomes ``expired``, too little money or a source's decline makes the payment
        ``failed``; both are returned, not raised, so the state commits;
        :meth:`PaymentView.raise_unless_paid` turns them into errors.
        """
        _check_id(request_id, "request_id")
        row = self._by_payload(payload, lock=True)
        if row.pay_request_id is not None:
            if row.pay_request_id == request_id and (row.funding_source or ACCOUNT) == funding_source and (
                    funding_source != ACCOUNT or row.payer_account == payer_account):
                return PaymentView.of(row)
            raise WrongState(f"payment {row.payment_no} was already paid by another request")
        row = self._expire_if_due(row)
        if row.status != "created":
            if row.status == "expired":
                return PaymentView.of(row)
            raise WrongState(f"payment {row.payment_no} is {row.status} and cannot be paid")
        self._check_funding(funding_source, payer_account, payer_customer_no, row.currency)
        row.pay_request_id = request_id
        self._charge(row, funding_source, payer_account, payer_customer_no)
        return PaymentView.of(row)

    def _check_funding(self, funding_source: str, payer_account: str | None, customer_no: str | None,
                       currency: str) -> None:
        """Refuse a funding choice that cannot be used, before anything is written."""
        if funding_source == ACCOUNT:
            if payer_account is None:
                raise ValidationFailed("payer_account is required to pay from an account", details=[
                    {"field": "payer_account", "code": "required", "message": "name the paying account"}])
            self._payer_account(payer_account, customer_no, currency)
            return
        self._funding_source(funding_source)
        if customer_no is None:
            raise ValidationFailed(f"funding from {funding_source} needs the paying customer", details=[
                {"field": "customer_no", "code": "required", "message": "the payer must be a linked customer"}])

    def _funding_source(self, name: str) -> FundingSource:
        source = funding_sources(self.tenant).get(name)
        if source is None:
            raise FundingSourceUnavailable(
                f"funding source {name!r} is not available at this bank",
                details=[{"field": "funding_source", "code": "funding_source_unavailable",
                          "message": "use 'account' or a source the bank has enabled"}])
        return source

    def _payer_account(self, payer_account: str, customer_no: str | None, currency: str) -> None:
        try:
            account = self.ledger.get_account(payer_account)
        except UnknownAccount:
            raise ValidationFailed("unknown payer account", details=[
                {"field": "payer_account", "code": "unknown_account", "message": "no such account"}]) from None
        if customer_no is not None and account.owner_id != customer_no:
            # A partner pays only from its own consenting user's accounts; say nothing about others.
            raise ValidationFailed("unknown payer account", details=[
                {"field": "payer_account", "code": "unknown_account", "message": "no such account"}])
        if account.owner_type != OwnerType.CUSTOMER or account.currency != currency:
            raise ValidationFailed("the payer account must be a customer account in the payment's currency",
                                   details=[{"field": "payer_account", "code": "not_a_payer_account",
                                             "message": "not a customer account in " + currency}])

    def _charge(self, row: Payment, funding_source: str, payer_account: str | None, customer_no: str | None) -> None:
        """Fund a created payment (checked by :meth:`_check_funding`) and pay the merchant:
        ``succeeded``, or ``failed`` with ``failure_code`` (nothing moved)."""
        row.funding_source, row.customer_no = funding_source, customer_no
        if funding_source != ACCOUNT:
            self._charge_source(row, self._funding_source(funding_source))
            return
        assert payer_account is not None
        ledger = self.ledger
        merchant = self._merchant_row(row.merchant_id)
        assert merchant is not None
        row.payer_account = payer_account
        postings = [Posting.debit(payer_account, row.amount_minor),
                    Posting.credit(merchant.settlement_account, row.amount_minor - row.fee_minor)]
        if row.fee_minor:
            postings.append(Posting.credit(self.settings.fee_income_account, row.fee_minor))
        now = self.uow.clock.now()
        meta = {"payment_no": row.payment_no, "terminal_id": row.terminal_id, "employee_no": row.employee_no,
                "bill_no": row.bill_no}
        try:
            ledger.post(EntryDraft(f"pay:{row.payment_no}", postings, description=f"{row.tender.upper()} payment",
                                   metadata=meta, pending=True,
                                   expires_at=now + timedelta(seconds=self.settings.qr_ttl_seconds)))
        except InsufficientFunds as exc:
            row.failure_code = exc.code
            self._set_status(row, "failed")
            return
        self._set_status(row, "pending")
        ledger.post_pending(f"pay:{row.payment_no}", f"pay:{row.payment_no}:capture")
        self._set_status(row, "succeeded")

    def _charge_source(self, row: Payment, source: FundingSource) -> None:
        """Hold and capture at the source, then pay the merchant from the source's clearing
        account, all in this unit of work (the source's records commit with the payment)."""
        assert row.customer_no is not None
        merchant = self._merchant_row(row.merchant_id)
        assert merchant is not None
        row.funding_ref = f"payments:{row.payment_no}"
        hold = source.hold(self.uow, customer_no=row.customer_no, amount_minor=row.amount_minor,
                           currency=row.currency, merchant_id=row.merchant_id, reference=row.funding_ref)
        if hold.declined:
            row.failure_code = (hold.reasons[0] if hold.reasons else "funding_declined")[:64]
            self._set_status(row, "failed")
            return
        self._set_status(row, "pending")
        hold = source.capture(self.uow, row.funding_ref)
        assert hold.status == "captured" and hold.amount_minor == row.amount_minor, hold
        row.payer_account = hold.clearing_account
        postings = [Posting.debit(hold.clearing_account, row.amount_minor),
                    Posting.credit(merchant.settlement_account, row.amount_minor - row.fee_minor)]
        if row.fee_minor:
            postings.append(Posting.credit(self.settings.fee_income_account, row.fee_minor))
        self.ledger.post(EntryDraft(f"pay:{row.payment_no}", postings,
                                    description=f"{row.tender.upper()} payment funded by {source.name}",
                                    metadata={"payment_no": row.payment_no, "terminal_id": row.terminal_id,
                                              "employee_no": row.employee_no, "bill_no": row.bill_no,
                                              "funding_source": source.name, "funding_ref": row.funding_ref}))
        self._set_status(row, "succeeded")

    def expire_due(self) -> list[str]:
        """Expire every unpaid QR past its expiry (the job a scheduler runs; also done lazily)."""
        now = self.uow.clock.now()
        rows = self.session.scalars(select(Payment).where(Payment.status == "created", Payment.expires_at <= now)
                                    .order_by(Payment.id).with_for_update()).all()
        for row in rows:
            self._set_status(row, "expired")
        return [row.payment_no for row in rows]

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, payment_no: str, amount_minor: int, approver: Verified, request_id: str,
               reason: str = "") -> RefundView:
        """Refund part or all of a succeeded payment; supervisors only; never above what was paid
        less what was refunded; idempotent on ``request_id``. A QR refund posts to the ledger (the
        merchant's settlement account and, pro rata, the fee income back to the payer)."""
        _check_id(request_id, "request_id")
        _check_amount(amount_minor)
        if approver.role != "supervisor":
            raise Forbidden("only a supervisor may approve a refund")
        existing = self.session.scalars(select(Refund).where(Refund.request_id == request_id)).one_or_none()
        if existing is not None:
            if (existing.payment_no, existing.amount_minor) != (payment_no, amount_minor):
                raise Conflict(f"refund request {request_id} exists for a different payment or amount")
            return self._refund_view(existing)
        row = self._payment(payment_no, lock=True)
        if row.merchant_id != approver.merchant_id:
            raise Forbidden(f"supervisor {approver.employee_no} is not of merchant {row.merchant_id}")
        if row.status != "succeeded":
            raise WrongState(f"payment {payment_no} is {row.status}; only a succeeded payment can be refunded")
        refundable = row.amount_minor - row.refunded_minor
        if amount_minor > refundable:
            raise RefundExceedsPaid(
                f"refund of {Money(amount_minor, row.currency)} exceeds the {Money(refundable, row.currency)} refundable",
                details=[{"field": "amount_minor", "code": "refund_exceeds_paid",
                          "message": f"at most {refundable} minor units can be refunded"}])
        # The fee goes back pro rata, rounded down on the running total so the parts add up to the fee.
        fee_before = row.fee_minor * row.refunded_minor // row.amount_minor
        fee_after = row.fee_minor * (row.refunded_minor + amount_minor) // row.amount_minor
        fee_part = fee_after - fee_before
        refund = Refund(refund_no=new_no("rfd_"), request_id=request_id, payment_no=payment_no,
                        shift_no=row.shift_no, tender=row.tender, amount_minor=amount_minor, fee_minor=fee_part,
                        approved_by=approver.employee_no, reason=reason[:200], created_at=self.uow.clock.now())
        if row.tender != "cash":
            assert row.payer_account is not None
            merchant = self._merchant_row(row.merchant_id)
            assert merchant is not None
            postings = [Posting.credit(row.payer_account, amount_minor)]
            if amount_minor - fee_part:
                postings.append(Posting.debit(merchant.settlement_account, amount_minor - fee_part))
            if fee_part:
                postings.append(Posting.debit(self.settings.fee_income_account, fee_part))
            self.ledger.post(EntryDraft(f"refund:{refund.refund_no}", postings, description=f"{row.tender.upper()} refund",
                                        metadata={"payment_no": payment_no, "approved_by": approver.employee_no}))
            if row.funding_source not in (None, ACCOUNT):
                # The clearing account got the amount back above; the source returns it to the customer.
                assert row.funding_ref is not None
                self._funding_source(row.funding_source).refund(self.uow, row.funding_ref,
                                                                f"payments:{refund.refund_no}", amount_minor)
        row.refunded_minor += amount_minor
        self.session.add(refund)
        self.session.flush()
        self.uow.publish("payments.refund.succeeded",
                         {"refund_no": refund.refund_no, "payment_no": payment_no, "amount_minor": amount_minor,
                          "currency": row.currency, "approved_by": approver.employee_no,
                          "merchant_id": row.merchant_id, "terminal_id": row.terminal_id, "bill_no": row.bill_no,
                          "refunded_minor": row.refunded_minor},
                         subject=f"payment:{payment_no}")
        return self._refund_view(refund)

    # --- statements ----------------------------------------------------------------------------

    def statement(self, shift_no: str) -> ShiftStatement:
        """Counts and amounts by tender of the shift's succeeded sales and of the refunds of them."""
        shift = self._shift(shift_no)
        sales, refunds = self._totals([shift_no])
        sales_minor = sum(line.amount_minor for line in sales)
        refunds_minor = sum(line.amount_minor for line in refunds)
        return ShiftStatement(shift.shift_no, shift.employee_no, shift.terminal_id, shift.opened_at, shift.closed_at,
                              self.tenant.currency, sales, refunds, sales_minor, refunds_minor,
                              sales_minor - refunds_minor)

    def operator_statement(self, employee_no: str, day: date) -> OperatorStatement:
        """An operator's shifts opened on a business day (the bank's time zone), with their totals."""
        if self._operator_row(employee_no) is None:
            raise NotFound(f"no operator {employee_no!r}")
        start, end = day_window(self.tenant, day)
        shifts = self.session.scalars(select(Shift.shift_no).where(
            Shift.employee_no == employee_no, Shift.opened_at >= start, Shift.opened_at < end).order_by(Shift.id)).all()
        sales, refunds = self._totals(list(shifts))
        sales_minor = sum(line.amount_minor for line in sales)
        refunds_minor = sum(line.amount_minor for line in refunds)
        return OperatorStatement(employee_no, day, list(shifts), self.tenant.currency, sales, refunds, sales_minor,
                                 refunds_minor, sales_minor - refunds_minor)

    def _totals(self, shift_nos: list[str]) -> tuple[list[TenderLine], list[TenderLine]]:
        sales = {t: TenderLine(t, 0, 0) for t in TENDERS}
        refunds = {t: TenderLine(t, 0, 0) for t in TENDERS}
        if not shift_nos:
            return list(sales.values()), list(refunds.values())
        for tender, count, total in self.session.execute(
            select(Payment.tender, func.count(), func.coalesce(func.sum(Payment.amount_minor), 0))
            .where(Payment.shift_no.in_(shift_nos), Payment.status == "succeeded").group_by(Payment.tender)
        ):
            sales[tender] = TenderLine(tender, int(count), int(total))
        for tender, count, total in self.session.execute(
            select(Refund.tender, func.count(), func.coalesce(func.sum(Refund.amount_minor), 0))
            .where(Refund.shift_no.in_(shift_nos)).group_by(Refund.tender)
        ):
            refunds[tender] = TenderLine(tender, int(count), int(total))
        return list(sales.values()), list(refunds.values())

    # --- internals -----------------------------------------------------------------------------

    def _new_payment(self, tender: str, shift_no: str, amount_minor: int, bill_no: str, request_id: str,
                     code_ref: str | None = None) -> PaymentView:
        _check_id(request_id, "request_id")
        _check_amount(amount_minor)
        if not BILL_NO.match(bill_no):
            raise ValidationFailed("bill_no must be 1-25 letters, digits, '_', '.' or '-'",
                                   details=[{"field": "bill_no", "code": "invalid", "message": "bad bill number"}])
        if tender == "qr" and len(f"{Money(amount_minor, self.tenant.currency).amount:f}") > QR_AMOUNT_MAX_CHARS:
            raise ValidationFailed(f"amount_minor {amount_minor} does not fit in a QR code (EMVCo tag 54 holds at "
                                   f"most {QR_AMOUNT_MAX_CHARS} characters)",
                                   details=[{"field": "amount_minor", "code": "too_large", "message": "too large"}])
        # A retry is found by the request id's unique key when the insert below conflicts (or, if
        # the shift cannot take the sale, before refusing it): no lookup on the way of a new sale.
        try:
            shift, merchant, terminal = self._sale_rows(shift_no)
            if shift.closed_at is not None:
                raise WrongState(f"shift {shift_no} is closed")
        except (NotFound, WrongState):
            replay = self._replay(tender, shift_no, amount_minor, bill_no, request_id)
            if replay is not None:
                return replay
            raise
        now = self.uow.clock.now()
        currency = self.tenant.currency
        # The merchant discount: per payment taken through the bank, rounded the tenant's way.
        fee = Money.of(Money(amount_minor, currency).amount * Decimal(merchant.fee_rate), currency,
                       self.tenant.rounding).amount_minor if tender != "cash" else 0
        row = Payment(payment_no=new_no("pay_"), request_id=request_id, tender=tender,
                      status="succeeded" if tender == "cash" else "created", merchant_id=merchant.merchant_id,
                      terminal_id=terminal.terminal_id, shift_no=shift_no, employee_no=shift.employee_no,
                      bill_no=bill_no, amount_minor=amount_minor, currency=currency, fee_minor=fee,
                      refunded_minor=0, payload=None, expires_at=None, payer_account=None, pay_request_id=None,
                      failure_code=None, created_at=now, completed_at=now if tender == "cash" else None,
                      code_ref=code_ref)
        if tender == "qr":
            row.expires_at = now + timedelta(seconds=self.settings.qr_ttl_seconds)
            row.payload = emv.build_payload(emv.QrFields(
                guid=self.settings.qr_guid, merchant_id=merchant.merchant_id, mcc=merchant.mcc,
                currency_numeric=f"{iso4217.Currency(currency).number:03d}",
                amount=PaymentView.of(row).amount, country_code=self.settings.country_code,
                merchant_name=merchant.name, merchant_city=merchant.city, bill_no=bill_no,
                reference=row.payment_no, terminal_label=terminal.label, expires_at=row.expires_at))
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            # The request id is taken: by a retry (committed, or just committed by a concurrent
            # one, whose insert we waited for), answered with that payment, or by another payment.
            replay = self._replay(tender, shift_no, amount_minor, bill_no, request_id)
            if replay is not None:
                return replay
            raise Conflict(f"request {request_id} was taken concurrently; retry") from None
        self._rows()[("payment", row.payment_no)] = (row, True)  # inserted here: nobody else sees it
        self._publish(row, "succeeded" if tender == "cash" else "created")
        return PaymentView.of(row)

    def _replay(self, tender: str, shift_no: str, amount_minor: int, bill_no: str,
                request_id: str) -> PaymentView | None:
        """The payment ``request_id`` already made, if it is this one (a retry); a conflict if it
        made another; None if the request id is unused."""
        existing = self.session.scalars(select(Payment).where(Payment.request_id == request_id)).one_or_none()
        if existing is None:
            return None
        if (existing.tender, existing.shift_no, existing.amount_minor, existing.bill_no) != (
                tender, shift_no, amount_minor, bill_no):
            raise Conflict(f"request {request_id} was used for a different payment")
        return PaymentView.of(existing)

    def _set_status(self, row: Payment, status: str) -> None:
        # Not flushed here: a sale goes created -> pending -> succeeded in one unit of work, and one
        # UPDATE at the end (the commit's flush, or the autoflush of the next ORM read) is enough;
        # no other transaction could see the intermediate states anyway.
        row.status = status
        if status in ("succeeded", "failed", "expired", "cancelled"):
            row.completed_at = self.uow.clock.now()
        self._publish(row, status)

    def _publish(self, row: Payment, status: str) -> None:
        payload: dict[str, Any] = {"payment_no": row.payment_no, "tender": row.tender, "status": status,
                                   "amount_minor": row.amount_minor, "currency": row.currency,
                                   "merchant_id": row.merchant_id, "terminal_id": row.terminal_id,
                                   "employee_no": row.employee_no, "bill_no": row.bill_no}
        if row.failure_code:
            payload["failure_code"] = row.failure_code
        self.uow.publish(f"payments.payment.{status}", payload, subject=f"payment:{row.payment_no}")

    def _expire_if_due(self, row: Payment) -> Payment:
        if row.status == "created" and row.expires_at is not None and row.expires_at <= self.uow.clock.now():
            self._set_status(row, "expired")
        return row

    def _by_payload(self, payload: str, *, lock: bool = False) -> Payment:
        try:
            reference = emv.reference_of(payload.strip())
        except ValueError as exc:
            raise InvalidQr(f"not a payable QR: {exc}",
                            details=[{"field": "payload", "code": "invalid_qr", "message": str(exc)}]) from None
        row = self._payment(reference, lock=lock, missing=InvalidQr("this QR is not one of this bank's payments"),
                            with_merchant=True)
        if row.payload != payload.strip():
            raise InvalidQr("this QR does not match the payment it names")
        return row

    def _rows(self) -> dict[tuple[str, str], Any]:
        return self.session.info.setdefault(_ROWS_KEY, {})

    def _payment(self, payment_no: str, *, lock: bool = False, missing: SceneOSError | None = None,
                 with_merchant: bool = False) -> Payment:
        """The payment (locked ``FOR UPDATE`` if ``lock``), read at most once per unit of work;
        ``with_merchant`` reads its merchant and terminal in the same statement."""
        rows = self._rows()
        cached = rows.get(("payment", payment_no))
        if cached is not None and (cached[1] or not lock):
            return cached[0]
        if with_merchant:
            query = (select(Payment, Merchant, Terminal)
                     .join(Merchant, Merchant.merchant_id == Payment.merchant_id)
                     .join(Terminal, Terminal.terminal_id == Payment.terminal_id)
                     .where(Payment.payment_no == payment_no))
            if lock:  # the payment's row only: the merchant and terminal are shared by every sale
                query = query.with_for_update(of=Payment).execution_options(populate_existing=True)
            found = self.session.execute(query).one_or_none()
            if found is not None:
                row, merchant, terminal = found
                rows[("merchant", merchant.merchant_id)] = merchant
                rows[("terminal", terminal.terminal_id)] = terminal
                rows[("payment", payment_no)] = (row, lock)
                return row
        query = select(Payment).where(Payment.payment_no == payment_no)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        row = self.session.scalars(query).one_or_none()
        if row is None:
            raise missing or NotFound(f"no payment {payment_no!r}")
        rows[("payment", payment_no)] = (row, lock)
        return row

    def _sale_rows(self, shift_no: str) -> tuple[Shift, Merchant, Terminal]:
        """A sale's shift with its merchant and terminal: one statement, once per unit of work."""
        rows = self._rows()
        shift = rows.get(("shift", shift_no))
        if shift is None:
            found = self.session.execute(
                select(Shift, Merchant, Terminal)
                .join(Merchant, Merchant.merchant_id == Shift.merchant_id)
                .join(Terminal, Terminal.terminal_id == Shift.terminal_id)
                .where(Shift.shift_no == shift_no)).one_or_none()
            if found is None:  # no such shift (NotFound), or a terminal gone from the configuration
                shift = self._shift(shift_no)
                return shift, self._merchant_row_or_fail(shift.merchant_id), self._terminal(shift.terminal_id)
            shift, merchant, terminal = found
            rows[("shift", shift_no)] = shift
            rows[("merchant", merchant.merchant_id)] = merchant
            rows[("terminal", terminal.terminal_id)] = terminal
        return shift, self._merchant_row_or_fail(shift.merchant_id), self._terminal(shift.terminal_id)

    def _merchant_row_or_fail(self, merchant_id: str) -> Merchant:
        row = self._merchant_row(merchant_id)
        if row is None:
            raise NotFound(f"no merchant {merchant_id!r}")
        return row

    def _refund_view(self, row: Refund) -> RefundView:
        return RefundView(row.refund_no, row.request_id, row.payment_no, row.amount_minor, self.tenant.currency,
                          row.approved_by, row.reason, row.created_at)

    def _merchant_row(self, merchant_id: str) -> Merchant | None:
        rows = self._rows()
        row = rows.get(("merchant", merchant_id))
        if row is None:
            row = self.session.scalars(select(Merchant).where(Merchant.merchant_id == merchant_id)).one_or_none()
            if row is not None:
                rows[("merchant", merchant_id)] = row
        return row

    def _operator_row(self, employee_no: str) -> Operator | None:
        return self.session.scalars(select(Operator).where(Operator.employee_no == employee_no)).one_or_none()

    def _terminal(self, terminal_id: str) -> Terminal:
        rows = self._rows()
        row = rows.get(("terminal", terminal_id))
        if row is None:
            row = self.session.scalars(select(Terminal).where(Terminal.terminal_id == terminal_id)).one_or_none()
            if row is None:
                raise NotFound(f"no terminal {terminal_id!r}")
            rows[("terminal", terminal_id)] = row
        return row

    def _shift(self, shift_no: str) -> Shift:
        rows = self._rows()
        row = rows.get(("shift", shift_no))
        if row is None:
            row = self.session.scalars(select(Shift).where(Shift.shift_no == shift_no)).one_or_none()
            if row is None:
                raise NotFound(f"no shift {shift_no!r}")
            rows[("shift", shift_no)] = row
        return row

    def _open_shift(self, employee_no: str) -> Shift | None:
        return self.session.scalars(select(Shift).where(Shift.open_key == employee_no)).one_or_none()


def _check_id(value: str, name: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ValidationFailed(f"{name} must be 1-64 letters, digits or _.:-",
                               details=[{"field": name, "code": "invalid", "message": "bad id"}])


def _check_amount(amount_minor: int) -> None:
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise ValidationFailed("amount_minor must be a positive integer (minor units)",
                               details=[{"field": "amount_minor", "code": "invalid", "message": "must be > 0"}])
    if amount_minor > MAX_AMOUNT_MINOR:  # no BIGINT column (nor the ledger) could hold it
        raise ValidationFailed(f"amount_minor must be at most {MAX_AMOUNT_MINOR}",
                               details=[{"field": "amount_minor", "code": "too_large", "message": "too large"}])
