"""Errors of the payments module; each has a stable ``code`` rendered as problem+json."""

from __future__ import annotations

from core.errors import Conflict, SceneOSError, ValidationFailed


class PinRejected(SceneOSError):
    """Wrong employee number or PIN (the same answer for both, so numbers cannot be probed)."""

    code = "pin_rejected"
    http_status = 401


class OperatorLocked(SceneOSError):
    code = "operator_locked"
    http_status = 423


class Forbidden(SceneOSError):
    code = "forbidden"
    http_status = 403


class QrExpired(SceneOSError):
    code = "qr_expired"
    http_status = 422


class PaymentFailed(SceneOSError):
    code = "payment_failed"
    http_status = 422


class InvalidQr(ValidationFailed):
    code = "invalid_qr"


class RefundExceedsPaid(ValidationFailed):
    code = "refund_exceeds_paid"


class WrongState(Conflict):
    code = "wrong_state"
