"""Settings of the cashier console, under ``[tenants.<id>.modules.payments.console]``."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from core.settings import StrictModel


class ConsoleSettings(StrictModel):
    # Signs the operators' session cookies and CSRF tokens. Set it from the environment, e.g.
    # SCENEOS__TENANTS__BANK__MODULES__PAYMENTS__CONSOLE__SESSION_SECRET. Unset: on SQLite a random
    # key per process (sessions end with the process); on a server database the console is off.
    session_secret: SecretStr | None = Field(default=None, description="at least 32 characters")
    session_minutes: int = Field(default=600, ge=5, le=1440, description="a session ends this long after sign-in")
    poll_interval_ms: int = Field(default=300, ge=100, le=5000, description="how often the page asks a QR's status")
    # None: the cookie is Secure when the request came over HTTPS (X-Forwarded-Proto is not trusted).
    secure_cookie: bool | None = None

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("session_secret must be at least 32 characters")
        return value
