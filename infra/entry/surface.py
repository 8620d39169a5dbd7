"""The super entry's part of the HTTP application (the ``sceneos_http_app`` hook).

URL scheme:

* ``/v1/{module}/...`` — every module's routes for partners, signed; the tenant comes from the
  partner's key (declared once by the module, also mounted for the bank at
  ``/v1/tenants/{tenant_id}/{module}/...`` by the kernel);
* ``/v1/me``, ``/v1/users/...`` — the entry's own partner routes (end users, consents);
* ``/v1/admin/tenants/{tenant_id}/...`` — the bank's admin API (partners, keys, webhooks);
* ``/metrics`` (Prometheus), ``/health``, ``/docs``, ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.http import (
    STATE_LOG_FIELDS,
    admin_module_guard,
    problem_response_doc,
    require_admin,
    route_template,
)
from core.logging import get_logger
from core.sdk.signing import IDEMPOTENCY_HEADER, SCHEME
from infra.entry.api import admin_router, partner_router
from infra.entry.gateway import EntryGateway, is_partner_path, partner_module_guard, partner_tenant_guard
from infra.entry.metrics import EntryMetrics
from infra.entry.runtime import IDEMPOTENT_METHODS, KEY_REQUIRED_METHODS, MODULE_NAME, entry_of

if TYPE_CHECKING:
    from core.app import SceneOS

log = get_logger("sceneos.entry")
PARTNER_SECURITY_SCHEME = "PartnerSignature"
# Path segments the entry and the bank use under /v1: a module with one of these names gets no partner mount.
RESERVED_SEGMENTS = frozenset({"tenants", "admin", "users", "me"})


class MetricsMiddleware:
    """Counts and times every request by route template (never by raw path)."""

    def __init__(self, app: ASGIApp, metrics: EntryMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(scope)
            fields = scope.get("state", {}).get(STATE_LOG_FIELDS) or {}
            self.metrics.requests.labels(scope["method"], route, str(status), fields.get("tenant_id", ""),
                                         fields.get("partner_id", "")).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def _openapi_extension(schema: dict[str, Any]) -> None:
    """Security schemes, the signature's and idempotency's errors, and the Idempotency-Key header."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[PARTNER_SECURITY_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": (
            f"`{SCHEME} KeyId=<key id>, Timestamp=<unix seconds>, Nonce=<16-64 chars>, Signature=<hex>`: "
            "HMAC-SHA256 of the canonical request (see docs/super-entry.md)."
        ),
    }
    for path, operations in schema.get("paths", {}).items():
        if not is_partner_path(path):
            continue
        for method, operation in operations.items():
            operation["security"] = [{PARTNER_SECURITY_SCHEME: []}]
            responses = operation.setdefault("responses", {})
            responses["401"] = problem_response_doc("Missing, malformed, expired, replayed or wrong signature")
            responses["403"] = problem_response_doc("Outside the partner's scopes, or a needed consent is missing")
            responses["404"] = problem_response_doc("Not found (or not enabled for the partner's bank)")
            responses["413"] = problem_response_doc("Body too large")
            responses["429"] = problem_response_doc("Rate limit exceeded; see Retry-After")
            responses["429"]["headers"]["Retry-After"] = {"schema": {"type": "integer"}}
            responses["400"] = problem_response_doc("Bad request (e.g. a missing or malformed Idempotency-Key)")
            verb = method.upper()
            if verb in IDEMPOTENT_METHODS:
                required = verb in KEY_REQUIRED_METHODS
                operation.setdefault("parameters", []).append({
                    "name": IDEMPOTENCY_HEADER,
                    "in": "header",
                    "required": required,
                    "description": "a new random key per operation, the same on every retry of it (1-255 printable ASCII)",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                })
                responses["409"] = problem_response_doc("A request with this idempotency key is still running")
                responses["422"] = problem_response_doc(
                    "The request is not valid, or its idempotency key was used with another request")


async def _webhook_loop(app: SceneOS, interval: float) -> None:
    from infra.entry.webhooks import WebhookDispatcher

    dispatcher = WebhookDispatcher(app, entry_of(app))
    try:
        while True:
            try:
                await anyio.to_thread.run_sync(dispatcher.run_once)
            except Exception:  # a bad sweep must not stop the next ones
                log.exception("webhook sweep failed")
            await asyncio.sleep(interval)
    finally:
        dispatcher.close()


def extend_http(app: SceneOS, http: FastAPI) -> None:
    entry = entry_of(app)
    entry.warn_about_development_defaults()
    for name, (spec, _provider) in sorted(app.modules.items()):
        if spec.router is None or name == MODULE_NAME:
            continue
        if name in RESERVED_SEGMENTS:
            log.warning("module name is reserved under /v1: no partner routes", module=name)
            continue
        http.include_router(spec.router(), prefix=f"/v1/{name}", tags=[name],
                            dependencies=[Depends(partner_module_guard(name))])
    http.include_router(partner_router(), prefix="/v1", dependencies=[Depends(partner_tenant_guard)])
    admin_prefix = "/v1/admin/tenants/{tenant_id}"
    http.include_router(admin_router(), prefix=admin_prefix,
                        dependencies=[Depends(require_admin), Depends(admin_module_guard(MODULE_NAME, admin_prefix))])

    @http.get("/metrics", tags=["operations"], response_class=PlainTextResponse,
              responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> Response:
        """Prometheus metrics: requests, latencies, refusals, idempotent replays, webhook deliveries."""
        return Response(entry.metrics.render(), media_type=entry.metrics.content_type)

    http.state.openapi_extensions.append(_openapi_extension)
    http.add_middleware(EntryGateway, entry=entry)
    http.add_middleware(MetricsMiddleware, metrics=entry.metrics)

    interval = entry.settings.webhook_poll_seconds
    if interval > 0:
        inner = http.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(asgi: Any) -> AsyncIterator[Any]:
            task = asyncio.create_task(_webhook_loop(app, interval))
            try:
                async with inner(asgi) as state:
                    yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        http.router.lifespan_context = lifespan
