"""Merchant webhooks: a merchant's own system is told of its payments' events.

The payments module answers the super entry's ``sceneos_webhook_endpoints`` hook with one
endpoint per merchant that has a ``webhook_url`` and a secret: recipient
``payments:merchant:<merchant_id>``, for the events of that merchant (payload ``merchant_id``)
whose type matches one of its ``webhook_events`` patterns (by default payment succeeded, failed,
expired and refund succeeded). Delivery is the entry's: recorded from the outbox, signed
(``SceneOS-Signature: t=...,v1=...``, HMAC-SHA256), retried with backoff, logged, redeliverable.

The secret is stored encrypted with the entry's cipher (the deployment's master key), like
partner secrets; it is never returned by the API, logged, or shown by ``sceneos config check``.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from sqlalchemy import select

from infra.entry.crypto import DEV_MASTER_KEY, SecretCipher
from infra.entry.webhooks import WebhookEndpoint
from products.payments.models import Merchant

RECIPIENT_PREFIX = "payments:merchant:"


def secret_cipher(tenant: Any, session: Any) -> SecretCipher:
    """The cipher of partner secrets (``entry.master_key``; the development key on SQLite only)."""
    settings = tenant.global_settings.entry
    previous = [key.get_secret_value() for key in settings.previous_master_keys]
    if settings.master_key is not None:
        return SecretCipher(settings.master_key.get_secret_value(), previous)
    if session.get_bind().dialect.name != "sqlite":
        from core.errors import ConfigError

        raise ConfigError("is required with a server database to store merchant webhook secrets",
                          key="entry.master_key")
    return SecretCipher(DEV_MASTER_KEY, previous)


def endpoints(tenant: Any, uow: Any, event: Any, recipient: str | None) -> list[WebhookEndpoint]:
    """The hook's answer: merchants' endpoints wanting ``event``, or the one named ``recipient``."""
    if not tenant.has_module("payments"):
        return []
    query = select(Merchant).where(Merchant.webhook_url.is_not(None), Merchant.webhook_secret_encrypted.is_not(None))
    if recipient is not None:
        if not recipient.startswith(RECIPIENT_PREFIX):
            return []
        query = query.where(Merchant.merchant_id == recipient.removeprefix(RECIPIENT_PREFIX))
    elif event is not None:
        merchant_id = event.payload.get("merchant_id") if isinstance(event.payload, dict) else None
        if not event.type.startswith("payments.") or not isinstance(merchant_id, str):
            return []
        query = query.where(Merchant.merchant_id == merchant_id)
    found = []
    for row in uow.session.scalars(query):
        if event is not None and not any(fnmatch.fnmatchcase(event.type, pattern) for pattern in row.webhook_events or ()):
            continue
        assert row.webhook_url is not None and row.webhook_secret_encrypted is not None
        secret = secret_cipher(tenant, uow.session).decrypt(row.webhook_secret_encrypted) if recipient is not None else ""
        # Routing an event needs no secret: decrypt only when a delivery is about to be signed.
        found.append(WebhookEndpoint(RECIPIENT_PREFIX + row.merchant_id, row.webhook_url, (secret,)))
    return found
