"""HTTP routes of payouts, the bank's only (``/v1/tenants/{tenant_id}/payouts``): make a batch's
pain.001, fetch it again as ``application/xml``, post the payment system's pain.002 (or a pacs.004
payment return) as the raw request body, list payouts. Errors are problem+json with the service's codes; a partner's call is
``403 bank_only``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from core.errors import SceneOSError, ValidationFailed
from core.http import module_runtime
from core.tenancy import ModuleRuntime
from infra.entry.gateway import STATE_PARTNER
from infra.payouts.iso20022 import MAX_REPORT_BYTES
from infra.payouts.service import BatchView, Payouts, PayoutView, ReturnOutcome, StatusOutcome

payouts_module = module_runtime("payouts")
T = TypeVar("T")


class BankOnly(SceneOSError):
    code = "bank_only"
    http_status = 403


async def bank_side(request: Request) -> None:
    """Payouts move the bank's own money: never a partner's call."""
    if getattr(request.state, STATE_PARTNER, None) is not None:
        raise BankOnly("payouts are the bank's own operations, not a partner's")


class NewBatch(BaseModel):
    business_date: date = Field(description="the requested execution date of the transfers")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


class BatchSummary(BaseModel):
    batch_no: str
    business_date: date
    currency: str
    count: int
    total_minor: int
    entry_id: str


def _summary(batch: BatchView) -> BatchSummary:
    return BatchSummary(batch_no=batch.batch_no, business_date=batch.business_date, currency=batch.currency,
                        count=batch.count, total_minor=batch.total_minor, entry_id=batch.entry_id)


async def _apply_file(request: Request, runtime: ModuleRuntime, apply: Callable[[Payouts, bytes], T]) -> T:
    """Apply a file of the payment system (the raw request body) in one unit of work."""
    if int(request.headers.get("content-length") or 0) > MAX_REPORT_BYTES:
        raise ValidationFailed(f"the file is larger than {MAX_REPORT_BYTES} bytes")
    content = await request.body()

    def run() -> T:
        with runtime.tenant.unit_of_work() as uow:
            return apply(Payouts.of(uow), content)

    return await run_in_threadpool(run)


def router() -> APIRouter:
    api = APIRouter()
    bank = [Depends(bank_side)]

    @api.post("/batches", dependencies=bank, status_code=201, response_model=BatchSummary,
              responses={204: {"description": "no pending payout in the currency: no file"}})
    def make_batch(body: NewBatch, runtime: ModuleRuntime = Depends(payouts_module)) -> BatchSummary | Response:
        with runtime.tenant.unit_of_work() as uow:
            made = Payouts.of(uow).batch(body.business_date, body.currency)
        return Response(status_code=204) if made is None else _summary(made)

    @api.get("/batches/{batch_no}", dependencies=bank)
    def get_batch(batch_no: str, runtime: ModuleRuntime = Depends(payouts_module)) -> BatchSummary:
        with runtime.tenant.unit_of_work() as uow:
            return _summary(Payouts.of(uow).get_batch(batch_no))

    @api.get("/batches/{batch_no}/pain001", dependencies=bank, response_class=Response,
             responses={200: {"content": {"application/xml": {}}}})
    def get_file(batch_no: str, runtime: ModuleRuntime = Depends(payouts_module)) -> Response:
        with runtime.tenant.unit_of_work() as uow:
            document = Payouts.of(uow).get_batch(batch_no).document
        return Response(document.encode("utf-8"), media_type="application/xml")

    @api.post("/status-reports", dependencies=bank)
    async def status_report(request: Request, runtime: ModuleRuntime = Depends(payouts_module)) -> StatusOutcome:
        """A pain.002 status report, as the raw request body."""
        return await _apply_file(request, runtime, Payouts.apply_status_report)

    @api.post("/payment-returns", dependencies=bank)
    async def payment_return(request: Request, runtime: ModuleRuntime = Depends(payouts_module)) -> ReturnOutcome:
        """A pacs.004 payment return, as the raw request body."""
        return await _apply_file(request, runtime, Payouts.apply_payment_return)

    @api.get("/payouts", dependencies=bank)
    def list_payouts(status: Literal["pending", "sent", "accepted", "rejected", "returned"] | None = None,
                     limit: int = Query(default=100, ge=1, le=1000),
                     runtime: ModuleRuntime = Depends(payouts_module)) -> list[PayoutView]:
        with runtime.tenant.unit_of_work() as uow:
            return Payouts.of(uow).payouts(status, limit=limit)

    return api
