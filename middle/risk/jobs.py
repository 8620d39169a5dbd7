"""Batch jobs of the risk module: keeping the velocity table bounded."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.modules import JobSpec
from middle.risk.velocity import purge_events


def _partitions(ctx: Any) -> list[str]:
    return ["all"]


def _purge(ctx: Any) -> dict[str, int]:
    """Delete velocity events older than ``velocity_retention_days`` before the business date."""
    settings = ctx.tenant.module("risk").settings
    start_of_day = datetime.combine(ctx.business_date, time(0), tzinfo=ZoneInfo(ctx.tenant.timezone))
    older_than = start_of_day - timedelta(days=settings.velocity_retention_days)
    return {"velocity_events_purged": purge_events(ctx.uow.session, older_than=older_than)}


PURGE_VELOCITY_EVENTS = JobSpec(
    name="risk.purge_velocity_events",
    partitions=_partitions,
    run_partition=_purge,
    description="delete velocity events older than velocity_retention_days (no window sees them)",
)

JOBS = (PURGE_VELOCITY_EVENTS,)
