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
from sqlalchemy import delete, select

from core.clock import retained_from
from core.modules import JobSpec
from infra.outbox.models import OutboxDelivery, OutboxEvent

log = structlog.get_logger("sceneos.outbox")


def purge_delivered(ctx: Any) -> dict[str, int]:
    """One run's work (one partition): see the module docstring."""
    days = ctx.module("outbox").settings.retention_days
    if not days:
        return {"events_purged": 0}
    tenant = ctx.uow.tenant
    kept_from = retained_from(tenant.timezone, ctx.business_date, days)
    session = ctx.uow.session
    old = (
        OutboxEvent.tenant_id == tenant.id,
        OutboxEvent.delivered_at.is_not(None),
        OutboxEvent.occurred_at < kept_from,
    )
    session.execute(
        delete(OutboxDelivery)
        .where(OutboxDelivery.tenant_id == tenant.id, OutboxDelivery.event_id.in_(select(OutboxEvent.id).where(*old)))
        .execution_options(synchronize_session=False)
    )
    purged = session.execute(
        delete(OutboxEvent).where(*old).execution_options(synchronize_session=False)
    ).rowcount
    if purged:
        log.info("delivered events purged", events=purged, occurred_before=kept_from.isoformat())
    return {"events_purged": int(purged or 0)}


PURGE = JobSpec(
    name="outbox.purge",
    partitions=lambda ctx: ["all"],
    run_partition=purge_delivered,
    description="Delete events delivered longer ago than the outbox's retention_days, with their receipts",
)
