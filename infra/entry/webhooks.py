"""Webhooks: domain events delivered to partners as signed POSTs, from the transactional outbox.

* The entry is an outbox subscriber (``sceneos_on_event``): for each committed event it records one
  *delivery* per partner that should get it, with the exact body to send. Recording is idempotent
  (one delivery per event and partner), so the outbox's at-least-once redelivery adds nothing.
* The :class:`WebhookDispatcher` sends due deliveries (``sceneos serve`` runs it in the background;
  ``sceneos entry webhooks run`` runs it as a worker): ``POST`` with ``SceneOS-Signature:
  t=<unix seconds>,v1=<hex>`` (one ``v1`` per active webhook secret, HMAC-SHA256 of ``<t>.<body>``)
  and the event id in the body and in ``SceneOS-Event-Id`` for deduplication. A 2xx answer delivers;
  anything else is retried with exponential backoff and jitter until ``webhook_max_attempts``, then
  the delivery is ``dead``. Every attempt is logged (``entry_webhook_attempts``); any delivery can be
  sent again by hand (``sceneos entry webhooks redeliver``).

Which partner gets which event: an event whose payload names a ``partner_id`` goes to that partner
only (its own users' and operations' events); other events go to partners whose ``webhook_events``
patterns match the type. A partner needs a ``webhook_url`` and a webhook secret.

Modules may add receivers that are not partners (a merchant's own system) through the hook
``sceneos_webhook_endpoints``: each :class:`WebhookEndpoint` has a recipient id containing ``:``
(never a partner id), kept in the delivery's ``partner_id`` column, and is signed, retried and
logged exactly like a partner.
"""

from __future__ import annotations

import fnmatch
import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import select, update

from core.logging import get_logger, mask_text
from core.sdk.signing import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_EVENT_ID_HEADER,
    WEBHOOK_EVENT_TYPE_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    webhook_signature_header,
)
from core.statements import run, tenant_bound, tenant_filter
from infra.entry.models import EntryPartner, EntryWebhookAttempt, EntryWebhookDelivery
from infra.entry.partners import Partner, _from_row, _from_settings
from infra.entry.replay import insert_ignoring_conflict
from infra.entry.settings import EntryModuleSettings

if TYPE_CHECKING:
    from core.app import SceneOS
    from core.events import Event
    from core.tenancy import Tenant, UnitOfWork
    from infra.entry.runtime import EntryRuntime

log = get_logger("sceneos.entry.webhooks")
CLAIM_LEASE = timedelta(seconds=60)
USER_AGENT = "SceneOS-Webhooks/1"


def event_body(event: Event) -> bytes:
    """The bytes a partner receives (the same on every attempt)."""
    document = {
        "id": event.id,
        "type": event.type,
        "created_at": event.occurred_at.isoformat(),
        "subject": event.subject,
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class WebhookEndpoint:
    """A webhook receiver a module offers (hook ``sceneos_webhook_endpoints``).

    ``recipient`` is ``"<module>:<id>"`` (a ``:`` keeps it apart from partner ids); ``secrets`` are
    the active signing secrets, newest first (one ``v1`` signature each).
    """

    recipient: str
    url: str
    secrets: tuple[str, ...]
    enabled: bool = True

    def __post_init__(self) -> None:
        if ":" not in self.recipient or len(self.recipient) > 64:
            raise ValueError(
                f"webhook endpoint recipient {self.recipient!r} must be '<module>:<id>', at most 64 characters"
            )

    def __repr__(self) -> str:  # never print the secrets
        return f"WebhookEndpoint(recipient={self.recipient!r}, url={mask_text(self.url)!r}, secrets=<{len(self.secrets)}>)"


def module_endpoints(
    tenant: Tenant, uow: object, *, event: Event | None = None, recipient: str | None = None
) -> list[WebhookEndpoint]:
    """The modules' endpoints that want ``event``, or the one named ``recipient``."""
    found: list[WebhookEndpoint] = []
    for offered in tenant.hooks.hook.sceneos_webhook_endpoints(
        tenant=tenant, uow=uow, event=event, recipient=recipient
    ):
        found.extend(
            endpoint for endpoint in offered or () if recipient is None or endpoint.recipient == recipient
        )
    return found


_PARTNERS_KEY = "sceneos_entry_webhook_partners"
_PARTNERS = EntryPartner.__table__
# A Core statement built once (core.statements binds the unit of work's tenant): it runs for every
# unit of work that raised events, and the ORM's per-statement work was most of its cost.
_SELECT_PARTNERS = tenant_bound(select(_PARTNERS).where(tenant_filter(_PARTNERS)))


def _tenant_partners(uow: UnitOfWork, tenant: Tenant) -> list[Partner]:
    # Read once per unit of work: the outbox records all of a unit of work's events in one.
    info = uow.session.info
    cached: list[Partner] | None = info.get(_PARTNERS_KEY)
    if cached is not None:
        return cached
    configured = [_from_settings(tenant.id, pid, s) for pid, s in tenant.settings.partners.items()]
    rows = run(uow, _SELECT_PARTNERS).all()
    partners: list[Partner] = configured + [_from_row(row) for row in rows]  # type: ignore[arg-type]
    info[_PARTNERS_KEY] = partners
    return partners


def recipients(event: Event, partners: list[Partner]) -> list[Partner]:
    owner = event.payload.get("partner_id") if isinstance(event.payload, dict) else None
    chosen = []
    for partner in partners:
        if not partner.enabled or not partner.webhook_url:
            continue
        if owner is not None:
            if owner == partner.partner_id:
                chosen.append(partner)
        elif any(fnmatch.fnmatchcase(event.type, pattern) for pattern in partner.webhook_events):
            chosen.append(partner)
    return chosen


def record_event(event: Event, tenant: Tenant) -> int:
    """The outbox subscriber's work: one delivery per recipient partner. Returns how many are new
    (0 when it is handed to the outbox, which records it with the event's receipt)."""
    if not tenant.has_module("entry"):
        return 0
    from infra.outbox.service import defer_to_receipt

    # Under the outbox, the deliveries are written in the unit of work that records the receipt:
    # one transaction for all of a unit of work's events, not one per event.
    if defer_to_receipt(lambda uow: record_deliveries(uow, event, tenant)):
        return 0
    with tenant.unit_of_work() as uow:
        return record_deliveries(uow, event, tenant)


def record_deliveries(uow: UnitOfWork, event: Event, tenant: Tenant) -> int:
    """Record ``event``'s deliveries in ``uow``, one per recipient; how many are new."""
    chosen = [partner.partner_id for partner in recipients(event, _tenant_partners(uow, tenant))]
    chosen += [
        endpoint.recipient for endpoint in module_endpoints(tenant, uow, event=event) if endpoint.enabled
    ]
    if not chosen:
        return 0
    created = 0
    now = uow.clock.now()
    body = event_body(event)
    for recipient in chosen:
        created += (
            insert_ignoring_conflict(
                uow,
                EntryWebhookDelivery,
                {
                    "id": "whd_" + secrets.token_hex(12),
                    "event_id": event.id,
                    "event_type": event.type,
                    "partner_id": recipient,
                    "body": body,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_status_code": None,
                    "last_error": None,
                    "created_at": now,
                    "delivered_at": None,
                },
            )
            is not None
        )
    return created


def backoff(settings: EntryModuleSettings, attempts: int) -> timedelta:
    """Exponential backoff with jitter: between half and all of base * 2^(attempts-1), capped."""
    delay = min(
        settings.webhook_backoff_max_seconds, settings.webhook_backoff_base_seconds * 2 ** (attempts - 1)
    )
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))


@dataclass
class DispatchReport:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0


class WebhookDispatcher:
    def __init__(self, app: SceneOS, entry: EntryRuntime, client: httpx.Client | None = None) -> None:
        self.app = app
        self.entry = entry
        self.client = client or httpx.Client(
            timeout=entry.settings.webhook_timeout_seconds,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def run_once(self, tenant_id: str | None = None) -> DispatchReport:
        """Send every due delivery once (bounded per tenant by ``webhook_batch_size``)."""
        report = DispatchReport()
        tenants = [self.app.tenant(tenant_id)] if tenant_id else list(self.app.tenants.values())
        for tenant in tenants:
            if not tenant.has_module("entry"):
                continue
            settings = self.entry.module_settings(tenant)
            with tenant.unit_of_work() as uow:
                due = uow.session.scalars(
                    select(EntryWebhookDelivery.id)
                    .where(
                        EntryWebhookDelivery.status == "pending",
                        EntryWebhookDelivery.next_attempt_at <= uow.clock.now(),
                    )
                    .order_by(EntryWebhookDelivery.next_attempt_at)
                    .limit(settings.webhook_batch_size)
                ).all()
            for delivery_id in due:
                outcome = self.deliver(tenant, delivery_id)
                if outcome is not None:
                    report.attempted += 1
                    setattr(report, outcome, getattr(report, outcome) + 1)
        return report

    def redeliver(self, tenant: Tenant, delivery_id: str) -> str | None:
        """Send one delivery now, whatever its state (delivered, dead or waiting)."""
        row = self._claim(tenant, delivery_id, manual=True)
        if row is None:
            from core.errors import NotFound

            raise NotFound(f"no webhook delivery {delivery_id!r}")
        return self._send(tenant, row, manual=True)

    def _claim(self, tenant: Tenant, delivery_id: str, *, manual: bool = False) -> EntryWebhookDelivery | None:
        """Lease one due, pending delivery to this process; ``manual``: any delivery, whatever its
        state, made pending again in the same statement, so the background sender cannot take it
        between the reset and the claim."""
        with tenant.unit_of_work() as uow:
            now = uow.clock.now()
            statement = update(EntryWebhookDelivery).where(EntryWebhookDelivery.id == delivery_id)
            if manual:
                statement = statement.values(status="pending", next_attempt_at=now + CLAIM_LEASE)
            else:
                statement = statement.where(
                    EntryWebhookDelivery.status == "pending",
                    EntryWebhookDelivery.next_attempt_at <= now,
                ).values(next_attempt_at=now + CLAIM_LEASE)
            claimed = uow.session.execute(statement.execution_options(synchronize_session=False)).rowcount
            if claimed != 1:
                return None
            row = uow.session.get(EntryWebhookDelivery, delivery_id)
            assert row is not None
            uow.session.expunge(row)
            return row

    def deliver(self, tenant: Tenant, delivery_id: str) -> str | None:
        """Claim, POST and record one delivery: 'delivered', 'failed', 'dead', or None if not due."""
        row = self._claim(tenant, delivery_id)
        return None if row is None else self._send(tenant, row)

    def _send(self, tenant: Tenant, row: EntryWebhookDelivery, *, manual: bool = False) -> str:
        """POST a claimed delivery and record the attempt."""
        with tenant.unit_of_work() as uow:
            url: str | None = None
            enabled = False
            if ":" in row.partner_id:  # a module's endpoint (sceneos_webhook_endpoints)
                found = module_endpoints(tenant, uow, recipient=row.partner_id)
                if found:
                    url, enabled, secrets_ = found[0].url, found[0].enabled, list(found[0].secrets)
                else:
                    secrets_ = []
            else:
                partner = self.entry.directory.get(uow, row.partner_id)
                secrets_ = self.entry.directory.webhook_secrets(uow, partner) if partner is not None else []
                if partner is not None:
                    url, enabled = partner.webhook_url, partner.enabled
            sent_at = uow.clock.now()
        status_code: int | None = None
        error: str | None = None
        started = time.perf_counter()
        if not enabled or not url:
            error = "recipient has no webhook URL or is disabled"
        elif not secrets_:
            error = "recipient has no webhook secret"
        else:
            headers = {
                "Content-Type": "application/json",
                WEBHOOK_SIGNATURE_HEADER: webhook_signature_header(
                    row.body, secrets_, int(sent_at.timestamp())
                ),
                WEBHOOK_EVENT_ID_HEADER: row.event_id,
                WEBHOOK_EVENT_TYPE_HEADER: row.event_type,
                WEBHOOK_DELIVERY_ID_HEADER: row.id,
            }
            try:
                response = self.client.post(url, content=row.body, headers=headers)
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except httpx.HTTPError as exc:
                error = mask_text(f"{type(exc).__name__}: {exc}")[:500]
        elapsed = time.perf_counter() - started
        return self._record(tenant, row, status_code, error, elapsed, manual=manual)

    def _record(
        self,
        tenant: Tenant,
        claimed: EntryWebhookDelivery,
        status_code: int | None,
        error: str | None,
        elapsed: float,
        *,
        manual: bool,
    ) -> str:
        settings = self.entry.module_settings(tenant)
        with tenant.unit_of_work() as uow:
            now = uow.clock.now()
            row = uow.session.get(EntryWebhookDelivery, claimed.id)
            assert row is not None
            row.attempts += 1
            row.last_status_code = status_code
            row.last_error = error
            uow.session.add(
                EntryWebhookAttempt(
                    delivery_id=row.id,
                    attempted_at=now,
                    status_code=status_code,
                    error=error,
                    duration_ms=int(elapsed * 1000),
                )
            )
            if error is None:
                row.status, row.delivered_at, outcome = "delivered", now, "delivered"
            elif row.attempts >= settings.webhook_max_attempts:
                row.status, outcome = "dead", "dead"
                log.error(
                    "webhook given up",
                    tenant_id=tenant.id,
                    partner_id=row.partner_id,
                    delivery_id=row.id,
                    event_type=row.event_type,
                    attempts=row.attempts,
                    error=error,
                    manual=manual,
                )
            else:
                row.next_attempt_at = now + backoff(settings, row.attempts)
                outcome = "failed"
                log.warning(
                    "webhook failed; will retry",
                    tenant_id=tenant.id,
                    partner_id=row.partner_id,
                    delivery_id=row.id,
                    attempt=row.attempts,
                    error=error,
                )
            partner_id = row.partner_id
        self.entry.metrics.webhook_deliveries.labels(tenant.id, partner_id, outcome).inc()
        self.entry.metrics.webhook_latency.observe(elapsed)
        return outcome


def delivery_log(tenant: Tenant, *, status: str | None = None, limit: int = 100) -> list[dict[str, object]]:
    with tenant.unit_of_work() as uow:
        query = select(EntryWebhookDelivery).order_by(EntryWebhookDelivery.created_at.desc()).limit(limit)
        if status:
            query = query.where(EntryWebhookDelivery.status == status)
        return [delivery_view(row) for row in uow.session.scalars(query)]


def delivery_view(
    row: EntryWebhookDelivery, attempts: list[EntryWebhookAttempt] | None = None
) -> dict[str, object]:
    view: dict[str, object] = {
        "delivery_id": row.id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "partner_id": row.partner_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
    }
    if attempts is not None:
        view["log"] = [
            {
                "attempted_at": a.attempted_at,
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ]
    return view


def delivery_detail(tenant: Tenant, delivery_id: str) -> dict[str, object]:
    from core.errors import NotFound

    with tenant.unit_of_work() as uow:
        row = uow.session.get(EntryWebhookDelivery, delivery_id)
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id!r}")
        attempts = uow.session.scalars(
            select(EntryWebhookAttempt)
            .where(EntryWebhookAttempt.delivery_id == row.id)
            .order_by(EntryWebhookAttempt.id)
        ).all()
        return delivery_view(row, list(attempts))
