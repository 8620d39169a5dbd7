"""The partner SDK of the super entry: signed requests, idempotency keys, safe retries, problem+json
as exceptions, webhook verification. Needs only httpx and the standard library, so a partner can
install it without the bank's server dependencies::

    from core.sdk import PartnerClient

    with PartnerClient("https://api.bank.example", key_id="pk_travel_1", secret=SECRET) as bank:
        customer = bank.post("/v1/party/customers", json={...}).data
"""

from core.sdk.client import APIResponse, AsyncPartnerClient, PartnerClient, RetryPolicy, SceneOSAuth
from core.sdk.errors import (
    AuthenticationError,
    ConflictError,
    IdempotencyKeyReused,
    NotFoundError,
    PermissionDenied,
    RateLimited,
    SceneOSAPIError,
    ServerError,
    ValidationError,
)
from core.sdk.signing import (
    WEBHOOK_SIGNATURE_HEADER,
    SignatureFormatError,
    WebhookSignatureError,
    parse_authorization,
    sign,
    sign_request,
    string_to_sign,
    verify_webhook,
    webhook_signature_header,
)

__all__ = [
    "WEBHOOK_SIGNATURE_HEADER",
    "APIResponse",
    "AsyncPartnerClient",
    "AuthenticationError",
    "ConflictError",
    "IdempotencyKeyReused",
    "NotFoundError",
    "PartnerClient",
    "PermissionDenied",
    "RateLimited",
    "RetryPolicy",
    "SceneOSAPIError",
    "SceneOSAuth",
    "ServerError",
    "SignatureFormatError",
    "ValidationError",
    "WebhookSignatureError",
    "parse_authorization",
    "sign",
    "sign_request",
    "string_to_sign",
    "verify_webhook",
    "webhook_signature_header",
]
