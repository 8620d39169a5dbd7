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


class FundingSourceUnavailable(ValidationFailed):
    """The payer chose a funding source the bank does not offer (e.g. credit pay not enabled)."""

    code = "funding_source_unavailable"


class InvalidPaymentCode(ValidationFailed):
    """Not a payment code of this bank: malformed, unknown, replaced by a newer one, or another bank's."""

    code = "invalid_payment_code"


class PaymentCodeUsed(Conflict):
    code = "payment_code_used"


class PaymentCodeExpired(SceneOSError):
    code = "payment_code_expired"
    http_status = 422


class DayNotOver(ValidationFailed):
    """A business day is settled only once it has ended (in the bank's time zone)."""

    code = "day_not_over"
