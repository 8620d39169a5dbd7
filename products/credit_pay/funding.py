"""Credit pay as a funding source of other modules' payments (``core.funding.FundingSource``).

A payment module holds, captures, releases and refunds through this object; each call becomes a
credit purchase of the customer's credit account (``authorize``, ``capture``, ``cancel``,
``refund``) in the caller's unit of work, so the payment and the purchase commit together. The
purchase id is the caller's reference, so every call is idempotent. The captured amount lands in
credit pay's merchant payable account (``credit_pay:merchant:<currency>:<merchant_id>``), the
clearing account from which the payment module pays the merchant.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.errors import ValidationFailed
from core.funding import FundingHold
from core.tenancy import UnitOfWork
from products.credit_pay.models import CreditPayAccount
from products.credit_pay.service import CreditPayService, PurchaseDraft, PurchaseView, merchant_account

_STATUS = {"authorized": "held", "captured": "captured", "cancelled": "released", "expired": "released",
           "declined": "declined"}


class CreditPayFunding:
    """The ``credit_pay`` funding source of one tenant."""

    name = "credit_pay"

    def __init__(self, tenant: Any) -> None:
        self.tenant = tenant

    def _service(self, uow: UnitOfWork) -> CreditPayService:
        return self.tenant.module("credit_pay").container.service(uow=uow)

    def hold(self, uow: UnitOfWork, *, customer_no: str, amount_minor: int, currency: str, merchant_id: str,
             reference: str) -> FundingHold:
        service = self._service(uow)
        account = uow.session.scalars(
            select(CreditPayAccount).where(CreditPayAccount.customer_no == customer_no,
                                           CreditPayAccount.status == "active")
            .order_by(CreditPayAccount.id)).first()
        if account is None:
            # A refusal, not an error: the wallet offered credit pay to someone without a line.
            return FundingHold(reference, "declined", amount_minor, currency,
                               merchant_account(currency, merchant_id), ("no_credit_account",))
        view = service.authorize(PurchaseDraft(purchase_id=reference, account_no=account.account_no,
                                               merchant_id=merchant_id, amount_minor=amount_minor,
                                               currency=currency))
        return self._hold(view)

    def capture(self, uow: UnitOfWork, reference: str) -> FundingHold:
        return self._hold(self._service(uow).capture(reference))

    def release(self, uow: UnitOfWork, reference: str) -> FundingHold:
        service = self._service(uow)
        view = service.purchase(reference)
        if view.status == "declined":
            return self._hold(view)
        return self._hold(service.cancel(reference))

    def refund(self, uow: UnitOfWork, reference: str, refund_reference: str, amount_minor: int) -> None:
        if len(refund_reference) > 64:
            raise ValidationFailed("refund_reference must be at most 64 characters")
        self._service(uow).refund(reference, refund_reference, amount_minor)

    @staticmethod
    def _hold(view: PurchaseView) -> FundingHold:
        return FundingHold(view.purchase_id, _STATUS.get(view.status, view.status), view.amount_minor, view.currency,
                           merchant_account(view.currency, view.merchant_id), tuple(view.reasons))
