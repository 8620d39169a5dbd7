"""A bank's plugin for the compute tests: its own job, and steps before/after the module's job.

Enabled for ``bank_a`` only. ``CALLS`` records every step call in this process (the runner calls
steps in its own process, never in Dask workers), so a test can tell which tenant got which call.
"""

from __future__ import annotations

from typing import Any

from compute_testjobs import BUDGET, EQUITY, EXPENSE

from core.hookspecs import hookimpl
from core.modules import JobSpec
from infra.ledger import EntryDraft, Ledger, Posting

BUDGET_MINOR = 1_000_000
CALLS: list[tuple[Any, ...]] = []


def close_interest(ctx: Any) -> dict[str, int]:
    """Close the day's interest expense into equity (one entry)."""
    ledger = Ledger(ctx.session, ctx.clock)
    amount = ledger.balance(EXPENSE).net_posted_minor
    if amount <= 0:
        return {"entries": 0}
    ledger.post(EntryDraft(ctx.idempotency_key("close"),
                           [Posting.debit(EQUITY, amount), Posting.credit(EXPENSE, amount)]))
    return {"entries": 1, "amount_minor": amount}


SWEEP = JobSpec(name="testbank.close_interest", partitions=lambda ctx: ["all"], run_partition=close_interest,
                description="Close interest expense into equity (a bank's own job)")


@hookimpl
def sceneos_compute_register_jobs(tenant: Any) -> list[JobSpec]:
    return [SWEEP]


@hookimpl
def sceneos_compute_before_job(tenant: Any, job_name: str, business_date: Any, uow: Any) -> None:
    CALLS.append((tenant.id, "before", job_name))
    if job_name == "interest.accrue":
        # Reserve the day's interest budget; fails (UnknownAccount) until the bank opens BUDGET.
        Ledger(uow.session, uow.clock).post(EntryDraft(
            f"budget:{business_date.isoformat()}",
            [Posting.debit(BUDGET, BUDGET_MINOR), Posting.credit(EQUITY, BUDGET_MINOR)],
        ))


@hookimpl
def sceneos_compute_after_job(tenant: Any, job_name: str, business_date: Any, summary: dict, uow: Any) -> None:
    CALLS.append((tenant.id, "after", job_name, dict(summary)))
    if job_name == "interest.accrue":
        used = summary["amount_minor"]
        Ledger(uow.session, uow.clock).post(EntryDraft(
            f"budget-used:{business_date.isoformat()}",
            [Posting.debit(EQUITY, used), Posting.credit(BUDGET, used)],
        ))
