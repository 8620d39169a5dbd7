"""The operator's session cookie and the CSRF tokens of the console's forms.

A session is a signed cookie (HMAC-SHA256, key derived per tenant from the console's
``session_secret``): it names the tenant, the operator, the open shift and when it ends, and holds
a random nonce from which the session's CSRF token is derived. Nothing secret is in it (no PIN),
and the server checks on every request that the shift is still open, so closing the shift ends the
session even if a copy of the cookie survives. Before sign-in, the sign-in form is protected by a
double-submit token: a random nonce in its own cookie, the form carrying its HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

SESSION_COOKIE = "sceneos_console"
LOGIN_COOKIE = "sceneos_console_login"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ConsoleSession:
    tenant_id: str
    employee_no: str
    role: str
    merchant_id: str
    shift_no: str
    terminal_id: str
    expires_at: int  # seconds since the epoch, from the tenant's clock
    nonce: str


class SessionSigner:
    """Signs and reads sessions and CSRF tokens with a key of one tenant."""

    def __init__(self, secret: bytes, tenant_id: str) -> None:
        # One key per tenant: a cookie of one bank is never valid at another's console.
        self._key = hmac.new(secret, b"sceneos-console:" + tenant_id.encode(), hashlib.sha256).digest()
        self.tenant_id = tenant_id

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}:{data}".encode(), hashlib.sha256).digest())

    # --- the session ----------------------------------------------------------------------------

    def issue(self, *, employee_no: str, role: str, merchant_id: str, shift_no: str, terminal_id: str,
              now: datetime, minutes: int) -> tuple[ConsoleSession, str]:
        session = ConsoleSession(self.tenant_id, employee_no, role, merchant_id, shift_no, terminal_id,
                                 int(now.timestamp()) + minutes * 60, secrets.token_urlsafe(18))
        body = _b64(json.dumps(session.__dict__, separators=(",", ":"), sort_keys=True).encode())
        return session, f"{body}.{self._mac('session', body)}"

    def read(self, cookie: str | None, now: datetime) -> ConsoleSession | None:
        """The session the cookie holds, or None when it is absent, forged, of another tenant or expired."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 2048:
            return None
        body, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            session = ConsoleSession(**json.loads(_unb64(body)))
        except (ValueError, TypeError):
            return None
        if session.tenant_id != self.tenant_id or session.expires_at <= now.timestamp():
            return None
        return session

    def csrf_token(self, session: ConsoleSession) -> str:
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: ConsoleSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))

    # --- the sign-in form (no session yet) ------------------------------------------------------

    @staticmethod
    def new_login_nonce() -> str:
        return secrets.token_urlsafe(18)

    def login_token(self, nonce: str) -> str:
        return self._mac("login", nonce)

    def login_ok(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce) and bool(token) and hmac.compare_digest(str(token), self.login_token(str(nonce)))
