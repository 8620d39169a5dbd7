"""HTTP routes of payments reconciliation, added to the module's router (bank side only).

``POST /recon/files?date=&format=&file_name=&actor=`` takes the statement file as the raw request
body (``text/csv`` or ``application/xml``); the other routes list runs, a run's exceptions and
audit, and resolve one exception. Errors are problem+json with the service's stable codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from core.errors import ValidationFailed
from core.http import module_runtime
from core.tenancy import ModuleRuntime
from products.payments.reconciliation import (
    MAX_FILE_BYTES,
    ReconAuditView,
    ReconciliationService,
    ReconExceptionView,
    ReconRunView,
)

payments = module_runtime("payments")


class Resolution(BaseModel):
    action: Literal["accept", "write_off", "fixed"]
    actor: str = Field(min_length=1, max_length=64, description="the named user who resolves it")
    note: str = Field(min_length=1, max_length=500)
    later_run_no: str | None = Field(default=None, max_length=40, description="for 'fixed': the later file's run")


def _service(runtime: ModuleRuntime, uow: Any) -> ReconciliationService:
    return ReconciliationService(uow, runtime.settings)  # type: ignore[arg-type]


def add_recon_routes(api: APIRouter, admin: Sequence[Any]) -> None:
    """Add the reconciliation routes to the payments router, behind the bank-side dependency."""

    @api.post("/recon/files", status_code=201, dependencies=list(admin))
    async def upload(request: Request, response: Response,
                     day: date = Query(alias="date", description="business date the file covers"),
                     file_format: Literal["csv", "camt053"] = Query(alias="format"),
                     file_name: str = Query(min_length=1, max_length=200),
                     actor: str = Query(min_length=1, max_length=64, description="who uploads it"),
                     runtime: ModuleRuntime = Depends(payments)) -> ReconRunView:
        declared = int(request.headers.get("content-length") or 0)
        if declared > MAX_FILE_BYTES:
            raise ValidationFailed(f"the file is larger than {MAX_FILE_BYTES} bytes")
        content = await request.body()

        def receive() -> tuple[ReconRunView, bool]:
            with runtime.tenant.unit_of_work() as uow:
                return _service(runtime, uow).receive(day, content, file_format, file_name=file_name, actor=actor)

        run, created = await run_in_threadpool(receive)
        if not created:
            response.status_code = 200
        return run

    @api.get("/recon/runs", dependencies=list(admin))
    def list_runs(day: date | None = Query(default=None, alias="date"), limit: int = Query(default=50, ge=1, le=500),
                  runtime: ModuleRuntime = Depends(payments)) -> list[ReconRunView]:
        with runtime.tenant.unit_of_work() as uow:
            return _service(runtime, uow).list_runs(day, limit=limit)

    @api.get("/recon/runs/{run_no}", dependencies=list(admin))
    def get_run(run_no: str, runtime: ModuleRuntime = Depends(payments)) -> ReconRunView:
        with runtime.tenant.unit_of_work() as uow:
            return _service(runtime, uow).get_run(run_no)

    @api.get("/recon/runs/{run_no}/exceptions", dependencies=list(admin))
    def exceptions(run_no: str, open_only: bool = False, kind: str | None = None,
                   limit: int = Query(default=200, ge=1, le=1000), offset: int = Query(default=0, ge=0),
                   runtime: ModuleRuntime = Depends(payments)) -> list[ReconExceptionView]:
        with runtime.tenant.unit_of_work() as uow:
            return _service(runtime, uow).exceptions(run_no, open_only=open_only, kind=kind, limit=limit,
                                                     offset=offset)

    @api.get("/recon/runs/{run_no}/audit", dependencies=list(admin))
    def audit(run_no: str, runtime: ModuleRuntime = Depends(payments)) -> list[ReconAuditView]:
        with runtime.tenant.unit_of_work() as uow:
            return _service(runtime, uow).audit(run_no)

    @api.post("/recon/exceptions/{exception_no}/resolve", dependencies=list(admin))
    def resolve(exception_no: str, body: Resolution, runtime: ModuleRuntime = Depends(payments)) -> ReconExceptionView:
        with runtime.tenant.unit_of_work() as uow:
            return _service(runtime, uow).resolve(exception_no, body.action, body.actor, body.note,
                                                  later_run_no=body.later_run_no)
