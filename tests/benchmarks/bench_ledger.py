"""Ledger benchmarks, each printing a ratio against a baseline measured in the same run.

    .venv/bin/python tests/benchmarks/bench_ledger.py                 # both, default sizes
    .venv/bin/python tests/benchmarks/bench_ledger.py --only postings --entries 20000
    .venv/bin/python tests/benchmarks/bench_ledger.py --only concurrent --seconds 15

1. **Postings per second** on SQLite (temp file) and PostgreSQL (fresh database): two-posting
   entries (a constrained customer wallet and the unconstrained hot settlement account),
   ``--batch`` entries per unit of work, posted with ``Ledger.post_batch`` (with ``--batch 1``,
   the API path, ``Ledger.post``), against a baseline of raw SQLAlchemy Core inserts of *the same
   rows* (the ledger's own entries and postings, read back and inserted again into an empty
   migrated database, same batch size, same durability settings). Target: >= 0.5.
2. **Concurrent transfers on PostgreSQL**: ``--workers`` processes (default 8) post transfers for
   ``--seconds``, each from a random constrained customer wallet to the one hot bank account,
   one transfer per unit of work; against ``pgbench`` TPC-B (``-c 8 -j 8``) on the same server in
   the same script. Target: >= 0.5 of pgbench's transactions per second. ``--rounds`` (default 3)
   pairs of runs, side by side, and their median ratio: this machine's speed drifts by a quarter
   from one minute to the next, which one pair cannot tell from a change in the code.
3. **A hot account's balance read** (``--only reads``), on SQLite and PostgreSQL: ``--history``
   entries on the hot settlement account, then ``Ledger.balance`` of it, before the first rollup
   (every posting summed) and after ``Ledger.roll_up`` with 1,000 entries posted since (the
   rollup plus the postings after the mark), against a baseline of reading one balance row by
   its primary key with SQLAlchemy Core in the same run (what a stored balance costs). Target:
   the rolled-up read stays within a small constant of the row read, whatever the history.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select
from sqlalchemy.engine import make_url

from core.db import Base, create_db_engine
from core.testing.harness import make_app, tenant_config
from core.testing.postgres import server_url, temporary_database
from infra.ledger import LEDGER_TABLES, EntryDraft, EntryResult, Ledger, LedgerAccount, LedgerBalance, Posting

HOT = "bank:settlement"
WALLETS = 1000
FUNDING_MINOR = 10**12


def wallet(i: int) -> str:
    return f"cust:{i}:wallet"


def chart() -> dict[str, Any]:
    accounts = [{"code": HOT, "type": "asset"}] + [
        {"code": wallet(i), "type": "liability", "owner_type": "customer", "owner_id": str(i),
         "constraint": "debits_must_not_exceed_credits"} for i in range(WALLETS)
    ]
    return {"accounts": accounts}


def build(url: str, *, start: bool = True) -> Any:
    return make_app({"database": {"url": url}, "tenants": {"bank": tenant_config(modules={"ledger": chart()})}},
                    database_url=url, start=start)


def fund(app: Any) -> None:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = Ledger(uow.session, tenant.clock)
        for i in range(WALLETS):
            ledger.post(EntryDraft(f"fund-{i}", [Posting.debit(HOT, FUNDING_MINOR), Posting.credit(wallet(i), FUNDING_MINOR)]))


def payment(n: int, prefix: str) -> EntryDraft:
    i = n % WALLETS
    amount = 100 + n % 997
    return EntryDraft(f"{prefix}-{n}", [Posting.debit(wallet(i), amount), Posting.credit(HOT, amount)])


# --- 1. postings per second --------------------------------------------------------------------


def ledger_rate(app: Any, entries: int, batch: int) -> float:
    """Batch jobs post through ``Ledger.post_batch`` (set-based); one entry per unit of work, the API
    path, through ``Ledger.post``."""
    tenant = app.tenant("bank")
    started = time.perf_counter()
    for first in range(0, entries, batch):
        with tenant.unit_of_work() as uow:
            ledger = Ledger(uow.session, tenant.clock)
            if batch == 1:
                ledger.post(payment(first, "pay"))
                continue
            outcomes = ledger.post_batch([payment(n, "pay") for n in range(first, min(first + batch, entries))])
            failed = [o for o in outcomes if not isinstance(o, EntryResult)]
            if failed:
                raise SystemExit(f"post_batch refused entries: {failed[:3]}")
    return entries * 2 / (time.perf_counter() - started)


def written_rows(app: Any) -> dict[str, list[dict[str, Any]]]:
    """Every ledger row the run wrote (setup included), to replay as the baseline."""
    rows: dict[str, list[dict[str, Any]]] = {}
    with app.engine.connect() as connection:
        for name in LEDGER_TABLES:
            table = Base.metadata.tables[name]
            rows[name] = [dict(r._mapping) for r in connection.execute(select(table))]
    return rows


def core_insert_rate(url: str, rows: dict[str, list[dict[str, Any]]], entries: int, batch: int) -> float:
    """Insert the payments' rows (entries and postings, in the ledger's batch size) with Core.

    On SQLite through the kernel's engine, so the baseline commits with the same durability as the
    ledger (WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``) rather than a rollback journal with
    ``synchronous=FULL`` (several file operations per commit: a slower and very noisy baseline).
    On PostgreSQL a plain engine: the same server settings, and no pool pre-ping round trip."""
    engine = create_db_engine(url) if url.startswith("sqlite") else create_engine(url)
    entries_table, postings_table = Base.metadata.tables["ledger_entries"], Base.metadata.tables["ledger_postings"]
    pay_entries = [r for r in rows["ledger_entries"] if str(r["entry_id"]).startswith("pay-")]
    ids = {r["id"] for r in pay_entries}
    pay_postings = [r for r in rows["ledger_postings"] if r["entry_pk"] in ids]
    # Setup rows (accounts, funding) go in untimed: the baseline times the same work as the ledger.
    with engine.begin() as connection:
        for name in ("ledger_accounts", "ledger_balances"):
            if rows[name]:
                connection.execute(insert(Base.metadata.tables[name]), rows[name])
        other = [r for r in rows["ledger_entries"] if r["id"] not in ids]
        if other:
            connection.execute(insert(entries_table), other)
            connection.execute(insert(postings_table), [r for r in rows["ledger_postings"] if r["entry_pk"] not in ids])
    postings_by_entry: dict[Any, list[dict[str, Any]]] = {}
    for r in pay_postings:
        postings_by_entry.setdefault(r["entry_pk"], []).append(r)
    pay_entries.sort(key=lambda r: r["id"])
    started = time.perf_counter()
    for first in range(0, len(pay_entries), batch):
        chunk = pay_entries[first:first + batch]
        with engine.begin() as connection:
            connection.execute(insert(entries_table), chunk)
            connection.execute(insert(postings_table), [p for e in chunk for p in postings_by_entry[e["id"]]])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return entries * 2 / elapsed


def bench_postings(entries: int, batch: int, backends: list[str]) -> list[str]:
    lines = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                url, baseline_url = f"sqlite:///{tmp}/ledger.db", f"sqlite:///{tmp}/baseline.db"
                contexts: list[Any] = []
            else:
                contexts = [temporary_database(), temporary_database()]
                url, baseline_url = (c.__enter__() for c in contexts)
            try:
                app = build(url)
                fund(app)
                rate = ledger_rate(app, entries, batch)
                rows = written_rows(app)
                app.close()
                baseline_app = build(baseline_url, start=False)  # migrated, empty
                baseline_app.close()
                baseline = core_insert_rate(baseline_url, rows, entries, batch)
            finally:
                for context in contexts:
                    context.__exit__(None, None, None)
        line = (f"postings/s {backend:8} batch {batch:4}: ledger {rate:9.0f}  raw Core inserts {baseline:9.0f}  "
                f"ratio {rate / baseline:.2f} (target >= 0.5)")
        print(line, flush=True)
        lines.append(line)
    return lines


# --- 2. concurrent transfers with a hot account on PostgreSQL ----------------------------------


def _transfer_worker(url: str, seconds: float, seed: int, counts: Any, index: int, ready: Any, go: Any) -> None:
    app = build(url, start=False)
    tenant = app.tenant("bank")
    rng = random.Random(seed)
    ready.release()
    go.wait()
    done = 0
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        i = rng.randrange(WALLETS)
        amount = rng.randrange(100, 10_000)
        with tenant.unit_of_work() as uow:
            Ledger(uow.session, tenant.clock).post(
                EntryDraft(f"t{seed}-{n}", [Posting.debit(wallet(i), amount), Posting.credit(HOT, amount)])
            )
        done += 1
    counts[index] = done
    app.close()


def ledger_tps(url: str, workers: int, seconds: float) -> float:
    app = build(url)
    fund(app)
    app.close()
    ctx = multiprocessing.get_context("spawn")
    counts = ctx.Array("l", workers)
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_transfer_worker, args=(url, seconds, 1000 + k, counts, k, ready, go)) for k in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    go.set()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"transfer worker failed with exit code {p.exitcode}")
    total = sum(counts[:])
    check = build(url, start=False)
    tenant = check.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = Ledger(uow.session, tenant.clock)
        assert ledger.trial_balance("CNY").balanced
        assert ledger.verify() == [], "ledger audit failed after the concurrent run"
    check.close()
    return total / seconds


def pgbench_tps(url: str, workers: int, seconds: float) -> float:
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not installed (Debian: postgresql-contrib / postgresql client)")
    parsed = make_url(url)
    args = ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    env = {"PGPASSWORD": parsed.password or "", "PATH": "/usr/bin:/bin"}
    subprocess.run(["pgbench", "-i", "-q", "-s", str(workers), *args, parsed.database], check=True, env=env,
                   capture_output=True)
    result = subprocess.run(["pgbench", "-n", "-c", str(workers), "-j", str(workers), "-T", str(int(seconds)),
                             *args, parsed.database], check=True, env=env, capture_output=True, text=True)
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def bench_concurrent(workers: int, seconds: float, rounds: int = 1) -> str:
    """``rounds`` pairs of runs, the ledger's then pgbench's, each in fresh databases: on a shared
    machine whose speed drifts, pairs measured side by side and their median ratio say more than
    one pair (each pair's ratio is printed too)."""
    ratios: list[float] = []
    line = ""
    for round_no in range(1, rounds + 1):
        with temporary_database() as ledger_url, temporary_database() as pgbench_url:
            tps = ledger_tps(ledger_url, workers, seconds)
            baseline = pgbench_tps(pgbench_url, workers, seconds)
        ratios.append(tps / baseline)
        label = f" round {round_no}/{rounds}" if rounds > 1 else ""
        line = (f"concurrent transfers, PostgreSQL, {workers} workers, hot account{label}: ledger {tps:7.0f} tps  "
                f"pgbench TPC-B {baseline:7.0f} tps  ratio {tps / baseline:.2f} (target >= 0.5)")
        print(line, flush=True)
    if rounds > 1:
        line = (f"concurrent transfers, PostgreSQL, {workers} workers, hot account: median ratio of {rounds} rounds "
                f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.5)")
        print(line, flush=True)
    return line


# --- 3. a hot account's balance read, before and after a rollup -------------------------------


def _read_time(read: Any, repeat: int = 50) -> float:
    read()
    started = time.perf_counter()
    for _ in range(repeat):
        read()
    return (time.perf_counter() - started) / repeat


@contextlib.contextmanager
def _database(backend: str, tmp: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/ledger.db"
    else:
        with temporary_database() as url:
            yield url


def _read_figures(url: str, history: int) -> tuple[float, float, float]:
    """Seconds per read: the hot account's balance summed, then rolled up, and one balance row."""
    app = build(url)
    fund(app)
    tenant = app.tenant("bank")
    for first in range(0, history, 1_000):
        with tenant.unit_of_work() as uow:
            Ledger(uow.session, tenant.clock).post_batch(
                [payment(n, "pay") for n in range(first, min(first + 1_000, history))])
    accounts, balances = LedgerAccount.__table__, LedgerBalance.__table__
    with tenant.unit_of_work() as uow:
        wallet_id = uow.session.connection().execute(
            select(accounts.c.id).where(accounts.c.tenant_id == "bank", accounts.c.code == wallet(0))).scalar_one()
    row_read = select(balances).where(balances.c.account_id == wallet_id)

    def read_hot() -> None:
        with tenant.unit_of_work() as uow:
            Ledger(uow.session, tenant.clock).balance(HOT)

    def read_row() -> None:  # the baseline: one balance row by primary key, SQLAlchemy Core
        with tenant.unit_of_work() as uow:
            uow.session.connection().execute(row_read).all()

    summed = _read_time(read_hot)
    with tenant.unit_of_work() as uow:
        Ledger(uow.session, tenant.clock).roll_up()
    with tenant.unit_of_work() as uow:
        Ledger(uow.session, tenant.clock).post_batch([payment(n, "after") for n in range(1_000)])
    rolled = _read_time(read_hot)
    row = _read_time(read_row)
    app.close()
    return summed, rolled, row


def bench_reads(history: int, backends: list[str]) -> list[str]:
    lines = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp, _database(backend, tmp) as url:
            summed, rolled, row = _read_figures(url, history)
        line = (f"hot account balance read, {backend:8s}, {history + WALLETS:>9,} postings on it: summed "
                f"{summed * 1e3:8.2f} ms, rolled up (+1,000 since) {rolled * 1e3:6.2f} ms, balance row "
                f"{row * 1e3:5.2f} ms; ratio rolled up / row {rolled / row:5.1f}x (summed {summed / row:6.1f}x)")
        print(line, flush=True)
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["postings", "concurrent", "reads"])
    parser.add_argument("--history", type=int, default=200_000, help="reads: entries on the hot account")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="concurrent: pairs of runs (ledger, pgbench); the median ratio")
    args = parser.parse_args(argv)
    print(f"PostgreSQL server: {make_url(server_url()).render_as_string(hide_password=True)}", flush=True)
    if args.only in (None, "postings"):
        bench_postings(args.entries, args.batch, args.backends.split(","))
        bench_postings(max(args.entries // 10, 100), 1, args.backends.split(","))
    if args.only in (None, "concurrent"):
        bench_concurrent(args.workers, args.seconds, args.rounds)
    if args.only in (None, "reads"):
        bench_reads(args.history, args.backends.split(","))


def test_ledger_benchmarks_run() -> None:
    """A small run, so the benchmark stays runnable (``pytest -o addopts= tests/benchmarks``)."""
    assert "ratio" in bench_postings(200, 50, ["sqlite"])[0]
    assert "ratio" in bench_reads(2_000, ["sqlite"])[0]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[2]))
    main()
