"""The partner surface's gatekeeper: an ASGI middleware in front of every ``/v1/...`` route that is
not the bank's own (``/v1/tenants/...``, ``/v1/admin/...``), and the route guards behind it.

Order of checks, so that a caller learns nothing it should not:

1. signature (401: missing, malformed, expired, wrong, replayed) -> partner -> tenant;
2. rate limit (429 with ``Retry-After``);
3. idempotency key (400 missing, 409 in progress, 422 reused; a stored answer is replayed);
4. route guard: the module must be enabled for the partner's tenant (404, same answer as an
   unknown route) and within the partner's scopes (403);
5. the route itself, whose tenant-bound units of work cannot reach another tenant's rows (404).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import NotFound
from core.http import PROBLEM_JSON, STATE_LOG_FIELDS, note_route, problem_document, set_request_tenant
from core.logging import get_logger, mask_text, request_context
from core.sdk.signing import END_USER_HEADER, IDEMPOTENT_REPLAYED_HEADER
from infra.entry.errors import AuthenticationRequired, BodyTooLarge, EntryError, RateLimited, ScopeDenied
from infra.entry.idempotency import StoredResponse
from infra.entry.runtime import IncomingRequest, PartnerContext

if TYPE_CHECKING:
    from infra.entry.runtime import EntryRuntime

STATE_PARTNER = "sceneos_partner"
BANK_PREFIXES = ("/v1/tenants/", "/v1/admin/")
log = get_logger("sceneos.entry.gateway")


def is_partner_path(path: str) -> bool:
    return path.startswith("/v1/") and not path.startswith(BANK_PREFIXES)


def _problem(scope: Scope, status: int, code: str, message: str, *, errors: list | None = None,
             headers: dict[str, str] | None = None) -> Response:
    state = scope.get("state", {})
    body = problem_document(status, code, message, request_id=state.get("request_id"), instance=scope["path"],
                            errors=errors)
    return Response(json.dumps(body).encode("utf-8"), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _refusal(scope: Scope, exc: EntryError, headers: dict[str, str] | None = None) -> Response:
    return _problem(scope, exc.http_status, exc.code, exc.message, errors=exc.details or None, headers=headers)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (the signature covers it), or None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *encoded]}
        await send(message)

    return sending


class EntryGateway:
    """Pure ASGI middleware (no per-request task), so it costs little on the hot path."""

    def __init__(self, app: ASGIApp, entry: EntryRuntime) -> None:
        self.app = app
        self.entry = entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_partner_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            body = await _read_body(receive, self.entry.settings.max_body_bytes)
            if body is None:
                return
            headers = Headers(scope=scope)
            raw_path = scope.get("raw_path")
            incoming = IncomingRequest(
                method=scope["method"],
                raw_path=raw_path.decode("latin-1") if raw_path else scope["path"],
                raw_query=scope.get("query_string", b"").decode("latin-1"),
                body=body,
                authorization=headers.get("authorization"),
                idempotency_key=headers.get("idempotency-key"),
                end_user=headers.get(END_USER_HEADER.lower()),
            )
            admission = await anyio.to_thread.run_sync(self.entry.admit, incoming)
        except EntryError as exc:
            self.entry.metrics.refusals.labels(exc.code).inc()
            await _refusal(scope, exc)(scope, receive, send)
            return
        context = admission.context
        state[STATE_PARTNER] = context
        fields = state.get(STATE_LOG_FIELDS)
        if fields is not None:
            fields.update(tenant_id=context.tenant.id, partner_id=context.partner.partner_id)
        rate_headers = admission.rate.headers()
        if not admission.rate.allowed:
            self.entry.metrics.refusals.labels(RateLimited.code).inc()
            refusal = RateLimited(f"rate limit of {admission.rate.limit} exceeded; retry after the Retry-After seconds")
            await _refusal(scope, refusal, rate_headers)(scope, receive, send)
            return
        if admission.refusal is not None:
            self.entry.metrics.refusals.labels(admission.refusal.code).inc()
            retry = {"Retry-After": "1"} if admission.refusal.http_status == 409 else {}
            await _refusal(scope, admission.refusal, {**rate_headers, **retry})(scope, receive, send)
            return
        if admission.stored is not None:
            self.entry.metrics.idempotent_replays.labels(context.tenant.id, context.partner.partner_id).inc()
            if fields is not None and admission.stored.route:
                fields["route"] = admission.stored.route
            await self._send_stored(send, admission.stored, {**rate_headers, IDEMPOTENT_REPLAYED_HEADER: "true"})
            return
        downstream = _replaying(body, receive)
        with request_context(tenant_id=context.tenant.id, partner_id=context.partner.partner_id):
            if admission.reservation is None:
                await self.app(scope, downstream, _with_headers(send, rate_headers))
                return
            answer = await self._capture(scope, downstream)
            # Recorded before the answer leaves: a partner that retries the moment it has its answer
            # (no SDK, or a replay test) must get the stored answer, never a 409 for work already done.
            try:
                await anyio.to_thread.run_sync(self.entry.idempotency.complete, context.tenant,
                                               admission.reservation, answer)
            except Exception as exc:  # the work is committed; answer anyway, a retry after the lease redoes it
                log.error("idempotency record not stored", error=mask_text(f"{type(exc).__name__}: {exc}"),
                          exc_info=True)
            await self._send_stored(send, answer, rate_headers)

    async def _capture(self, scope: Scope, receive: Receive) -> StoredResponse:
        """Run the route and keep its whole answer (errors included) for the idempotency record."""
        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, keep)
        except Exception as exc:  # stored like any other first answer (Stripe does the same)
            log.error("unhandled error", error=mask_text(f"{type(exc).__name__}: {exc}"), exc_info=True)
            failed = _problem(scope, 500, "internal_error", "an internal error occurred; quote the request id")
            return StoredResponse(500, [("content-type", PROBLEM_JSON)], bytes(failed.body), _route_of(scope))
        return StoredResponse(status, headers, b"".join(chunks), _route_of(scope))

    @staticmethod
    async def _send_stored(send: Send, answer: StoredResponse, extra: dict[str, str]) -> None:
        skip = {"content-length", *(k.lower() for k in extra)}
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers if k.lower() not in skip]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        headers.append((b"content-length", str(len(answer.body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})


def _route_of(scope: Scope) -> str | None:
    fields = scope.get("state", {}).get(STATE_LOG_FIELDS) or {}
    return fields.get("route")


# --- route guards ------------------------------------------------------------------------------------


def partner_context(request: Request) -> PartnerContext:
    """The authenticated partner of this request (FastAPI dependency for partner routes)."""
    context = getattr(request.state, STATE_PARTNER, None)
    if context is None:  # a partner route reached without the gateway: refuse rather than guess
        raise AuthenticationRequired("sign the request")
    return context


def partner_module_guard(module: str) -> Callable[..., Any]:
    """Router dependency of a module's partner mount: tenant enables it (404) and scopes cover it (403)."""

    async def guard(request: Request) -> None:
        context = partner_context(request)
        note_route(request, f"/v1/{module}")
        if not context.tenant.has_module(module):
            raise NotFound("Not Found")  # the same answer as a route that does not exist
        route = request.scope.get("route")
        operation = getattr(route, "name", "")
        if not context.partner.allows(module, request.method, operation):
            raise ScopeDenied(f"the partner's scopes do not cover {module}:{operation}")
        set_request_tenant(request, context.tenant, partner_id=context.partner.partner_id)

    guard.__name__ = f"partner_module_{module}"
    return guard


async def partner_tenant_guard(request: Request) -> None:
    """Router dependency of the entry's own partner routes (end users, consents): any partner."""
    context = partner_context(request)
    note_route(request, "/v1")
    set_request_tenant(request, context.tenant, partner_id=context.partner.partner_id)
