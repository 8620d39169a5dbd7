"""Real jobs for the compute tests: a module that accrues interest through the ledger, and a bank
plugin that adds its own job and steps before/after the module's job.

Both are plain plugins (modules with hookimpls), importable by name (``compute_testjobs``), so
Dask workers can rebuild them and the CLI finds them through the fixture entry point in
``entry_points/``.

``interest.accrue`` posts, for every customer account ``cust:NNNN`` of its partition, one entry of
two postings: debit ``bank:interest_expense``, credit the customer, ``amount_minor = 100 + n``.
Its entry ids come from :meth:`PartitionContext.idempotency_key`, so even a replayed partition could
not post twice. ``pause_seconds`` sleeps inside each partition's transaction after posting (the
kill test lands its SIGKILL while postings are written but not committed).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from pydantic import Field
from sqlalchemy import func, select

from core.hookspecs import hookimpl
from core.modules import JobSpec, ModuleSpec
from core.settings import ModuleSettings
from infra.ledger import EntryDraft, Ledger, LedgerEntry, LedgerPosting, Posting

EXPENSE = "bank:interest_expense"
# gc.get_freeze_count() as each in-process partition of interest.accrue saw it (core/heap.py).
FREEZE_COUNTS_SEEN: list[int] = []
BUDGET = "bank:interest_budget"
EQUITY = "bank:equity"


def customer_code(number: int) -> str:
    return f"cust:{number:04d}"


def interest_minor(number: int) -> int:
    return 100 + number


class InterestSettings(ModuleSettings):
    customers: int = Field(default=12, ge=0, le=100_000)
    per_partition: int = Field(default=4, ge=1, le=100_000)
    pause_seconds: float = Field(default=0.0, ge=0, le=10)


def plan_accrual(ctx: Any) -> list[str]:
    settings = ctx.module("interest").settings
    return [f"{start:04d}-{min(start + settings.per_partition, settings.customers) - 1:04d}"
            for start in range(0, settings.customers, settings.per_partition)]


def accrue_partition(ctx: Any) -> dict[str, int]:
    settings = ctx.module("interest").settings
    FREEZE_COUNTS_SEEN.append(gc.get_freeze_count())
    first, last = (int(part) for part in ctx.key.split("-"))
    ledger = Ledger(ctx.session, ctx.clock)
    amount = 0
    for number in range(first, last + 1):
        ledger.post(EntryDraft(
            entry_id=ctx.idempotency_key(number),
            postings=[Posting.debit(EXPENSE, interest_minor(number)),
                      Posting.credit(customer_code(number), interest_minor(number))],
            description="interest accrual",
        ))
        amount += interest_minor(number)
    if settings.pause_seconds:
        ctx.session.flush()
        time.sleep(settings.pause_seconds)
    return {"entries": last - first + 1, "amount_minor": amount}


ACCRUE = JobSpec(name="interest.accrue", partitions=plan_accrual, run_partition=accrue_partition,
                 description="Accrue a day's interest on customer accounts (test job)")
EMPTY = JobSpec(name="interest.nothing", partitions=lambda ctx: [], run_partition=lambda ctx: None,
                description="A job with no partitions")


def refuse_with_personal_data(ctx: Any) -> None:
    raise ValueError("customer 13800138000 (ID 11010519491231002X) refused:\n  second line")


def crash_the_process(ctx: Any) -> None:
    import os

    os._exit(1)  # a worker process dying mid-partition (OOM kill, lost node); never run in-process


CRASH = JobSpec(name="interest.crash", partitions=lambda ctx: ["only"], run_partition=crash_the_process)
LEAKY = JobSpec(name="interest.leaky_error", partitions=lambda ctx: ["only"], run_partition=refuse_with_personal_data)
DUPLICATE_KEYS = JobSpec(name="interest.duplicate_keys", partitions=lambda ctx: ["a", "b", "a"],
                         run_partition=lambda ctx: None)


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [ModuleSpec(name="interest", layer="product", description="Interest accrual (compute test module)",
                       settings_model=InterestSettings, jobs=(ACCRUE, EMPTY, DUPLICATE_KEYS, LEAKY, CRASH))]


def open_chart(app: Any, tenant_id: str, customers: int, *, skip: tuple[int, ...] = (), budget: bool = True) -> None:
    """The bank's accounts and ``customers`` customer accounts (but those in ``skip``)."""
    with app.tenant(tenant_id).unit_of_work() as uow:
        ledger = Ledger(uow.session, uow.clock)
        ledger.open_account(EXPENSE, "CNY", "expense")
        ledger.open_account(EQUITY, "CNY", "equity")
        if budget:
            ledger.open_account(BUDGET, "CNY", "expense")
        for number in range(customers):
            if number not in skip:
                ledger.open_account(customer_code(number), "CNY", "liability", "customer", str(number),
                                    "debits_must_not_exceed_credits")


def ledger_state(app: Any, tenant_id: str) -> dict[str, Any]:
    """What a run leaves in the ledger: entry ids, posting count, every balance, the trial balance."""
    with app.tenant(tenant_id).unit_of_work() as uow:
        ledger = Ledger(uow.session, uow.clock)
        entry_ids = sorted(uow.session.scalars(select(LedgerEntry.entry_id)))
        postings = uow.session.scalar(select(func.count()).select_from(LedgerPosting))
        balances = {code: (b.debits_posted_minor, b.credits_posted_minor) for code, b in ledger.balances().items()}
        trial = ledger.trial_balance("CNY")
    return {"entry_ids": entry_ids, "postings": postings, "balances": balances,
            "trial_balanced": trial.balanced, "debits_minor": trial.debits_minor}


def expected_amount(customers: int) -> int:
    return sum(interest_minor(number) for number in range(customers))
