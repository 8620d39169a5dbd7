"""The HTTP application: health, OpenAPI, problem+json errors, and each module's routes.

Module routes are mounted once at ``/v1/tenants/{tenant_id}/{module}``; a request for a tenant that
does not enable the module is a 404 that says nothing about other tenants. The super entry puts
partner authentication in front of these routes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import __version__
from core.errors import NotFound, SceneOSError
from core.logging import bind_request_context, get_logger, request_context
from core.tenancy import ModuleRuntime, Tenant

if TYPE_CHECKING:
    from core.app import SceneOS

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
log = get_logger("sceneos.http")


def problem(status: int, code: str, title: str, request: Request, *, detail: str = "", errors: list | None = None) -> JSONResponse:
    """An RFC 9457 problem document with a stable ``code`` and the request id."""
    body: dict[str, Any] = {
        "type": f"https://sceneos.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail or title,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def get_app(request: Request) -> SceneOS:
    return request.app.state.sceneos


async def get_tenant(tenant_id: str, request: Request) -> Tenant:
    # async on purpose: it runs in the request's own context, so the tenant id bound here reaches
    # the log lines of the (threadpool) endpoint, which runs in a copy of that context.
    tenant = get_app(request).tenant(tenant_id)
    bind_request_context(tenant_id=tenant.id)
    return tenant


def module_runtime(name: str) -> Callable[..., ModuleRuntime]:
    """FastAPI dependency giving the module as enabled for the path's tenant (404 otherwise)."""

    def dependency(tenant: Tenant = Depends(get_tenant)) -> ModuleRuntime:
        return tenant.module(name)

    dependency.__name__ = f"module_{name}"
    return dependency


def create_http_app(app: SceneOS) -> FastAPI:
    http = FastAPI(
        title="SceneOS",
        version=__version__,
        description="A bank's fintech operating system: products opened to partner platforms.",
    )
    http.state.sceneos = app

    @http.middleware("http")
    async def _request_id(request: Request, call_next: Callable[..., Any]) -> Any:
        request_id = request.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())
        if len(request_id) > 128 or not request_id.isprintable():
            request_id = str(uuid.uuid4())
        request.state.request_id = request_id
        started = time.perf_counter()
        with request_context(request_id=request_id):
            response = await call_next(request)
            log.info("request", method=request.method, path=request.url.path, status=response.status_code,
                     duration_ms=round((time.perf_counter() - started) * 1000, 1))
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @http.exception_handler(SceneOSError)
    async def _domain_error(request: Request, exc: SceneOSError) -> JSONResponse:
        return problem(exc.http_status, exc.code, exc.message, request, errors=exc.details or None)

    @http.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(part) for part in err["loc"] if part not in ("body",)),
                "code": err["type"],
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        return problem(422, "validation_failed", "the request is not valid", request, errors=errors)

    @http.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), request)

    @http.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log (masked), never to the caller.
        log.exception("unhandled error", path=request.url.path)
        return problem(500, "internal_error", "an internal error occurred; quote the request id", request)

    @http.get("/health", tags=["operations"])
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "schema_current": app.schema_is_current(),
            "tenants": sorted(app.tenants),
        }

    for name, (spec, _provider) in sorted(app.modules.items()):
        if spec.router is None:
            continue
        router: APIRouter = spec.router()
        http.include_router(
            router,
            prefix=f"/v1/tenants/{{tenant_id}}/{name}",
            tags=[name],
            dependencies=[Depends(module_runtime(name))],
        )

    @http.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, exc.code, exc.message, request)

    return http
