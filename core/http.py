"""The HTTP application: health, OpenAPI, problem+json errors, request ids, and each module's routes.

A module declares its routes once (``ModuleSpec.router``); they are mounted for the bank's own
staff at ``/v1/tenants/{tenant_id}/{module}``, behind the admin API key
(``entry.admin_api_keys``, header ``X-SceneOS-Admin-Key``). Plugins extend the application through
``sceneos_http_app`` (see :func:`core.hookspecs.sceneos_http_app`): the super entry (``infra.entry``) mounts the same
routes a second time for partners at ``/v1/{module}``, behind signed requests. Route code reaches
its tenant and module the same way under both mounts, through :func:`module_runtime`.

A module's browser pages (``ModuleSpec.web``) are mounted at ``/web/{tenant_id}/{module}``, outside
``/v1`` and without the admin key: they authenticate their own users.

A request for a tenant that does not enable the module is a 404 that says nothing about other
tenants.
"""

from __future__ import annotations

import base64
import hmac
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import __version__
from core.db import is_sqlite
from core.errors import NotFound, SceneOSError
from core.logging import bind_request_context, get_logger, request_context
from core.tenancy import ModuleRuntime, Tenant

if TYPE_CHECKING:
    from core.app import SceneOS

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
ADMIN_KEY_HEADER = "X-SceneOS-Admin-Key"
ADMIN_SECURITY_SCHEME = "AdminApiKey"
# Keys of ``request.state`` (``scope["state"]``) shared by the kernel and the entry.
STATE_TENANT = "sceneos_tenant"
STATE_LOG_FIELDS = "sceneos_log_fields"
log = get_logger("sceneos.http")
# --- problem+json -------------------------------------------------------------------------------


def problem_document(
    status: int,
    code: str,
    title: str,
    *,
    request_id: str | None,
    instance: str,
    detail: str = "",
    errors: list | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem document with a stable ``code`` and the request id."""
    body: dict[str, Any] = {
        "type": f"https://sceneos.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail or title,
        "instance": instance,
        "request_id": request_id,
    }
    if errors:
        body["errors"] = errors
    return body


def problem(
    status: int,
    code: str,
    title: str,
    request: Request,
    *,
    detail: str = "",
    errors: list | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    body = problem_document(status, code, title, request_id=request_id, instance=request.url.path, detail=detail,
                            errors=errors)
    response = JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details, with a stable machine-readable code and the request id.",
    "type": "object",
    "required": ["type", "title", "status", "code", "detail", "instance", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "stable error code, e.g. validation_failed"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "code", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def problem_response_doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "headers": {REQUEST_ID_HEADER: {"schema": {"type": "string"}, "description": "the request id"}},
    }


# --- request id and access log --------------------------------------------------------------------


def new_request_id() -> str:
    # Base32, not a UUID: log masking hides any run of 11+ digits, which a UUID's digits often form.
    return "req_" + base64.b32encode(os.urandom(15)).decode("ascii").lower()


def _valid_request_id(value: str | None) -> str:
    if value and len(value) <= 128 and value.isprintable() and value.isascii():
        return value
    return new_request_id()


class RequestContextMiddleware:
    """Outermost: a request id for every request (the caller's ``X-Request-ID`` or a new one),
    echoed on every response, bound to every log line, and one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = _valid_request_id(given)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        fields: dict[str, Any] = {}
        state[STATE_LOG_FIELDS] = fields
        status = 500
        header = (REQUEST_ID_HEADER.lower().encode("latin-1"), request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        started = time.perf_counter()
        with request_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                log.info(
                    "request",
                    method=scope["method"],
                    route=route_template(scope),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    **{k: v for k, v in fields.items() if k != "route"},
                )


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/{module}/customers/{customer_no}``), never the raw
    path with its ids. Routers included under a prefix record the full template through
    :func:`note_route` (FastAPI's ``scope["route"]`` holds the route as declared, without prefix)."""
    fields = scope.get("state", {}).get(STATE_LOG_FIELDS) or {}
    return fields.get("route") or getattr(scope.get("route"), "path", None) or "(unmatched)"


def note_route(request: Request, prefix: str) -> None:
    fields = getattr(request.state, STATE_LOG_FIELDS, None)
    route = request.scope.get("route")
    if fields is not None and route is not None:
        fields["route"] = prefix + getattr(route, "path", "")


# --- tenants, modules and the admin key -----------------------------------------------------------


def get_app(request: Request) -> SceneOS:
    return request.app.state.sceneos


admin_key_header = APIKeyHeader(
    name=ADMIN_KEY_HEADER,
    scheme_name=ADMIN_SECURITY_SCHEME,
    description="An admin API key of the bank (``entry.admin_api_keys``).",
    auto_error=False,
)


class AdminKeyRequired(SceneOSError):
    code = "admin_key_required"
    http_status = 401


def admin_is_open(app: SceneOS) -> bool:
    """No admin key configured: open on SQLite (development), closed on a server database."""
    return not app.settings.entry.admin_api_keys and is_sqlite(app.engine)


async def require_admin(request: Request, key: str | None = Security(admin_key_header)) -> None:
    """The bank's own routes need one of the configured admin API keys."""
    app = get_app(request)
    if admin_is_open(app):
        return
    configured = app.settings.entry.admin_api_keys
    if key and any(hmac.compare_digest(key.encode(), secret.get_secret_value().encode()) for secret in configured):
        return
    raise AdminKeyRequired(f"a valid {ADMIN_KEY_HEADER} header is required")


def set_request_tenant(request: Request, tenant: Tenant, **log_fields: Any) -> None:
    """Make ``tenant`` the request's tenant for :func:`module_runtime` and the logs."""
    request.state.sceneos_tenant = tenant
    fields = getattr(request.state, STATE_LOG_FIELDS, None)
    if fields is not None:
        fields.update({"tenant_id": tenant.id, **log_fields})
    # Bound here, in the request's own context, the ids reach the log lines of the (threadpool)
    # endpoint, which runs in a copy of this context.
    bind_request_context(tenant_id=tenant.id, **log_fields)


async def get_tenant(tenant_id: str, request: Request) -> Tenant:
    """The path's tenant (admin routes)."""
    tenant = get_app(request).tenant(tenant_id)
    set_request_tenant(request, tenant)
    return tenant


def current_tenant(request: Request) -> Tenant:
    tenant = getattr(request.state, STATE_TENANT, None)
    if tenant is None:  # a route mounted without a tenant-resolving guard: a wiring bug
        raise NotFound("Not Found")
    return tenant


def module_runtime(name: str) -> Callable[..., ModuleRuntime]:
    """FastAPI dependency giving the module as enabled for the request's tenant (404 otherwise).

    The tenant comes from the mount's guard: the path under ``/v1/tenants/{tenant_id}``, the
    partner's credentials under the super entry's ``/v1``.
    """

    async def dependency(request: Request) -> ModuleRuntime:
        return current_tenant(request).module(name)

    dependency.__name__ = f"module_{name}"
    return dependency


def admin_module_guard(name: str, prefix: str | None = None) -> Callable[..., Any]:
    """Router dependency of a bank-side mount: the path's tenant must enable module ``name``."""

    async def guard(request: Request, tenant: Tenant = Depends(get_tenant)) -> None:
        note_route(request, prefix or f"/v1/tenants/{{tenant_id}}/{name}")
        tenant.module(name)

    guard.__name__ = f"admin_module_{name}"
    return guard


# --- assembly -------------------------------------------------------------------------------------


def _http_hook(app: SceneOS) -> Any:
    return app.hooks.pm.hook.sceneos_http_app


def _openapi_with_problems(http: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, with every error answered as problem+json and the Problem schema."""

    def openapi() -> dict[str, Any]:
        if http.openapi_schema is not None:
            return http.openapi_schema
        schema = get_openapi(title=http.title, version=http.version, description=http.description,
                             routes=http.routes, openapi_version=http.openapi_version)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if operation.get("parameters") or operation.get("requestBody"):
                    responses["422"] = problem_response_doc("The request is not valid (field-level errors)")
                if operation.get("requestBody"):
                    responses.setdefault("400", problem_response_doc("The body is not well-formed JSON"))
                if "{" in path:
                    responses.setdefault("404", problem_response_doc("Not found"))
                responses.setdefault("500", problem_response_doc("Internal error; quote the request id"))
                if any(ADMIN_SECURITY_SCHEME in requirement for requirement in operation.get("security", [])):
                    responses.setdefault("401", problem_response_doc("No valid admin API key"))
        for extend in getattr(http.state, "openapi_extensions", []):
            extend(schema)
        http.openapi_schema = schema
        return schema

    return openapi


def create_http_app(app: SceneOS) -> FastAPI:
    http = FastAPI(
        title="SceneOS",
        version=__version__,
        description="A bank's fintech operating system: products opened to partner platforms.",
    )
    http.state.sceneos = app
    http.state.openapi_extensions = []

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
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), request, headers=exc.headers)

    @http.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log (masked), never to the caller.
        log.exception("unhandled error", path=request.url.path)
        return problem(500, "internal_error", "an internal error occurred; quote the request id", request)

    @http.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, exc.code, exc.message, request)

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
            dependencies=[Depends(require_admin), Depends(admin_module_guard(name))],
        )

    # Browser pages of modules: no admin key (a bank's key never reaches a browser); the module's
    # pages authenticate their own users. Left out of the OpenAPI document, which is the API's.
    for name, (spec, _provider) in sorted(app.modules.items()):
        if spec.web is None:
            continue
        http.include_router(
            spec.web(),
            prefix=f"/web/{{tenant_id}}/{name}",
            include_in_schema=False,
            dependencies=[Depends(admin_module_guard(name, f"/web/{{tenant_id}}/{name}"))],
        )

    _http_hook(app)(app=app, http=http)
    http.openapi = _openapi_with_problems(http)  # type: ignore[method-assign]
    # Added last, so outermost: every response, even the entry's refusals, carries the request id.
    http.add_middleware(RequestContextMiddleware)
    return http
