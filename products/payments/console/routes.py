"""The cashier console's pages (``ModuleSpec.web``, mounted at ``/web/{tenant_id}/payments``).

Server-rendered HTML (Jinja2, autoescaped) and one small script (``static/console.js``) that polls
a payment's status. Every page calls the same :class:`PaymentsService` as the API, one unit of work
per request. Forms post back to the server and redirect (post/redirect/get); each form carries a
``request_id`` made when it was rendered, so a double submit or a reload never takes money twice.

Security: the bank's admin key never reaches the browser; the operator's session is a signed,
HttpOnly, SameSite=Strict cookie (``session.py``) checked against the open shift on every request;
every POST needs the session's CSRF token (the sign-in form a double-submit token) and, when the
browser sends one, a same-origin ``Origin``. Errors are rendered as a sentence on the page, never a
trace; a request for a payment of another merchant is "not found".
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from core.db import is_sqlite
from core.errors import NotFound, SceneOSError
from core.http import get_app, module_runtime
from core.logging import get_logger
from core.tenancy import ModuleRuntime
from products.payments.console.amounts import format_amount, parse_amount
from products.payments.console.session import LOGIN_COOKIE, SESSION_COOKIE, ConsoleSession, SessionSigner
from products.payments.emv import render_svg
from products.payments.models import Payment
from products.payments.service import PaymentsService, PaymentView

HERE = Path(__file__).parent
STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
RECENT_PAYMENTS = 20
FINAL = ("succeeded", "failed", "expired", "cancelled")
# Pages allow only their own scripts, styles, images and forms; no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
log = get_logger("sceneos.payments.console")
payments = module_runtime("payments")

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
templates.filters["amount"] = lambda minor, currency: format_amount(int(minor), currency)


class NotSignedIn(SceneOSError):
    code = "console_signed_out"
    http_status = 401


class CsrfRefused(SceneOSError):
    code = "csrf_refused"
    http_status = 403


class ConsoleOff(SceneOSError):
    code = "console_not_configured"
    http_status = 503


@dataclass
class Console:
    """One request to the console: the tenant's module, its signer and the operator's session."""

    request: Request
    runtime: ModuleRuntime
    signer: SessionSigner | None
    session: ConsoleSession | None

    @property
    def tenant(self) -> Any:
        return self.runtime.tenant

    @property
    def base(self) -> str:
        return f"/web/{self.tenant.id}/payments"

    @property
    def currency(self) -> str:
        return str(self.tenant.currency)

    def require_signer(self) -> SessionSigner:
        if self.signer is None:
            raise ConsoleOff("the cashier console is not configured: set payments.console.session_secret")
        return self.signer

    @contextmanager
    def work(self, *, signed_in: bool = True) -> Iterator[PaymentsService]:
        """One unit of work; with ``signed_in``, only while the session's shift is still open."""
        with self.tenant.unit_of_work() as uow:
            service: PaymentsService = self.runtime.container.service(uow=uow)
            if signed_in:
                shift = service.open_shift_of(self.session.employee_no) if self.session else None
                if self.session is None or shift is None or shift.shift_no != self.session.shift_no:
                    raise NotSignedIn("your session has ended; sign in again")
            yield service

    def check_post(self, csrf_token: str) -> None:
        """Every POST: same origin (when the browser says) and the session's CSRF token."""
        origin = self.request.headers.get("origin")
        own = f"{self.request.url.scheme}://{self.request.url.netloc}"
        if origin is not None and origin != own:
            raise CsrfRefused("this form was sent from another site")
        signer = self.require_signer()
        if self.session is None:
            raise NotSignedIn("your session has ended; sign in again")
        if not signer.csrf_ok(self.session, csrf_token):
            raise CsrfRefused("this form has expired or did not come from this console; reload the page")

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        settings = self.runtime.settings.console
        page = templates.get_template(template).render(
            base=self.base, tenant_name=self.tenant.settings.name or self.tenant.id, currency=self.currency,
            session=self.session, poll_ms=settings.poll_interval_ms,
            csrf=self.signer.csrf_token(self.session) if self.signer and self.session else "",
            new_request_id=lambda: "con_" + secrets.token_urlsafe(12), **context)
        return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)

    def redirect(self, path: str) -> RedirectResponse:
        return RedirectResponse(self.base + path, status_code=303, headers={"Cache-Control": "no-store"})

    def cookie_kwargs(self) -> dict[str, Any]:
        secure = self.runtime.settings.console.secure_cookie
        if secure is None:
            secure = self.request.url.scheme == "https"
        return {"path": self.base + "/", "httponly": True, "samesite": "strict", "secure": secure}


def router() -> APIRouter:
    web = APIRouter()
    # A key per tenant; with no configured secret on SQLite (development), a random one per process.
    signers: dict[str, SessionSigner | None] = {}

    def signer_of(request: Request, runtime: ModuleRuntime) -> SessionSigner | None:
        tenant_id = runtime.tenant.id
        if tenant_id not in signers:
            configured = runtime.settings.console.session_secret
            if configured is not None:
                signers[tenant_id] = SessionSigner(configured.get_secret_value().encode(), tenant_id)
            elif is_sqlite(get_app(request).engine):
                log.warning("console.session_secret_unset", tenant_id=tenant_id,
                            consequence="a random key for this process; sessions end when it stops")
                signers[tenant_id] = SessionSigner(secrets.token_bytes(32), tenant_id)
            else:
                log.error("console.session_secret_unset", tenant_id=tenant_id, consequence="console is off")
                signers[tenant_id] = None
        return signers[tenant_id]

    def console(request: Request, runtime: ModuleRuntime = Depends(payments)) -> Console:
        signer = signer_of(request, runtime)
        session = signer.read(request.cookies.get(SESSION_COOKIE), runtime.tenant.clock.now()) if signer else None
        return Console(request, runtime, signer, session)

    def signed_out(c: Console, *, json: bool = False) -> Response:
        if json:
            response: Response = JSONResponse({"code": NotSignedIn.code, "detail": "sign in again"}, status_code=401)
        else:
            response = c.redirect("/")
        response.delete_cookie(SESSION_COOKIE, **{k: v for k, v in c.cookie_kwargs().items() if k == "path"})
        return response

    def failure(c: Console, exc: SceneOSError) -> Response:
        """A refusal the page cannot recover from by itself (signed out, CSRF, switched off)."""
        if isinstance(exc, NotSignedIn):
            return signed_out(c)
        return c.render("message.html", exc.http_status, error=exc.message, code=exc.code)

    # --- signing in -------------------------------------------------------------------------------

    def sign_in_page(c: Console, status: int = 200, *, error: str = "", code: str = "", employee_no: str = "",
                     terminal_id: str = "") -> Response:
        signer = c.require_signer()
        nonce = c.request.cookies.get(LOGIN_COOKIE) or signer.new_login_nonce()
        with c.work(signed_in=False) as service:
            terminals = [(t["terminal_id"], t["label"], m.name) for m in service.list_merchants()
                         for s in m.stores for t in s["terminals"]]
        response = c.render("sign_in.html", status, error=error, code=code, terminals=terminals,
                            employee_no=employee_no, terminal_id=terminal_id or c.request.query_params.get("terminal", ""),
                            login_token=signer.login_token(nonce))
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, **c.cookie_kwargs())
        return response

    @web.get("/", response_class=HTMLResponse)
    def home(c: Console = Depends(console)) -> Response:
        try:
            if c.session is None:
                return sign_in_page(c)
            with c.work() as service:
                statement = service.statement(c.session.shift_no)
                recent = service.session.scalars(
                    select(Payment).where(Payment.shift_no == c.session.shift_no)
                    .order_by(Payment.id.desc()).limit(RECENT_PAYMENTS)).all()
                recent_views = [PaymentView.of(row) for row in recent]
            return c.render("console.html", statement=statement, recent=recent_views)
        except SceneOSError as exc:
            return failure(c, exc)

    @web.post("/sign-in", response_class=HTMLResponse)
    def sign_in(c: Console = Depends(console), employee_no: str = Form(""), pin: str = Form(""),
                terminal_id: str = Form(""), login_token: str = Form("")) -> Response:
        employee_no, terminal_id = employee_no.strip()[:32], terminal_id.strip()[:32]
        try:
            signer = c.require_signer()
            origin = c.request.headers.get("origin")
            if (origin is not None and origin != f"{c.request.url.scheme}://{c.request.url.netloc}") or \
                    not signer.login_ok(c.request.cookies.get(LOGIN_COOKIE), login_token):
                raise CsrfRefused("this sign-in form has expired; it has been reloaded, try again")
            if not employee_no or not pin or not terminal_id:
                return sign_in_page(c, 422, error="enter your employee number, PIN and window",
                                    code="validation_failed", employee_no=employee_no, terminal_id=terminal_id)
            with c.work(signed_in=False) as service:
                check = service.verify_pin(employee_no, pin[:32])
                shift = service.sign_in(check.verified, terminal_id) if check.verified else None
            check.raise_if_failed()  # after the commit: a wrong PIN is counted
            assert shift is not None
        except CsrfRefused as exc:
            return sign_in_page(c, exc.http_status, error=exc.message, code=exc.code)
        except SceneOSError as exc:
            log.info("console.sign_in_refused", code=exc.code, terminal_id=terminal_id)
            return sign_in_page(c, exc.http_status, error=exc.message, code=exc.code, employee_no=employee_no,
                                terminal_id=terminal_id)
        assert check.verified is not None
        _session, cookie = signer.issue(employee_no=shift.employee_no, role=check.verified.role,
                                       merchant_id=shift.merchant_id, shift_no=shift.shift_no,
                                       terminal_id=shift.terminal_id, now=c.tenant.clock.now(),
                                       minutes=c.runtime.settings.console.session_minutes)
        log.info("console.signed_in", shift_no=shift.shift_no, terminal_id=shift.terminal_id)
        response = c.redirect("/")
        response.set_cookie(SESSION_COOKIE, cookie, max_age=c.runtime.settings.console.session_minutes * 60,
                            **c.cookie_kwargs())
        response.delete_cookie(LOGIN_COOKIE, path=c.base + "/")
        return response

    # --- taking payments --------------------------------------------------------------------------

    def take(c: Console, tender: str, amount: str, bill_no: str, request_id: str, csrf_token: str) -> Response:
        try:
            c.check_post(csrf_token)
        except SceneOSError as exc:
            return failure(c, exc)
        assert c.session is not None
        try:
            amount_minor = parse_amount(amount, c.currency)
            with c.work() as service:
                new = service.create_qr if tender == "qr" else service.record_cash
                view = new(c.session.shift_no, amount_minor, bill_no.strip(), request_id)
        except NotSignedIn as exc:
            return failure(c, exc)
        except SceneOSError as exc:
            with c.work() as service:
                statement = service.statement(c.session.shift_no)
            return c.render("console.html", exc.http_status, statement=statement, recent=[], error=exc.message,
                            code=exc.code, form=tender, amount=amount, bill_no=bill_no)
        log.info("console.payment_taken", tender=tender, payment_no=view.payment_no, shift_no=c.session.shift_no)
        return c.redirect(f"/payments/{view.payment_no}")

    @web.post("/qr", response_class=HTMLResponse)
    def create_qr(c: Console = Depends(console), amount: str = Form(""), bill_no: str = Form(""),
                  request_id: str = Form(""), csrf_token: str = Form("")) -> Response:
        return take(c, "qr", amount, bill_no, request_id, csrf_token)

    @web.post("/cash", response_class=HTMLResponse)
    def record_cash(c: Console = Depends(console), amount: str = Form(""), bill_no: str = Form(""),
                    request_id: str = Form(""), csrf_token: str = Form("")) -> Response:
        return take(c, "cash", amount, bill_no, request_id, csrf_token)

    def own_payment(c: Console, service: PaymentsService, payment_no: str) -> PaymentView:
        """A payment of the operator's merchant; any other is "not found" (nothing said about it)."""
        assert c.session is not None
        view = service.get_payment(payment_no[:40])
        if view.merchant_id != c.session.merchant_id:
            raise NotFound(f"no payment {payment_no!r}")
        return view

    def payment_page(c: Console, payment_no: str, status: int = 200, **context: Any) -> Response:
        with c.work() as service:
            view = own_payment(c, service, payment_no)
        return c.render("payment.html", status, payment=view, final=view.status in FINAL,
                        refundable_minor=view.amount_minor - view.refunded_minor, **context)

    @web.get("/payments/{payment_no}", response_class=HTMLResponse)
    def payment(payment_no: str, c: Console = Depends(console)) -> Response:
        try:
            return payment_page(c, payment_no, notice=c.request.query_params.get("notice", "")[:80])
        except NotFound as exc:
            return c.render("message.html", 404, error=exc.message, code=exc.code)
        except SceneOSError as exc:
            return failure(c, exc)

    @web.get("/payments/{payment_no}/status")
    def payment_status(payment_no: str, c: Console = Depends(console)) -> Response:
        """The little JSON document the page polls while a QR waits to be paid."""
        try:
            with c.work() as service:
                view = own_payment(c, service, payment_no)
        except NotSignedIn:
            return signed_out(c, json=True)
        except SceneOSError as exc:
            return JSONResponse({"code": exc.code, "detail": exc.message}, status_code=exc.http_status)
        return JSONResponse({"payment_no": view.payment_no, "status": view.status, "tender": view.tender,
                             "amount": format_amount(view.amount_minor, view.currency), "currency": view.currency,
                             "refunded": format_amount(view.refunded_minor, view.currency) if view.refunded_minor else "0",
                             "failure_code": view.failure_code}, headers={"Cache-Control": "no-store"})

    @web.get("/payments/{payment_no}/qr.svg")
    def qr_svg(payment_no: str, c: Console = Depends(console)) -> Response:
        try:
            with c.work() as service:
                view = own_payment(c, service, payment_no)
        except SceneOSError as exc:
            return Response(status_code=exc.http_status)
        if view.payload is None:
            return Response(status_code=404)
        return Response(render_svg(view.payload), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    @web.post("/payments/{payment_no}/cancel", response_class=HTMLResponse)
    def cancel(payment_no: str, c: Console = Depends(console), csrf_token: str = Form("")) -> Response:
        try:
            c.check_post(csrf_token)
            with c.work() as service:
                own_payment(c, service, payment_no)
                service.cancel(payment_no)
        except (NotSignedIn, CsrfRefused, ConsoleOff) as exc:
            return failure(c, exc)
        except SceneOSError as exc:
            return payment_page(c, payment_no, exc.http_status, error=exc.message, code=exc.code)
        return c.redirect(f"/payments/{payment_no}?notice=cancelled")

    @web.post("/payments/{payment_no}/refund", response_class=HTMLResponse)
    def refund(payment_no: str, c: Console = Depends(console), amount: str = Form(""),
               supervisor_employee_no: str = Form(""), supervisor_pin: str = Form(""), reason: str = Form(""),
               request_id: str = Form(""), csrf_token: str = Form("")) -> Response:
        try:
            c.check_post(csrf_token)
        except SceneOSError as exc:
            return failure(c, exc)
        try:
            amount_minor = parse_amount(amount, c.currency)
            with c.work() as service:
                own_payment(c, service, payment_no)
                check = service.verify_pin(supervisor_employee_no.strip()[:32], supervisor_pin[:32])
                made = (service.refund(payment_no, amount_minor, check.verified, request_id, reason.strip()[:200])
                        if check.verified else None)
            check.raise_if_failed()  # after the commit: a wrong supervisor PIN is counted
            assert made is not None
        except NotSignedIn as exc:
            return failure(c, exc)
        except NotFound as exc:
            return c.render("message.html", 404, error=exc.message, code=exc.code)
        except SceneOSError as exc:
            return payment_page(c, payment_no, exc.http_status, error=exc.message, code=exc.code,
                                form_amount=amount, supervisor_employee_no=supervisor_employee_no, reason=reason)
        log.info("console.refunded", payment_no=payment_no, refund_no=made.refund_no)
        return c.redirect(f"/payments/{payment_no}?notice=refunded")

    # --- closing the shift --------------------------------------------------------------------------

    @web.post("/close", response_class=HTMLResponse)
    def close_shift(c: Console = Depends(console), csrf_token: str = Form("")) -> Response:
        try:
            c.check_post(csrf_token)
            assert c.session is not None
            with c.work() as service:
                statement = service.sign_out(c.session.shift_no)
        except SceneOSError as exc:
            return failure(c, exc)
        log.info("console.shift_closed", shift_no=statement.shift_no)
        response = c.render("statement.html", statement=statement)
        response.delete_cookie(SESSION_COOKIE, path=c.base + "/")
        return response

    # --- the script and the style sheet (shipped in the package: tellers may be offline) -----------

    @web.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return Response(status_code=404)
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})

    return web
