"""Errors the kernel and modules raise. Each carries a stable ``code`` so HTTP and CLI layers can
render it (problem+json, one readable line) without a stack trace."""

from __future__ import annotations

from typing import Any


class SceneOSError(Exception):
    """Base of every error meant for a user. ``code`` is stable and machine-readable."""

    code = "sceneos_error"
    http_status = 400

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ConfigError(SceneOSError):
    """Configuration is invalid. The message names the file, the key and the problem, on one line."""

    code = "config_invalid"

    def __init__(self, problem: str, *, key: str = "", source: str = "") -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {problem}" if where else problem)


class NotFound(SceneOSError):
    code = "not_found"
    http_status = 404


class Conflict(SceneOSError):
    code = "conflict"
    http_status = 409


class ValidationFailed(SceneOSError):
    """Input broke a domain rule. ``details`` holds one entry per field: {field, code, message}."""

    code = "validation_failed"
    http_status = 422


class Rejected(SceneOSError):
    """A plugin or rule refused the operation; ``reasons`` are reason codes with messages."""

    code = "rejected"
    http_status = 422


class TenantIsolationError(SceneOSError):
    """Code tried to read or write another tenant's rows through a tenant-bound session."""

    code = "tenant_isolation"
    http_status = 500


class Rejection:
    """A refusal returned (not raised) by a validation hook, so the other plugins still run."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message

    def as_detail(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"Rejection({self.code!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rejection) and (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))
