"""HTTP routes of credit pay: ``/v1/credit_pay/...`` for partners (signed, scoped, with the user's
consent where the route acts for a user) and ``/v1/tenants/{tenant_id}/credit_pay/...`` for the bank.

On a partner's call the customer is the one the partner's user (``SceneOS-User-Id``) is linked to,
and a partner sees and changes only its own users' accounts and its own purchases.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from core.errors import NotFound, ValidationFailed
from core.http import module_runtime
from core.tenancy import ModuleRuntime
from infra.entry.consent import EndUser, require_consent
from products.credit_pay.billing import StatementView, TransactionView
from products.credit_pay.calc import Method
from products.credit_pay.installments import (
    BalanceConversion,
    InstallmentService,
    PlanView,
    PurchaseConversion,
)
from products.credit_pay.lines import (
    REASON_PATTERN,
    BankOnly,
    LineAdjustmentDraft,
    LineAdjustmentView,
    LineService,
)
from products.credit_pay.remittance import PartnerPosition, RemittanceDraft, Remittances, RemittanceView
from products.credit_pay.repayment import RepaymentDraft, RepaymentView
from products.credit_pay.service import (
    ID_PATTERN,
    AccountView,
    ActivationDraft,
    ActivationView,
    CreditPayService,
    PurchaseDraft,
    PurchaseView,
    RefundView,
    TrialView,
)
from products.credit_pay.settlement import MerchantSettlements, SettlementView

credit_pay = module_runtime("credit_pay")


class ActivationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    # The bank names the customer; a partner's call takes the customer linked to its user.
    customer_no: str | None = Field(default=None, min_length=1, max_length=32)
    product: str = Field(default="standard", min_length=1, max_length=32)
    consented: dict[str, Any] = Field(default_factory=dict)
    device_id: str | None = Field(default=None, max_length=128)


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    amount_minor: int = Field(gt=0, le=10**15)


class TrialBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: int = Field(gt=0, le=10**15)
    terms: int | None = Field(default=None, ge=1, le=360)
    method: str | None = Field(default=None, max_length=32)
    # The merchant selling: its interest-free plans offered today are shown in place of the
    # product's plans of the same terms and method.
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN)


def _partner_id(request: Request) -> str | None:
    from infra.entry.gateway import STATE_PARTNER

    context = getattr(request.state, STATE_PARTNER, None)
    return context.partner.partner_id if context is not None else None


def _customer(user: EndUser | None, given: str | None) -> str:
    if user is not None:
        if user.customer_no is None:
            raise ValidationFailed(
                "the user is not linked to a customer of the bank",
                details=[
                    {
                        "field": "user_id",
                        "code": "user_not_linked",
                        "message": "link the user with PUT /v1/users/{user_id}",
                    }
                ],
            )
        return user.customer_no
    if given is None:
        raise ValidationFailed(
            "customer_no is required",
            details=[{"field": "customer_no", "code": "missing", "message": "name the customer"}],
        )
    return given


def _own_account(service: CreditPayService, account_no: str, user: EndUser | None) -> AccountView:
    account = service.account(account_no)
    if user is not None and account.customer_no != user.customer_no:
        raise NotFound(f"no credit account {account_no!r}")  # another user's account does not exist for you
    return account


def _own_purchase(service: CreditPayService, purchase_id: str, partner_id: str | None) -> PurchaseView:
    purchase = service.purchase(purchase_id)
    if partner_id is not None:
        if service.purchase_partner(purchase_id) != partner_id:
            raise NotFound(f"no purchase {purchase_id!r}")
    return purchase


class PurchaseConversionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    terms: int = Field(ge=1, le=360)
    method: Method


class BalanceConversionBody(PurchaseConversionBody):
    amount_minor: int = Field(gt=0, le=10**15)
    statement_ref: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN)


class LineAdjustmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adjustment_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    new_line_minor: int = Field(ge=0, le=10**15)
    reason: str = Field(pattern=REASON_PATTERN)
    note: str | None = Field(default=None, max_length=200)
    forced: bool = False


def _bank_only(request: Request, what: str = "line adjustment") -> None:
    if _partner_id(request) is not None:
        raise BankOnly(f"{what} is the bank's own decision, not a partner's")


class RemittanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remittance_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    business_date: date
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


class SettlementBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    business_date: date
    currency: str = Field(default="CNY", min_length=3, max_length=3)


def router() -> APIRouter:
    api = APIRouter()

    @api.post("/activations", status_code=201)
    def activate(
        body: ActivationBody,
        request: Request,
        response: Response,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> ActivationView:
        draft = ActivationDraft(
            request_id=body.request_id,
            customer_no=_customer(user, body.customer_no),
            product=body.product,
            consented=body.consented,
            device_id=body.device_id,
        )
        with runtime.tenant.unit_of_work() as uow:
            result = runtime.container.service(uow=uow, partner_id=_partner_id(request)).activate(draft)
        if not result.created:
            response.status_code = 200
        return result

    @api.get("/accounts/{account_no}")
    def get_account(
        account_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> AccountView:
        with runtime.tenant.unit_of_work() as uow:
            return _own_account(
                runtime.container.service(uow=uow, partner_id=_partner_id(request)), account_no, user
            )

    @api.get("/accounts/{account_no}/purchases")
    def list_purchases(
        account_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> list[PurchaseView]:
        partner_id = _partner_id(request)
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=partner_id)
            _own_account(service, account_no, user)
            return service.purchases(account_no)

    @api.post("/purchases", status_code=201)
    def authorize_purchase(
        draft: PurchaseDraft,
        request: Request,
        response: Response,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> PurchaseView:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            # The ownership check is made on the account row the authorization locks anyway.
            result = service.authorize(draft, owner=user.customer_no if user is not None else None)
        if not result.created:
            response.status_code = 200
        return result

    @api.get("/purchases/{purchase_id}")
    def get_purchase(
        purchase_id: str, request: Request, runtime: ModuleRuntime = Depends(credit_pay)
    ) -> PurchaseView:
        partner_id = _partner_id(request)
        with runtime.tenant.unit_of_work() as uow:
            return _own_purchase(
                runtime.container.service(uow=uow, partner_id=partner_id), purchase_id, partner_id
            )

    @api.post("/purchases/{purchase_id}/capture")
    def capture_purchase(
        purchase_id: str, request: Request, runtime: ModuleRuntime = Depends(credit_pay)
    ) -> PurchaseView:
        partner_id = _partner_id(request)
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=partner_id)
            _own_purchase(service, purchase_id, partner_id)
            return service.capture(purchase_id)

    @api.post("/purchases/{purchase_id}/cancel")
    def cancel_purchase(
        purchase_id: str, request: Request, runtime: ModuleRuntime = Depends(credit_pay)
    ) -> PurchaseView:
        partner_id = _partner_id(request)
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=partner_id)
            _own_purchase(service, purchase_id, partner_id)
            return service.cancel(purchase_id)

    @api.post("/purchases/{purchase_id}/refunds", status_code=201)
    def refund_purchase(
        purchase_id: str,
        body: RefundBody,
        request: Request,
        response: Response,
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> RefundView:
        partner_id = _partner_id(request)
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=partner_id)
            _own_purchase(service, purchase_id, partner_id)
            result = service.refund(purchase_id, body.refund_id, body.amount_minor)
        if not result.created:
            response.status_code = 200
        return result

    # --- lifecycle: repayments, statements, transactions (products/credit_pay/repayment.py, billing.py)

    @api.post("/repayments", status_code=201)
    def repay(
        draft: RepaymentDraft,
        request: Request,
        response: Response,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> RepaymentView:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            _own_account(service, draft.account_no, user)
            result = service.repay(draft)
        if not result.created:
            response.status_code = 200
        return result  # type: ignore[no-any-return]

    @api.get("/accounts/{account_no}/repayments")
    def list_repayments(
        account_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> list[RepaymentView]:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            _own_account(service, account_no, user)
            return service.repayments(account_no)

    @api.get("/accounts/{account_no}/statements")
    def list_statements(
        account_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> list[StatementView]:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            _own_account(service, account_no, user)
            return service.statements(account_no)

    @api.get("/statements/{statement_no}")
    def get_statement(
        statement_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> StatementView:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            try:
                _own_account(service, service.statement_account(statement_no), user)
            except NotFound:
                raise NotFound(f"no statement {statement_no!r}") from None
            return service.statement(statement_no)  # type: ignore[no-any-return]

    @api.get("/accounts/{account_no}/transactions")
    def list_transactions(
        account_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> list[TransactionView]:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            _own_account(service, account_no, user)
            return service.transactions(account_no)

    @api.post("/products/{product}/trials")
    def trial(
        product: str, body: TrialBody, request: Request, runtime: ModuleRuntime = Depends(credit_pay)
    ) -> TrialView:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow, partner_id=_partner_id(request)).trial(
                product, body.amount_minor, terms=body.terms, method=body.method, merchant_id=body.merchant_id
            )

    # --- installment plans and line adjustment (products/credit_pay/installments.py, lines.py) ---

    def _own_plan(plans: InstallmentService, plan_no: str, user: EndUser | None) -> None:
        try:
            _own_account(plans.pay, plans.plan_account(plan_no), user)
        except NotFound:
            raise NotFound(f"no installment plan {plan_no!r}") from None

    @api.post("/purchases/{purchase_id}/installments", status_code=201)
    def convert_purchase(
        purchase_id: str,
        body: PurchaseConversionBody,
        request: Request,
        response: Response,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> PlanView:
        partner_id = _partner_id(request)
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=partner_id)
            _own_account(service, _own_purchase(service, purchase_id, partner_id).account_no, user)
            draft = PurchaseConversion(purchase_id=purchase_id, **body.model_dump())
            result = InstallmentService(service).convert_purchase(draft)
        if not result.created:
            response.status_code = 200
        return result

    @api.post("/accounts/{account_no}/installments", status_code=201)
    def convert_balance(
        account_no: str,
        body: BalanceConversionBody,
        request: Request,
        response: Response,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> PlanView:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            _own_account(service, account_no, user)
            draft = BalanceConversion(account_no=account_no, **body.model_dump())
            result = InstallmentService(service).convert_balance(draft)
        if not result.created:
            response.status_code = 200
        return result

    @api.get("/accounts/{account_no}/installments")
    def list_plans(
        account_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> list[PlanView]:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow, partner_id=_partner_id(request))
            _own_account(service, account_no, user)
            return InstallmentService(service).plans(account_no)

    @api.get("/installments/{plan_no}")
    def get_plan(
        plan_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> PlanView:
        with runtime.tenant.unit_of_work() as uow:
            plans = InstallmentService(runtime.container.service(uow=uow, partner_id=_partner_id(request)))
            _own_plan(plans, plan_no, user)
            return plans.plan(plan_no)

    @api.post("/installments/{plan_no}/payoff")
    def pay_off_plan(
        plan_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> PlanView:
        with runtime.tenant.unit_of_work() as uow:
            plans = InstallmentService(runtime.container.service(uow=uow, partner_id=_partner_id(request)))
            _own_plan(plans, plan_no, user)
            return plans.pay_off(plan_no)

    @api.post("/installments/{plan_no}/cancel")
    def cancel_plan(
        plan_no: str,
        request: Request,
        user: EndUser | None = Depends(require_consent("credit_decision")),
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> PlanView:
        with runtime.tenant.unit_of_work() as uow:
            plans = InstallmentService(runtime.container.service(uow=uow, partner_id=_partner_id(request)))
            _own_plan(plans, plan_no, user)
            return plans.cancel(plan_no)

    @api.post("/accounts/{account_no}/line", status_code=201)
    def adjust_line(
        account_no: str,
        body: LineAdjustmentBody,
        request: Request,
        response: Response,
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> LineAdjustmentView:
        _bank_only(request)
        with runtime.tenant.unit_of_work() as uow:
            draft = LineAdjustmentDraft(account_no=account_no, **body.model_dump())
            result = LineService(runtime.container.service(uow=uow)).adjust(draft)
        if not result.created:
            response.status_code = 200
        return result

    @api.get("/accounts/{account_no}/line_adjustments")
    def line_history(
        account_no: str, request: Request, runtime: ModuleRuntime = Depends(credit_pay)
    ) -> list[LineAdjustmentView]:
        _bank_only(request)
        with runtime.tenant.unit_of_work() as uow:
            return LineService(runtime.container.service(uow=uow)).history(account_no)

    # --- merchant settlement (products/credit_pay/settlement.py): the bank's own --------------

    @api.post("/merchants/{merchant_id}/settlements", status_code=201)
    def settle_merchant(
        merchant_id: str,
        body: SettlementBody,
        request: Request,
        response: Response,
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> SettlementView:
        _bank_only(request, "merchant settlement")
        with runtime.tenant.unit_of_work() as uow:
            settlements = MerchantSettlements(runtime.container.service(uow=uow))
            view, posted = settlements.settle(merchant_id, body.business_date, body.currency)
        if not posted:
            response.status_code = 200
        return view

    @api.get("/merchants/{merchant_id}/settlements")
    def merchant_settlements(
        merchant_id: str, request: Request, currency: str = "CNY", runtime: ModuleRuntime = Depends(credit_pay)
    ) -> list[SettlementView]:
        _bank_only(request, "merchant settlement")
        with runtime.tenant.unit_of_work() as uow:
            return MerchantSettlements(runtime.container.service(uow=uow)).settlements(merchant_id, currency)

    # --- partner remittances (products/credit_pay/remittance.py): the bank's own ----------------
    # A partner's at /partners/{id}; the bank's own channel (core banking's transfers of what the
    # bank's app collected) at /bank-channel.

    def remit(
        partner_id: str | None, body: RemittanceBody, request: Request, response: Response, runtime: ModuleRuntime
    ) -> RemittanceView:
        _bank_only(request, "recording a remittance")
        with runtime.tenant.unit_of_work() as uow:
            draft = RemittanceDraft(partner_id=partner_id, **body.model_dump())
            view = Remittances(runtime.container.service(uow=uow)).record(draft)
        if not view.created:
            response.status_code = 200
        return view

    def remitted(partner_id: str | None, request: Request, currency: str, runtime: ModuleRuntime) -> list[RemittanceView]:
        _bank_only(request, "a partner's remittances")
        with runtime.tenant.unit_of_work() as uow:
            return Remittances(runtime.container.service(uow=uow)).remittances(partner_id, currency)

    def position(partner_id: str | None, request: Request, currency: str, runtime: ModuleRuntime) -> PartnerPosition:
        _bank_only(request, "a partner's position")
        with runtime.tenant.unit_of_work() as uow:
            return Remittances(runtime.container.service(uow=uow)).position(partner_id, currency)

    @api.post("/partners/{partner_id}/remittances", status_code=201)
    def record_remittance(
        partner_id: str,
        body: RemittanceBody,
        request: Request,
        response: Response,
        runtime: ModuleRuntime = Depends(credit_pay),
    ) -> RemittanceView:
        return remit(partner_id, body, request, response, runtime)

    @api.get("/partners/{partner_id}/remittances")
    def list_remittances(
        partner_id: str, request: Request, currency: str = "CNY", runtime: ModuleRuntime = Depends(credit_pay)
    ) -> list[RemittanceView]:
        return remitted(partner_id, request, currency, runtime)

    @api.get("/partners/{partner_id}/position")
    def partner_position(
        partner_id: str, request: Request, currency: str = "CNY", runtime: ModuleRuntime = Depends(credit_pay)
    ) -> PartnerPosition:
        return position(partner_id, request, currency, runtime)

    @api.post("/bank-channel/remittances", status_code=201)
    def record_channel_remittance(
        body: RemittanceBody, request: Request, response: Response, runtime: ModuleRuntime = Depends(credit_pay)
    ) -> RemittanceView:
        return remit(None, body, request, response, runtime)

    @api.get("/bank-channel/remittances")
    def list_channel_remittances(
        request: Request, currency: str = "CNY", runtime: ModuleRuntime = Depends(credit_pay)
    ) -> list[RemittanceView]:
        return remitted(None, request, currency, runtime)

    @api.get("/bank-channel/position")
    def channel_position(
        request: Request, currency: str = "CNY", runtime: ModuleRuntime = Depends(credit_pay)
    ) -> PartnerPosition:
        return position(None, request, currency, runtime)

    return api
