"""The super entry's signing schemes, in the standard library alone.

Partners sign every request (see ``docs/super-entry.md``, "Signed requests")::

    Authorization: SceneOS-HMAC-SHA256 KeyId=<key id>, Timestamp=<unix seconds>, Nonce=<nonce>, Signature=<hex>

where ``Signature`` is the lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of the
*string to sign*: eight lines joined by ``\\n`` (no trailing newline)::

    SceneOS-HMAC-SHA256
    <key id>
    <timestamp>
    <nonce>
    <METHOD>
    <canonical path>
    <canonical query>
    <hex SHA-256 of the raw body bytes>

The bank signs webhooks the way Stripe does: ``SceneOS-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]``
with one ``v1`` per active webhook secret, each the HMAC-SHA256 of ``<t>.<raw body>``.

The server and the SDK both use this module, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_plus

SCHEME = "SceneOS-HMAC-SHA256"
AUTHORIZATION_HEADER = "Authorization"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed"
END_USER_HEADER = "SceneOS-User-Id"
WEBHOOK_SIGNATURE_HEADER = "SceneOS-Signature"
WEBHOOK_EVENT_ID_HEADER = "SceneOS-Event-Id"
WEBHOOK_EVENT_TYPE_HEADER = "SceneOS-Event-Type"
WEBHOOK_DELIVERY_ID_HEADER = "SceneOS-Delivery-Id"

KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")
_UNRESERVED = "-_.~"  # with ASCII letters and digits: RFC 3986's unreserved characters
_FIELDS = ("KeyId", "Timestamp", "Nonce", "Signature")
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


class SignatureFormatError(ValueError):
    """An ``Authorization`` or ``SceneOS-Signature`` header that cannot be parsed."""


class WebhookSignatureError(ValueError):
    """A webhook whose signature is missing, malformed, too old or does not match."""


@dataclass(frozen=True)
class SignedRequest:
    """What a partner's ``Authorization`` header carries."""

    key_id: str
    timestamp: int
    nonce: str
    signature: str


# --- canonical form --------------------------------------------------------------------------------


def _encode(text: str, safe: str = _UNRESERVED) -> str:
    """Percent-encode UTF-8 bytes, upper-case hex, leaving only unreserved characters (and ``safe``)."""
    return quote(text, safe=safe, encoding="utf-8", errors="strict")


def canonical_path(raw_path: str) -> str:
    """The path as sent (percent-encoded or not), decoded once and encoded again canonically."""
    return _encode(unquote(raw_path, encoding="utf-8", errors="strict"), safe=_UNRESERVED + "/") or "/"


def canonical_query(raw_query: str) -> str:
    """Query parameters decoded (``+`` is a space), encoded canonically, sorted by name then value.

    ``b=2&a=x y&a`` becomes ``a=&a=x%20y&b=2``: a parameter without ``=`` has an empty value.
    """
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote_plus(name)), _encode(unquote_plus(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def string_to_sign(
    *, key_id: str, timestamp: int, nonce: str, method: str, raw_path: str, raw_query: str, body: bytes
) -> str:
    return "\n".join(
        [
            SCHEME,
            key_id,
            str(timestamp),
            nonce,
            method.upper(),
            canonical_path(raw_path),
            canonical_query(raw_query),
            body_sha256(body),
        ]
    )


def hmac_sha256_hex(secret: str | bytes, message: str | bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    data = message.encode("utf-8") if isinstance(message, str) else message
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign(
    secret: str | bytes,
    *,
    key_id: str,
    timestamp: int,
    nonce: str,
    method: str,
    raw_path: str,
    raw_query: str = "",
    body: bytes = b"",
) -> str:
    """The hex signature of one request."""
    return hmac_sha256_hex(
        secret,
        string_to_sign(key_id=key_id, timestamp=timestamp, nonce=nonce, method=method, raw_path=raw_path,
                       raw_query=raw_query, body=body),
    )


def authorization_header(key_id: str, timestamp: int, nonce: str, signature: str) -> str:
    return f"{SCHEME} KeyId={key_id}, Timestamp={timestamp}, Nonce={nonce}, Signature={signature}"


def sign_request(
    *,
    key_id: str,
    secret: str | bytes,
    method: str,
    raw_path: str,
    raw_query: str = "",
    body: bytes = b"",
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """The headers that sign one request (today only ``Authorization``)."""
    signature = sign(secret, key_id=key_id, timestamp=timestamp, nonce=nonce, method=method, raw_path=raw_path,
                     raw_query=raw_query, body=body)
    return {AUTHORIZATION_HEADER: authorization_header(key_id, timestamp, nonce, signature)}


def parse_authorization(value: str) -> SignedRequest:
    """Parse an ``Authorization`` header strictly; raises :class:`SignatureFormatError` saying why."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != SCHEME:
        raise SignatureFormatError(f"the Authorization scheme must be {SCHEME}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or name not in _FIELDS or name in fields:
            raise SignatureFormatError("Authorization must carry KeyId, Timestamp, Nonce and Signature once each")
        fields[name] = field_value
    if set(fields) != set(_FIELDS):
        raise SignatureFormatError("Authorization must carry KeyId, Timestamp, Nonce and Signature once each")
    if not KEY_ID_RE.match(fields["KeyId"]):
        raise SignatureFormatError("KeyId is not well formed")
    if not TIMESTAMP_RE.match(fields["Timestamp"]):
        raise SignatureFormatError("Timestamp must be whole seconds since the Unix epoch")
    if not NONCE_RE.match(fields["Nonce"]):
        raise SignatureFormatError("Nonce must be 16 to 64 characters of A-Z a-z 0-9 _ -")
    if not SIGNATURE_RE.match(fields["Signature"]):
        raise SignatureFormatError("Signature must be 64 lower-case hex digits")
    return SignedRequest(fields["KeyId"], int(fields["Timestamp"]), fields["Nonce"], fields["Signature"])


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


# --- webhooks ----------------------------------------------------------------------------------------


def webhook_signature_header(body: bytes, secrets: Sequence[str | bytes], timestamp: int) -> str:
    """``t=<timestamp>,v1=<hex>,...``: one signature per active secret (newest first)."""
    if not secrets:
        raise ValueError("a webhook needs at least one secret to be signed")
    signed = str(timestamp).encode("ascii") + b"." + body
    return ",".join([f"t={timestamp}"] + [f"v1={hmac_sha256_hex(secret, signed)}" for secret in secrets])


def verify_webhook(
    body: bytes,
    header: str | None,
    secrets: str | bytes | Iterable[str | bytes],
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> int:
    """Check a webhook's ``SceneOS-Signature`` against your secret(s); returns its timestamp.

    Pass the raw body bytes exactly as received (not re-serialized JSON). During a secret rotation
    pass both secrets: any ``v1`` matching any secret is accepted. ``now`` defaults to the wall clock.
    """
    if not header:
        raise WebhookSignatureError("no SceneOS-Signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and TIMESTAMP_RE.match(value):
            timestamp = int(value)
        elif name == "v1" and SIGNATURE_RE.match(value):
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError("SceneOS-Signature must carry t=<timestamp> and at least one v1=<signature>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError("webhook timestamp is outside the tolerance")
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    signed = str(timestamp).encode("ascii") + b"." + body
    for secret in keys:
        expected = hmac_sha256_hex(secret, signed)
        if any(signatures_match(expected, candidate) for candidate in candidates):
            return timestamp
    raise WebhookSignatureError("no webhook signature matches")
