"""HTTP routes of the payments module.

Mounted for the bank at ``/v1/tenants/{tenant_id}/payments`` and for partners (a payer's wallet)
at ``/v1/payments`` behind signatures and scopes. Partners may only resolve and pay QR codes
(``/qr/resolve``, ``/qr/pay``); the cashier and administration routes answer them 403.
"""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from core.errors import ValidationFailed
from core.http import module_runtime
from core.tenancy import ModuleRuntime
from infra.entry.consent import EndUser, require_consent
from infra.entry.gateway import STATE_PARTNER
from products.payments.codes import IssuedCode
from products.payments.emv import render_svg
from products.payments.errors import Forbidden
from products.payments.recon_api import add_recon_routes
from products.payments.service import (
    MerchantView,
    OperatorDraft,
    OperatorStatement,
    OperatorView,
    PaymentView,
    QrQuote,
    RefundView,
    ShiftStatement,
    ShiftView,
)
from products.payments.settings import MerchantConfig

payments = module_runtime("payments")


async def bank_side(request: Request) -> None:
    """Cashier and administration routes are the bank's (its console), never a partner's."""
    if getattr(request.state, STATE_PARTNER, None) is not None:
        raise Forbidden("this payments route is for the bank's cashier console, not partners")


class SignIn(BaseModel):
    employee_no: str = Field(min_length=1, max_length=32)
    pin: str = Field(min_length=1, max_length=32)
    terminal_id: str = Field(min_length=1, max_length=32)


class NewPayment(BaseModel):
    request_id: str = Field(min_length=1, max_length=64, description="caller's id; a retry returns the same payment")
    amount_minor: int = Field(gt=0, description="minor units (fen)")
    bill_no: str = Field(min_length=1, max_length=25)


class RefundRequest(BaseModel):
    request_id: str = Field(min_length=1, max_length=64)
    amount_minor: int = Field(gt=0)
    supervisor_employee_no: str = Field(min_length=1, max_length=32)
    supervisor_pin: str = Field(min_length=1, max_length=32)
    reason: str = Field(default="", max_length=200)


class ScannedQr(BaseModel):
    payload: str = Field(min_length=8, max_length=512)


class PayQr(BaseModel):
    payload: str = Field(min_length=8, max_length=512)
    payer_account: str | None = Field(default=None, min_length=1, max_length=64,
                                      description="the payer's ledger account code (funding_source 'account')")
    request_id: str = Field(min_length=1, max_length=64)
    funding_source: str = Field(default="account", pattern=r"^[a-z][a-z0-9_]{0,31}$",
                                description="'account' or a funding source the bank offers, e.g. 'credit_pay'")


class NewCode(BaseModel):
    request_id: str = Field(min_length=1, max_length=64, description="a retry replaces the code with a new one")
    funding_source: str = Field(default="account", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    payer_account: str | None = Field(default=None, min_length=1, max_length=64)


class ScanCode(BaseModel):
    request_id: str = Field(min_length=1, max_length=64, description="caller's id; a retry returns the same payment")
    code: str = Field(min_length=1, max_length=32, description="the customer's payment code as scanned")
    amount_minor: int = Field(gt=0)
    bill_no: str = Field(min_length=1, max_length=25)


def _partner_id(request: Request) -> str | None:
    context = getattr(request.state, STATE_PARTNER, None)
    return context.partner.partner_id if context is not None else None


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        if format not in ("csv", "json"):
            raise ValidationFailed("format must be csv or json", details=[
                {"field": "format", "code": "invalid", "message": "csv or json"}])
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _export(request: Request, format: str | None, columns: tuple[str, ...], rows: list[dict[str, str]],
            document: dict, filename: str) -> Response:
    from fastapi.responses import JSONResponse

    from products.payments.statements import to_csv

    if _wants_csv(request, format):
        return Response(to_csv(columns, rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
    return JSONResponse(document)


class QrPayment(BaseModel):
    payment_no: str
    status: str
    amount_minor: int
    currency: str
    bill_no: str
    payload: str | None
    expires_at: datetime | None


def router() -> APIRouter:
    api = APIRouter()
    admin = [Depends(bank_side)]

    # --- merchants and operators (the bank) -------------------------------------------------

    @api.get("/merchants", dependencies=admin)
    def list_merchants(runtime: ModuleRuntime = Depends(payments)) -> list[MerchantView]:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).list_merchants()

    @api.put("/merchants/{merchant_id}", dependencies=admin)
    def put_merchant(merchant_id: str, config: MerchantConfig, runtime: ModuleRuntime = Depends(payments)) -> MerchantView:
        if config.merchant_id != merchant_id:
            from core.errors import ValidationFailed

            raise ValidationFailed("merchant_id in the body must match the path")
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).put_merchant(config)

    @api.post("/operators", status_code=201, dependencies=admin)
    def add_operator(draft: OperatorDraft, response: Response, runtime: ModuleRuntime = Depends(payments)) -> OperatorView:
        with runtime.tenant.unit_of_work() as uow:
            view, created = runtime.container.service(uow=uow).add_operator(draft)
        if not created:
            response.status_code = 200
        return view

    # --- the cashier (the bank's console) ---------------------------------------------------

    @api.post("/shifts", status_code=201, dependencies=admin)
    def sign_in(body: SignIn, runtime: ModuleRuntime = Depends(payments)) -> ShiftView:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow)
            check = service.verify_pin(body.employee_no, body.pin)
            shift = service.sign_in(check.verified, body.terminal_id) if check.verified else None
        check.raise_if_failed()  # after the commit: a wrong PIN is counted
        assert shift is not None
        return shift

    @api.post("/shifts/{shift_no}/close", dependencies=admin)
    def sign_out(shift_no: str, runtime: ModuleRuntime = Depends(payments)) -> ShiftStatement:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).sign_out(shift_no)

    @api.get("/shifts/{shift_no}/statement", dependencies=admin)
    def statement(shift_no: str, runtime: ModuleRuntime = Depends(payments)) -> ShiftStatement:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).statement(shift_no)

    @api.get("/operators/{employee_no}/statement", dependencies=admin)
    def operator_statement(employee_no: str, day: date, runtime: ModuleRuntime = Depends(payments)) -> OperatorStatement:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).operator_statement(employee_no, day)

    @api.post("/shifts/{shift_no}/qr", status_code=201, dependencies=admin)
    def create_qr(shift_no: str, body: NewPayment, runtime: ModuleRuntime = Depends(payments)) -> QrPayment:
        with runtime.tenant.unit_of_work() as uow:
            view = runtime.container.service(uow=uow).create_qr(shift_no, body.amount_minor, body.bill_no, body.request_id)
        return QrPayment(payment_no=view.payment_no, status=view.status, amount_minor=view.amount_minor,
                         currency=view.currency, bill_no=view.bill_no, payload=view.payload, expires_at=view.expires_at)

    @api.post("/shifts/{shift_no}/cash", status_code=201, dependencies=admin)
    def record_cash(shift_no: str, body: NewPayment, runtime: ModuleRuntime = Depends(payments)) -> PaymentView:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).record_cash(shift_no, body.amount_minor, body.bill_no, body.request_id)

    @api.get("/payments/{payment_no}", dependencies=admin)
    def get_payment(payment_no: str, runtime: ModuleRuntime = Depends(payments)) -> PaymentView:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).get_payment(payment_no)

    @api.get("/payments/{payment_no}/qr.svg", dependencies=admin)
    def qr_svg(payment_no: str, runtime: ModuleRuntime = Depends(payments)) -> Response:
        with runtime.tenant.unit_of_work() as uow:
            view = runtime.container.service(uow=uow).get_payment(payment_no)
        if view.payload is None:
            from core.errors import NotFound

            raise NotFound(f"payment {payment_no} has no QR code")
        return Response(render_svg(view.payload), media_type="image/svg+xml")

    @api.post("/payments/{payment_no}/cancel", dependencies=admin)
    def cancel(payment_no: str, runtime: ModuleRuntime = Depends(payments)) -> PaymentView:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).cancel(payment_no)

    @api.post("/payments/{payment_no}/refunds", status_code=201, dependencies=admin)
    def refund(payment_no: str, body: RefundRequest, runtime: ModuleRuntime = Depends(payments)) -> RefundView:
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow)
            check = service.verify_pin(body.supervisor_employee_no, body.supervisor_pin)
            result = (service.refund(payment_no, body.amount_minor, check.verified, body.request_id, body.reason)
                      if check.verified else None)
        check.raise_if_failed()
        assert result is not None
        return result

    @api.post("/shifts/{shift_no}/code", status_code=201, dependencies=admin)
    def scan_code(shift_no: str, body: ScanCode, runtime: ModuleRuntime = Depends(payments)) -> PaymentView:
        """The cashier scanned a customer's payment code: paid at once, or a clear error."""
        with runtime.tenant.unit_of_work() as uow:
            view = runtime.container.service(uow=uow).scan_code(shift_no, body.code, body.amount_minor,
                                                                 body.bill_no, body.request_id)
        return view.raise_unless_paid()  # after the commit: a failed payment stays recorded

    # --- day statements and settlement (CSV with ?format=csv or Accept: text/csv) -----------

    @api.get("/terminals/{terminal_id}/statement", dependencies=admin, response_model=None)
    def terminal_statement(request: Request, terminal_id: str, day: date, format: str | None = None,
                           runtime: ModuleRuntime = Depends(payments)) -> Response:
        from products.payments.statements import STATEMENT_COLUMNS, statement_json, statement_rows

        with runtime.tenant.unit_of_work() as uow:
            s = runtime.container.service(uow=uow).terminal_statement(terminal_id, day)
        return _export(request, format, STATEMENT_COLUMNS, statement_rows(s), statement_json(s),
                       f"terminal-{terminal_id}-{day.isoformat()}")

    @api.get("/merchants/{merchant_id}/statement", dependencies=admin, response_model=None)
    def merchant_statement(request: Request, merchant_id: str, day: date, format: str | None = None,
                           runtime: ModuleRuntime = Depends(payments)) -> Response:
        from products.payments.statements import STATEMENT_COLUMNS, statement_json, statement_rows

        with runtime.tenant.unit_of_work() as uow:
            s = runtime.container.service(uow=uow).merchant_statement(merchant_id, day)
        return _export(request, format, STATEMENT_COLUMNS, statement_rows(s), statement_json(s),
                       f"merchant-{merchant_id}-{day.isoformat()}")

    @api.get("/merchants/{merchant_id}/settlement", dependencies=admin, response_model=None)
    def settlement(request: Request, merchant_id: str, day: date, format: str | None = None,
                   runtime: ModuleRuntime = Depends(payments)) -> Response:
        from products.payments.settlement import SETTLEMENT_COLUMNS, settlement_json, settlement_row

        with runtime.tenant.unit_of_work() as uow:
            s = runtime.container.service(uow=uow).settlement(merchant_id, day)
        return _export(request, format, SETTLEMENT_COLUMNS, [settlement_row(s)], settlement_json(s),
                       f"settlement-{merchant_id}-{day.isoformat()}")

    @api.post("/merchants/{merchant_id}/settlement", dependencies=admin, response_model=None)
    def settle(merchant_id: str, day: date, response: Response, runtime: ModuleRuntime = Depends(payments)) -> dict:
        """Post one merchant's settlement of an ended day now (the daily job does every merchant)."""
        from products.payments.settlement import settlement_json

        with runtime.tenant.unit_of_work() as uow:
            view, created = runtime.container.service(uow=uow).settle(merchant_id, day)
        response.status_code = 201 if created else 200
        return settlement_json(view)

    # --- the payer's wallet (partners) ------------------------------------------------------

    @api.post("/qr/resolve")
    def resolve(body: ScannedQr, runtime: ModuleRuntime = Depends(payments)) -> QrQuote:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).resolve(body.payload)

    @api.post("/codes", status_code=201)
    def issue_code(request: Request, body: NewCode, response: Response, runtime: ModuleRuntime = Depends(payments),
                   user: EndUser | None = Depends(require_consent("payments"))) -> IssuedCode:
        """A one-time payment code for the consenting user (shown once; only its hash is kept)."""
        if user is None or user.customer_no is None:
            raise ValidationFailed("the user is not linked to a bank customer", details=[
                {"field": "SceneOS-User-Id", "code": "user_not_linked", "message": "link the user first"}])
        response.headers["Cache-Control"] = "no-store"  # a bearer credential: no cache keeps it
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).issue_code(
                user.customer_no, body.request_id, funding_source=body.funding_source,
                payer_account=body.payer_account,
                partner_id=_partner_id(request))

    @api.post("/qr/pay")
    def pay(body: PayQr, runtime: ModuleRuntime = Depends(payments),
            user: EndUser | None = Depends(require_consent("payments"))) -> QrQuote:
        # A partner acts for one consenting user, whose customer must own the paying account.
        if user is not None and user.customer_no is None:
            raise ValidationFailed("the user is not linked to a bank customer", details=[
                {"field": "SceneOS-User-Id", "code": "user_not_linked", "message": "link the user first"}])
        with runtime.tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow)
            view = service.pay(body.payload, body.payer_account, body.request_id,
                               payer_customer_no=user.customer_no if user is not None else None,
                               funding_source=body.funding_source)
            quote = service.resolve(body.payload) if view.status == "succeeded" else None
        view.raise_unless_paid()  # after the commit: an expired or failed payment stays so
        assert quote is not None
        return quote

    add_recon_routes(api, admin)  # reconciliation with the channel (recon_api.py)
    return api
