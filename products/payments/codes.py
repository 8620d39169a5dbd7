"""Payment codes (customer-presented mode): the bank issues a customer a one-time code through a
partner app; the cashier scans it and the payment succeeds at once, debiting the payer.

A code is 18 digits: the configured prefix (``code_prefix``, 2-4 digits), random digits from the
``secrets`` module, and a Luhn check digit (a mistyped code is refused before any lookup). Only a
SHA-256 hash of the code (with the tenant id) is stored; the code itself is returned once, to the
issuing call, and never logged or put in an event. A code is bound to its customer and funding
source, lives ``code_ttl_seconds`` and pays once.

:class:`PaymentCodes` is a part of :class:`products.payments.service.PaymentsService`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.errors import Conflict
from products.payments.errors import InvalidPaymentCode, PaymentCodeExpired, PaymentCodeUsed
from products.payments.models import Payment, PaymentCode

if TYPE_CHECKING:
    from products.payments.service import PaymentsService, PaymentView

CODE_LENGTH = 18


@dataclass(frozen=True)
class IssuedCode:
    """A code as issued: ``code`` is shown to the customer once (a retry issues a new one)."""

    code: str
    code_ref: str
    customer_no: str
    funding_source: str
    expires_at: datetime


def luhn_digit(digits: str) -> str:
    """The Luhn check digit of ``digits`` (ISO/IEC 7812)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def well_formed(code: str) -> bool:
    return (isinstance(code, str) and len(code) == CODE_LENGTH and code.isascii() and code.isdigit()
            and luhn_digit(code[:-1]) == code[-1])


def code_hash(tenant_id: str, code: str) -> str:
    return hashlib.sha256(f"{tenant_id}:{code}".encode()).hexdigest()


class PaymentCodes:
    """Issuing and scanning payment codes (mixed into ``PaymentsService``)."""

    def issue_code(self: PaymentsService, customer_no: str, request_id: str, *, funding_source: str = "account",
                   payer_account: str | None = None, partner_id: str | None = None) -> IssuedCode:
        """Issue a one-time code for ``customer_no`` funded from ``payer_account`` (the customer's
        own account) or a funding source (``credit_pay``). Idempotent on ``request_id``: a retry of
        an unused code replaces it with a new code (the old one stops working), since only the
        hash is kept; a retry after the code was used is a conflict."""
        from products.payments.service import _check_id

        _check_id(request_id, "request_id")
        _check_id(customer_no, "customer_no")
        self._check_funding(funding_source, payer_account, customer_no, self.tenant.currency)
        if funding_source != "account":
            payer_account = None
        now = self.uow.clock.now()
        code = self._new_code()
        expires_at = now + timedelta(seconds=self.settings.code_ttl_seconds)
        row = self.session.scalars(
            select(PaymentCode).where(PaymentCode.request_id == request_id).with_for_update()).one_or_none()
        if row is not None:
            if (row.customer_no, row.funding_source, row.payer_account) != (customer_no, funding_source, payer_account):
                raise Conflict(f"code request {request_id} was made for another customer or funding source")
            if row.status == "used":
                raise PaymentCodeUsed(f"the code of request {request_id} was used; request a new code")
            row.code_hash, row.created_at, row.expires_at, row.status = code_hash(self.tenant.id, code), now, expires_at, "active"
            self.session.flush()
        else:
            row = PaymentCode(code_ref=_code_ref(), code_hash=code_hash(self.tenant.id, code), request_id=request_id,
                              customer_no=customer_no, partner_id=partner_id, funding_source=funding_source,
                              payer_account=payer_account, status="active", payment_no=None, created_at=now,
                              expires_at=expires_at, used_at=None)
            try:
                with self.session.begin_nested():
                    self.session.add(row)
            except IntegrityError:
                raise Conflict(f"code request {request_id} was made concurrently; retry") from None
        # The event names the code by its reference only: the code itself is a bearer credential.
        # With the issuing partner named, the entry sends its webhook to that partner only.
        event: dict[str, object] = {"code_ref": row.code_ref, "customer_no": customer_no,
                                    "funding_source": funding_source, "expires_at": expires_at.isoformat()}
        if row.partner_id is not None:
            event["partner_id"] = row.partner_id
        self.uow.publish("payments.code.issued", event, subject=f"payment_code:{row.code_ref}")
        return IssuedCode(code, row.code_ref, customer_no, funding_source, expires_at)

    def scan_code(self: PaymentsService, shift_no: str, code: str, amount_minor: int, bill_no: str,
                  request_id: str) -> PaymentView:
        """The cashier scanned ``code`` for ``amount_minor``: the payment is created at the shift's
        terminal and paid at once from the code's funding. Idempotent on ``request_id``. An
        unknown, malformed, replaced or other bank's code, a used one and an expired one are
        refused before anything is written; too little money (or a source's decline) makes the
        payment ``failed`` (returned, so it commits) and leaves the code usable until it expires."""
        from products.payments.service import PaymentView, _check_amount, _check_id

        _check_id(request_id, "request_id")
        _check_amount(amount_minor)
        if not well_formed(code):
            raise InvalidPaymentCode("not a payment code", details=[
                {"field": "code", "code": "invalid_payment_code", "message": f"{CODE_LENGTH} digits with a valid check digit"}])
        digest = code_hash(self.tenant.id, code)
        existing = self.session.scalars(select(Payment).where(Payment.request_id == request_id)).one_or_none()
        if existing is not None:
            same_code = self.session.scalars(select(PaymentCode.code_ref).where(PaymentCode.code_hash == digest)).one_or_none()
            if existing.tender != "code" or existing.code_ref != same_code:
                raise Conflict(f"request {request_id} was used for a different payment")
            return self._new_payment("code", shift_no, amount_minor, bill_no, request_id, same_code)
        row = self.session.scalars(select(PaymentCode).where(PaymentCode.code_hash == digest).with_for_update()).one_or_none()
        if row is None or row.status == "superseded":
            raise InvalidPaymentCode("unknown payment code", details=[
                {"field": "code", "code": "invalid_payment_code", "message": "not a code this bank issued"}])
        if row.status == "used":
            raise PaymentCodeUsed("this payment code was already used", details=[
                {"field": "code", "code": "payment_code_used", "message": "ask the customer for a new code"}])
        if row.expires_at <= self.uow.clock.now():
            raise PaymentCodeExpired("this payment code has expired", details=[
                {"field": "code", "code": "payment_code_expired", "message": "ask the customer for a new code"}])
        self._check_funding(row.funding_source, row.payer_account, row.customer_no, self.tenant.currency)
        created = self._new_payment("code", shift_no, amount_minor, bill_no, request_id, row.code_ref)
        payment = self._payment(created.payment_no, lock=True)
        self._charge(payment, row.funding_source, row.payer_account, row.customer_no)
        if payment.status == "succeeded":
            row.status, row.payment_no, row.used_at = "used", payment.payment_no, self.uow.clock.now()
            self.session.flush()
        return PaymentView.of(payment)

    def _new_code(self: PaymentsService) -> str:
        prefix = self.settings.code_prefix
        body = "".join(secrets.choice("0123456789") for _ in range(CODE_LENGTH - len(prefix) - 1))
        return prefix + body + luhn_digit(prefix + body)


def _code_ref() -> str:
    from products.payments.service import new_no

    return new_no("pcd_")
