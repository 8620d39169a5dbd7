"""Batch jobs of the ledger, run by the compute layer (``sceneos jobs run ledger.expire_pending``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.modules import JobSpec


def _one_partition(_ctx: Any) -> Sequence[str]:
    # Expiry is one set-based statement per tenant; splitting it would only add lock traffic.
    return ["all"]


def _expire(ctx: Any) -> Mapping[str, Any]:
    ledger = ctx.module("ledger").container.ledger(session=ctx.session)
    expired = ledger.expire_pending()
    return {"expired": len(expired)}


EXPIRE_PENDING = JobSpec(
    name="ledger.expire_pending",
    partitions=_one_partition,
    run_partition=_expire,
    description="Release holds (pending entries) whose expiry time has passed on the bank's clock",
)
