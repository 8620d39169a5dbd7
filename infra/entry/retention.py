"""Retention of the webhook delivery log: the compute job ``entry.webhook_purge``.

Every event a partner receives leaves a delivery (``entry_webhook_deliveries``, with the exact body
sent) and one attempt row per POST (``entry_webhook_attempts``). With the entry module's
``webhook_retention_days`` set, ``entry.webhook_purge`` for business date D deletes the deliveries
finished (``delivered``, or ``dead``: given up on) that were created before the first instant of day
D - webhook_retention_days in the bank's time zone, with their attempts. A delivery still pending is
never deleted; nor is one whose event the outbox is still delivering to another subscriber, since
the outbox would then hand the event over again and a second delivery (a duplicate webhook) would be
recorded in place of the one purged. With ``webhook_retention_days`` 0 (the default) nothing is.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import exists

from core.clock import retained_from
from core.modules import JobSpec
from core.statements import delete_with_children
from infra.entry.models import EntryWebhookAttempt, EntryWebhookDelivery
from infra.outbox.models import OutboxEvent

log = structlog.get_logger("sceneos.entry")


def purge_finished(ctx: Any) -> dict[str, int]:
    """One run's work (one partition): see the module docstring."""
    days = ctx.module("entry").settings.webhook_retention_days
    if not days:
        return {"webhook_deliveries_purged": 0}
    tenant = ctx.uow.tenant
    kept_from = retained_from(tenant.timezone, ctx.business_date, days)
    d = EntryWebhookDelivery
    still_in_outbox = exists().where(
        OutboxEvent.tenant_id == tenant.id, OutboxEvent.id == d.event_id, OutboxEvent.delivered_at.is_(None)
    )
    finished = (d.status.in_(("delivered", "dead")), d.created_at < kept_from, ~still_in_outbox)
    purged = delete_with_children(ctx.uow, d, finished, EntryWebhookAttempt, EntryWebhookAttempt.delivery_id)
    if purged:
        log.info("webhook deliveries purged", deliveries=purged, created_before=kept_from.isoformat())
    return {"webhook_deliveries_purged": purged}


PURGE = JobSpec(
    name="entry.webhook_purge",
    partitions=lambda ctx: ["all"],
    run_partition=purge_finished,
    description="Delete webhook deliveries finished longer ago than webhook_retention_days, with their attempts",
)
