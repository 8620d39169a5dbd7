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

from sqlalchemy import bindparam, select

from core.statements import run, tenant_bound, tenant_filter
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

        raise ConfigError(
            "is required with a server database to store merchant webhook secrets", key="entry.master_key"
        )
    return SecretCipher(DEV_MASTER_KEY, previous)


_ROUTES_KEY = "sceneos_payments_webhook_routes"
_MERCHANTS = Merchant.__table__
# Routing runs for every unit of work that raised payments events: a Core statement built once
# (core.statements binds the unit of work's tenant); the ORM's per-statement work was most of it.
_SELECT_ROUTE = tenant_bound(
    select(_MERCHANTS.c.webhook_url, _MERCHANTS.c.webhook_events).where(
        tenant_filter(_MERCHANTS),
        _MERCHANTS.c.merchant_id == bindparam("merchant_id"),
        _MERCHANTS.c.webhook_url.is_not(None),
        _MERCHANTS.c.webhook_secret_encrypted.is_not(None),
    )
)


def endpoints(tenant: Any, uow: Any, event: Any, recipient: str | None) -> list[WebhookEndpoint]:
    """The hook's answer: merchants' endpoints wanting ``event``, or the one named ``recipient``."""
    if not tenant.has_module("payments"):
        return []
    if recipient is None and event is not None:
        return _routed(uow, event)
    query = select(Merchant).where(
        Merchant.webhook_url.is_not(None), Merchant.webhook_secret_encrypted.is_not(None)
    )
    if recipient is not None:
        if not recipient.startswith(RECIPIENT_PREFIX):
            return []
        query = query.where(Merchant.merchant_id == recipient.removeprefix(RECIPIENT_PREFIX))
    found = []
    for row in uow.session.scalars(query):
        assert row.webhook_url is not None and row.webhook_secret_encrypted is not None
        secret = (
            secret_cipher(tenant, uow.session).decrypt(row.webhook_secret_encrypted)
            if recipient is not None
            else ""
        )
        found.append(WebhookEndpoint(RECIPIENT_PREFIX + row.merchant_id, row.webhook_url, (secret,)))
    return found


def _routed(uow: Any, event: Any) -> list[WebhookEndpoint]:
    """The endpoint of the event's merchant, if it wants the event. The merchant's webhook settings
    are read once per unit of work: the outbox routes all of a unit of work's events in one."""
    merchant_id = event.payload.get("merchant_id") if isinstance(event.payload, dict) else None
    if not event.type.startswith("payments.") or not isinstance(merchant_id, str):
        return []
    routes: dict[str, tuple[str, tuple[str, ...]] | None] = uow.session.info.setdefault(_ROUTES_KEY, {})
    if merchant_id not in routes:
        row = run(uow, _SELECT_ROUTE, {"merchant_id": merchant_id}).one_or_none()
        routes[merchant_id] = (row.webhook_url, tuple(row.webhook_events or ())) if row is not None else None
    route = routes[merchant_id]
    if route is None or not any(fnmatch.fnmatchcase(event.type, pattern) for pattern in route[1]):
        return []
    # Routing an event needs no secret: it is decrypted only when a delivery is about to be signed.
    return [WebhookEndpoint(RECIPIENT_PREFIX + merchant_id, route[0], ("",))]
