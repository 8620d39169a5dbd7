"""problem+json answers of the super entry, as exceptions."""

from __future__ import annotations

from typing import Any


class SceneOSAPIError(Exception):
    """The API answered with an error. ``code`` is stable and machine-readable (see the docs)."""

    def __init__(self, status: int, problem: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.problem = problem
        self.code: str = str(problem.get("code") or "http_error")
        self.title: str = str(problem.get("title") or "")
        self.detail: str = str(problem.get("detail") or self.title)
        self.request_id: str | None = problem.get("request_id")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.headers = dict(headers or {})
        super().__init__(f"{status} {self.code}: {self.detail} (request {self.request_id})")


class AuthenticationError(SceneOSAPIError):
    """401: missing, malformed, expired, replayed or wrong signature."""


class PermissionDenied(SceneOSAPIError):
    """403: outside the partner's scopes, or a needed consent is missing."""


class NotFoundError(SceneOSAPIError):
    """404."""


class ConflictError(SceneOSAPIError):
    """409: e.g. the same idempotency key is being processed by another request."""


class ValidationError(SceneOSAPIError):
    """422 (and 400): ``errors`` holds field-level details."""


class IdempotencyKeyReused(ValidationError):
    """422: the idempotency key was used before with another request."""


class RateLimited(SceneOSAPIError):
    """429: ``retry_after`` seconds until the partner may call again."""

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ServerError(SceneOSAPIError):
    """5xx: quote ``request_id`` to the bank."""


_BY_CODE: dict[str, type[SceneOSAPIError]] = {"idempotency_key_reused": IdempotencyKeyReused}
_BY_STATUS: dict[int, type[SceneOSAPIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimited,
}


def error_for(status: int, problem: dict[str, Any], headers: dict[str, str]) -> SceneOSAPIError:
    cls = _BY_CODE.get(str(problem.get("code"))) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else SceneOSAPIError
    return cls(status, problem, headers=headers)
