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


def _roll_up(ctx: Any) -> Mapping[str, Any]:
    ledger = ctx.module("ledger").container.ledger(session=ctx.session)
    wait = ctx.module("ledger").settings.rollup_wait_seconds
    rollup = ledger.roll_up(wait_seconds=wait)
    return {"through_posting_id": rollup.through_posting_id, "accounts": rollup.accounts}


ROLLUP = JobSpec(
    name="ledger.rollup",
    partitions=_one_partition,
    run_partition=_roll_up,
    description="Roll the postings made since the last rollup into each account's sums, so that balance "
    "reads stay as fast as the postings since then (run it daily, or more often)",
)
