"""The compute job ``payouts.batch``: each currency's pending instructions into one pain.001."""

from __future__ import annotations

from typing import Any

from core.modules import JobSpec
from infra.payouts.service import Payouts, currencies_pending


def _batch_currency(ctx: Any) -> dict[str, int]:
    batch = Payouts.of(ctx.uow).batch(ctx.business_date, ctx.key)
    return {"batches": int(batch is not None), "payouts_sent": batch.count if batch else 0}


BATCH = JobSpec(
    name="payouts.batch",
    partitions=lambda ctx: currencies_pending(ctx.uow),
    run_partition=_batch_currency,
    description="Put each currency's pending payouts into one ISO 20022 pain.001 file",
)
