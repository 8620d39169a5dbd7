"""Errors of the super entry, each with a stable code (see ``docs/super-entry.md``)."""

from __future__ import annotations

from core.errors import SceneOSError


class EntryError(SceneOSError):
    """Base of the entry's errors; ``headers`` go on the problem response."""

    headers: dict[str, str] | None = None


class AuthenticationRequired(EntryError):
    code = "authentication_required"
    http_status = 401


class AuthenticationMalformed(EntryError):
    code = "authentication_malformed"
    http_status = 401


class SignatureExpired(EntryError):
    code = "signature_expired"
    http_status = 401


class SignatureReplayed(EntryError):
    code = "signature_replayed"
    http_status = 401


class SignatureInvalid(EntryError):
    """Wrong signature, unknown or revoked key, or disabled partner: one answer for all, on purpose."""

    code = "signature_invalid"
    http_status = 401


class ScopeDenied(EntryError):
    code = "scope_denied"
    http_status = 403


class ConsentRequired(EntryError):
    code = "consent_required"
    http_status = 403


class EndUserRequired(EntryError):
    code = "end_user_required"
    http_status = 400


class EndUserUnknown(EntryError):
    code = "end_user_unknown"
    http_status = 404


class IdempotencyKeyRequired(EntryError):
    code = "idempotency_key_required"
    http_status = 400


class IdempotencyKeyReused(EntryError):
    code = "idempotency_key_reused"
    http_status = 422


class IdempotencyInProgress(EntryError):
    code = "idempotency_in_progress"
    http_status = 409


class RateLimited(EntryError):
    code = "rate_limited"
    http_status = 429


class BodyTooLarge(EntryError):
    code = "body_too_large"
    http_status = 413


class PartnerExists(EntryError):
    code = "partner_exists"
    http_status = 409


class PartnerManagedByConfiguration(EntryError):
    code = "partner_managed_by_configuration"
    http_status = 409
