"""Benchmark: a 1,000,000-posting batch job on the Dask executor (2 workers) against in-process.

    .venv/bin/python tests/benchmarks/bench_compute_dask.py                # ledger, 1,000,000 postings
    .venv/bin/python tests/benchmarks/bench_compute_dask.py --mode rows --postings 200000
    .venv/bin/python -m pytest -o addopts="" tests/benchmarks/bench_compute_dask.py   # small, both modes

One job, ``bench.post``, on PostgreSQL for two tenants: one runs it with
:class:`InProcessExecutor`, the other with :class:`DaskExecutor` on a ``LocalCluster`` of
``--workers`` worker processes (one thread each). The postings are split over ``--rounds``
business dates, and the two executors take turns going first, so that a change of load on a
shared machine weighs on both alike. Each of its ``--partitions`` partitions writes its
share of the postings and is marked done in the same transaction, as in production. The script
prints both rates (postings per second, wall clock from each run's start to its completion) and
their ratio, and checks both executors wrote the same postings.

Modes:

* ``ledger``: real ledger postings of two-posting entries (debit the hot
  ``bank:interest_expense``, credit one of the partition's customer accounts, which are
  constrained: their balance rows are locked and updated), posted with ``Ledger.post_batch``
  (``Ledger.post`` one by one if the ledger has no batch API). 1,000,000 postings are 500,000
  entries.
* ``rows``: the same posting rows (entry id, account, side, amount, currency) written with
  SQLAlchemy Core bulk inserts into a benchmark table, i.e. the compute layer's own overhead
  plus the database's insert rate, without the ledger's checks.

The database is a fresh one on ``SCENEOS_TEST_POSTGRES_URL`` (default: the local server), dropped
at the end; ``--url`` uses an existing empty database instead. Workers are warmed up (the
application built in each) before the clock starts, as a long-lived production cluster would be.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, insert, select

from core.clock import SimulatedClock
from core.hookspecs import hookimpl
from core.modules import JobSpec, ModuleSpec
from core.settings import ModuleSettings
from core.testing.harness import make_app
from core.testing.postgres import temporary_database
from infra.compute import AppBlueprint, DaskExecutor, InProcessExecutor, JobRunner
from infra.compute.executors import worker_app

DAY = date(2026, 3, 31)
EXPENSE = "bank:interest_expense"
ACCOUNTS_PER_PARTITION = 10
INSERT_CHUNK = 10_000

# The rows mode's table: a benchmark's own, outside the application's models and migrations.
bench_metadata = MetaData()
bench_postings = Table(
    "bench_compute_postings", bench_metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("entry_id", String(128), nullable=False),
    Column("account", String(128), nullable=False),
    Column("side", String(6), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
)


class BenchSettings(ModuleSettings):
    mode: str = Field(default="ledger", pattern="^(ledger|rows)$")
    entries: int = Field(default=500_000, ge=1)
    partitions: int = Field(default=100, ge=1, le=100_000)


def customer(partition: int, number: int) -> str:
    return f"cust:{partition:05d}:{number:02d}"


def plan(ctx: Any) -> list[str]:
    return [f"{index:05d}" for index in range(ctx.module("bench").settings.partitions)]


def entries_of(settings: BenchSettings, partition: int) -> range:
    per, extra = divmod(settings.entries, settings.partitions)
    start = partition * per + min(partition, extra)
    return range(start, start + per + (1 if partition < extra else 0))


def post_partition(ctx: Any) -> dict[str, int]:
    settings = ctx.module("bench").settings
    partition = int(ctx.key)
    numbers = entries_of(settings, partition)
    amount = 0
    if settings.mode == "ledger":
        from infra.ledger import EntryDraft, Ledger, Posting

        ledger = Ledger(ctx.session, ctx.clock)
        drafts = []
        for number in numbers:
            minor = 100 + number % 900
            drafts.append(EntryDraft(ctx.idempotency_key(number), [
                Posting.debit(EXPENSE, minor),
                Posting.credit(customer(partition, number % ACCOUNTS_PER_PARTITION), minor),
            ]))
            amount += minor
        # The ledger's set-based batch API where it has one (the way a batch job posts), else one
        # entry at a time.
        post_batch = getattr(ledger, "post_batch", None)
        if post_batch is not None:
            failed = [outcome for outcome in post_batch(drafts) if isinstance(outcome, Exception)]
            if failed:
                raise failed[0]
        else:
            for draft in drafts:
                ledger.post(draft)
    else:
        rows: list[dict[str, Any]] = []
        for number in numbers:
            minor = 100 + number % 900
            entry_id = ctx.idempotency_key(number)
            rows.append({"tenant_id": ctx.tenant.id, "entry_id": entry_id, "account": EXPENSE, "side": "debit",
                         "amount_minor": minor, "currency": "CNY"})
            rows.append({"tenant_id": ctx.tenant.id, "entry_id": entry_id, "side": "credit", "amount_minor": minor,
                         "account": customer(partition, number % ACCOUNTS_PER_PARTITION), "currency": "CNY"})
            amount += minor
            if len(rows) >= INSERT_CHUNK:
                ctx.session.execute(insert(bench_postings), rows)
                rows = []
        if rows:
            ctx.session.execute(insert(bench_postings), rows)
    return {"entries": len(numbers), "postings": 2 * len(numbers), "amount_minor": amount}


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [ModuleSpec(name="bench", layer="product", description="compute benchmark", settings_model=BenchSettings,
                       jobs=(JobSpec("bench.post", partitions=plan, run_partition=post_partition),))]


def prepare(app: Any, tenant_id: str, settings: BenchSettings) -> None:
    if settings.mode == "rows":
        bench_metadata.create_all(app.engine)
        return
    from infra.ledger import Ledger

    with app.tenant(tenant_id).unit_of_work() as uow:
        ledger = Ledger(uow.session, uow.clock)
        ledger.open_account(EXPENSE, "CNY", "expense")
        for partition in range(settings.partitions):
            for number in range(ACCOUNTS_PER_PARTITION):
                ledger.open_account(customer(partition, number), "CNY", "liability", "customer",
                                    f"{partition}:{number}", "debits_must_not_exceed_credits")


def postings_written(app: Any, tenant_id: str, mode: str) -> tuple[int, int]:
    """(postings, sum of amounts) of one tenant, counted in the database."""
    with app.tenant(tenant_id).unit_of_work() as uow:
        if mode == "ledger":
            from infra.ledger import LedgerPosting

            query = select(func.count(), func.coalesce(func.sum(LedgerPosting.amount_minor), 0))
        else:
            query = select(func.count(), func.coalesce(func.sum(bench_postings.c.amount_minor), 0)).where(
                bench_postings.c.tenant_id == tenant_id)
        count, total = uow.session.execute(query).one()
    return int(count), int(total)


def _spin(iterations: int) -> float:
    started = time.perf_counter()
    total = 0
    for number in range(iterations):
        total += number
    return time.perf_counter() - started


def parallel_capacity(workers: int, iterations: int = 5_000_000) -> float:
    """How many CPU-bound processes this machine runs at full speed now (1.0 .. ``workers``).

    The ceiling of any speed-up from ``workers`` processes: on a 2-vCPU machine shared with other
    work it can be well under 2, and no executor can beat it.
    """
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_spin, [1_000] * workers))  # start the processes
        solo = min(pool.submit(_spin, iterations).result() for _ in range(3))
        together = min(max(pool.map(_spin, [iterations] * workers)) for _ in range(2))
    return min(float(workers), workers * solo / together)


def run_benchmark(*, postings: int, partitions: int, workers: int, mode: str, rounds: int = 2,
                  url: str | None = None, quiet: bool = False) -> dict[str, float]:
    """Both executors over ``rounds`` business dates, alternating which goes first, so that load
    changing on a shared machine during the benchmark weighs on both alike. Returns the rates."""
    entries_per_round = postings // 2 // rounds
    total_postings = 2 * entries_per_round * rounds
    say = (lambda *_: None) if quiet else print
    settings = {"mode": mode, "entries": entries_per_round, "partitions": partitions}
    config = {"tenants": {
        tenant_id: {"name": tenant_id, "currency": "CNY", "modules": {"bench": dict(settings)}}
        for tenant_id in ("bench_inprocess", "bench_dask")
    }}
    this_module = sys.modules[__name__]
    seconds = {"inprocess": 0.0, "dask": 0.0}
    with temporary_database() if url is None else nullcontext(url) as database_url:
        app = make_app(config, database_url=database_url, plugins={"bench_compute": this_module},
                       clock=SimulatedClock(datetime.fromisoformat("2026-03-31T16:00:00+00:00")))
        try:
            bench_settings = BenchSettings(**settings)
            for tenant_id in app.tenants:
                prepare(app, tenant_id, bench_settings)
            say(f"{mode}: {total_postings:,} postings per executor ({total_postings // 2:,} entries), {rounds} runs "
                f"of {partitions} partitions, PostgreSQL on this machine, {os.cpu_count()} CPUs")
            if not quiet:
                say(f"parallel capacity now: {parallel_capacity(workers):.2f} of {workers} processes at full speed "
                    "(the ceiling of the ratio)")
            runner = JobRunner(app)
            from distributed import Client, LocalCluster

            with (
                LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                             dashboard_address=None) as cluster,
                Client(cluster) as client,
            ):
                blueprint = AppBlueprint.of(app)
                client.run(lambda: bool(worker_app(blueprint)))  # warm-up: build the app in each worker
                executors = {"inprocess": ("bench_inprocess", InProcessExecutor()),
                             "dask": ("bench_dask", DaskExecutor(client=client))}
                for round_number in range(rounds):
                    day = DAY + timedelta(days=round_number)
                    order = ["inprocess", "dask"] if round_number % 2 == 0 else ["dask", "inprocess"]
                    summaries = []
                    for name in order:
                        tenant_id, executor = executors[name]
                        started = time.perf_counter()
                        report = runner.run(tenant_id, "bench.post", day, executor=executor)
                        seconds[name] += time.perf_counter() - started
                        assert report.completed, report.message
                        summaries.append(report.summary)
                    assert summaries[0] == summaries[1], summaries

            written = {tenant_id: postings_written(app, tenant_id, mode) for tenant_id in app.tenants}
            assert written["bench_inprocess"] == written["bench_dask"], written
            assert written["bench_dask"][0] == total_postings, written
            if not quiet:
                say(f"parallel capacity after: {parallel_capacity(workers):.2f} of {workers}")
        finally:
            app.close()
    local_rate, dask_rate = total_postings / seconds["inprocess"], total_postings / seconds["dask"]
    say(f"in-process executor:        {local_rate:12,.0f} postings/s  ({seconds['inprocess']:.1f} s)")
    say(f"Dask executor, {workers} workers:   {dask_rate:12,.0f} postings/s  ({seconds['dask']:.1f} s)")
    say(f"ratio Dask / in-process:    {dask_rate / local_rate:12.2f}")
    return {"inprocess_postings_per_s": local_rate, "dask_postings_per_s": dask_rate,
            "ratio": dask_rate / local_rate}


def test_bench_compute_dask_small() -> None:
    """A small run of both modes (pytest): the benchmark works; figures come from the script."""
    for mode in ("rows", "ledger"):
        figures = run_benchmark(postings=2_000 if mode == "ledger" else 20_000, partitions=8, workers=2, mode=mode,
                                quiet=True)
        assert figures["ratio"] > 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=1_000_000, help="postings in total (two per entry)")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("ledger", "rows"), default="ledger")
    parser.add_argument("--rounds", type=int, default=2, help="business dates; executors alternate going first")
    parser.add_argument("--url", help="an existing empty PostgreSQL database (default: a temporary one)")
    args = parser.parse_args(argv)
    run_benchmark(postings=args.postings, partitions=args.partitions, workers=args.workers, mode=args.mode,
                  rounds=args.rounds, url=args.url)


if __name__ == "__main__":
    # Dask workers import the job by module name: run it as ``bench_compute_dask``, not ``__main__``
    # (this file's directory is on sys.path, and spawned workers inherit it).
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_compute_dask

    bench_compute_dask.main()
