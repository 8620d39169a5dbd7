"""Retention of delivered events: the compute job ``outbox.purge``.

Every unit of work that changes something writes its events to ``outbox_events`` (and a receipt
per subscriber to ``outbox_deliveries``); once delivered they are read by nobody but an operator
looking back. With the outbox's ``retention_days`` set, ``outbox.purge`` for business date D deletes
the events delivered to every subscriber (or given up on) that occurred before the first instant of
day D - retention_days in the bank's time zone, with their receipts. An event still being retried
is never deleted, whatever its age. With ``retention_days`` 0 (the default) nothing is.
"""

from __future__ import annotations

from typing import Any

import structlog

from core.clock import retained_from
from core.modules import JobSpec
from core.statements import delete_with_children
from infra.outbox.models import OutboxDelivery, OutboxEvent

log = structlog.get_logger("sceneos.outbox")


def purge_delivered(ctx: Any) -> dict[str, int]:
    """One run's work (one partition): see the module docstring."""
    days = ctx.module("outbox").settings.retention_days
    if not days:
        return {"events_purged": 0}
    tenant = ctx.uow.tenant
    kept_from = retained_from(tenant.timezone, ctx.business_date, days)
    delivered = (OutboxEvent.delivered_at.is_not(None), OutboxEvent.occurred_at < kept_from)
    purged = delete_with_children(ctx.uow, OutboxEvent, delivered, OutboxDelivery, OutboxDelivery.event_id)
    if purged:
        log.info("delivered events purged", events=purged, occurred_before=kept_from.isoformat())
    return {"events_purged": purged}


PURGE = JobSpec(
    name="outbox.purge",
    partitions=lambda ctx: ["all"],
    run_partition=purge_delivered,
    description="Delete events delivered longer ago than the outbox's retention_days, with their receipts",
)
