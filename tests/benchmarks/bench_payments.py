"""QR payments completed per second, end to end, on PostgreSQL, against pgbench in the same run.

    .venv/bin/python tests/benchmarks/bench_payments.py                  # 8 workers, 10 seconds
    .venv/bin/python tests/benchmarks/bench_payments.py --seconds 30 --workers 8

Each of ``--workers`` processes is a ticket window with its own cashier and open shift. For
``--seconds`` it completes QR payments the way the HTTP routes do, one unit of work per call:

1. the cashier creates the QR (``create_qr``, as ``POST .../shifts/{no}/qr``);
2. the payer's wallet resolves the scanned payload (``resolve``, as ``POST /v1/payments/qr/resolve``);
3. the wallet pays it from a random one of 1,000 funded customer wallets (``pay`` and the quote in
   the same unit of work, as ``POST /v1/payments/qr/pay``): a pending ledger entry on the payer,
   the merchant's settlement account and the bank's fee income (both hot), captured at once.

A payment counts when it has succeeded. Afterwards the script checks that the database holds
exactly that many succeeded payments, that the trial balance is balanced and the ledger audit is
clean, and that the merchant was credited the payments less their fees. Then ``pgbench`` TPC-B runs
with the same number of clients (``-c``/``-j``) for the same time on the same server, in a fresh
database. Target: QR payments/s >= 0.3 x pgbench TPC-B transactions/s.

``--without-outbox`` runs a second, diagnostic round with the outbox module switched off (each
event dispatched in process after commit, not stored): the difference is what the outbox's
durable delivery costs.

Two diagnostics say where the time goes. During each concurrent round the script samples
``pg_stat_activity`` and ``pg_locks`` of the benchmark's database every 20 ms and prints what the
backends were doing (waiting for their client, ``Client/ClientRead``; for a lock; for the WAL...) and
how many lock waits it saw. ``--cpu`` first times sales in one process with nothing else of the
benchmark running, and prints the client's CPU and the server backend's CPU (from ``/proc``) per
sale: on a machine whose cores are all busy, throughput is at most cores / (client + server CPU).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from core.testing.harness import make_app, tenant_config
from core.testing.postgres import server_url, temporary_database
from infra.ledger import EntryDraft, Ledger, Posting

try:
    from tests.benchmarks.bench_ledger import pgbench_tps
except ImportError:  # run as a script: this folder is sys.path[0]
    from bench_ledger import pgbench_tps  # type: ignore[no-redef]

HOT = "bank:settlement"
WALLETS = 1000
FUNDING_MINOR = 10**12
MERCHANT = "station1"
SETTLEMENT = "merchant:station1"
FEES = "bank:payments:fees"


def wallet(i: int) -> str:
    return f"cust:{i}:wallet"


def terminal(k: int) -> str:
    return f"win{k}"


def config(url: str, workers: int, outbox: bool = True) -> dict[str, Any]:
    chart = [{"code": HOT, "type": "asset"}] + [
        {"code": wallet(i), "type": "liability", "owner_type": "customer", "owner_id": str(i),
         "constraint": "debits_must_not_exceed_credits"} for i in range(WALLETS)]
    station = {"merchant_id": MERCHANT, "name": "Coach Station", "city": "Hangzhou", "mcc": "4131",
               "settlement_account": SETTLEMENT, "fee_rate": "0.006",
               "stores": [{"store_id": "hall", "name": "Ticket hall",
                           "terminals": [{"terminal_id": terminal(k), "label": f"Window {k}"} for k in range(workers)]}]}
    payments = {"merchants": [station], "pin_scrypt_n": 1024, "qr_ttl_seconds": 600}
    modules: dict[str, Any] = {"party": {}, "ledger": {"accounts": chart}, "payments": payments}
    if not outbox:  # diagnostic only: events dispatched in process after commit, not kept durably
        modules["outbox"] = {"enabled": False}
    return {"database": {"url": url}, "tenants": {"bank": tenant_config(modules=modules)}}


def build(url: str, workers: int, *, start: bool = True, outbox: bool = True) -> Any:
    return make_app(config(url, workers, outbox), database_url=url, start=start)


def set_up(url: str, workers: int, outbox: bool = True) -> list[str]:
    """Fund the wallets, add one cashier per window and open their shifts; the shift numbers."""
    from products.payments.service import OperatorDraft

    app = build(url, workers, outbox=outbox)
    tenant = app.tenant("bank")
    runtime = tenant.module("payments")
    with tenant.unit_of_work() as uow:
        ledger = Ledger(uow.session, tenant.clock)
        for i in range(WALLETS):
            ledger.post(EntryDraft(f"fund-{i}", [Posting.debit(HOT, FUNDING_MINOR), Posting.credit(wallet(i), FUNDING_MINOR)]))
    shift_nos = []
    for k in range(workers):
        with tenant.unit_of_work() as uow:
            service = runtime.container.service(uow=uow)
            service.add_operator(OperatorDraft(employee_no=f"C{k:03d}", merchant_id=MERCHANT, name=f"Cashier {k}",
                                               role="cashier", pin="1234"))
            check = service.verify_pin(f"C{k:03d}", "1234")
            shift_nos.append(service.sign_in(check.raise_if_failed(), terminal(k)).shift_no)
    app.close()
    return shift_nos


def sell(tenant: Any, runtime: Any, shift_no: str, rng: random.Random, tag: str) -> str:
    """One QR sale end to end, three units of work as the HTTP routes make them; its final status."""
    amount_minor = rng.randrange(100, 100_000)
    with tenant.unit_of_work() as uow:
        qr = runtime.container.service(uow=uow).create_qr(shift_no, amount_minor, f"B{tag}", f"qr-{tag}")
    assert qr.payload is not None
    with tenant.unit_of_work() as uow:
        quote = runtime.container.service(uow=uow).resolve(qr.payload)
    assert quote.amount_minor == amount_minor
    with tenant.unit_of_work() as uow:
        service = runtime.container.service(uow=uow)
        paid = service.pay(qr.payload, wallet(rng.randrange(WALLETS)), f"pay-{tag}")
        if paid.status == "succeeded":
            service.resolve(qr.payload)
    return paid.status


def _window_worker(url: str, workers: int, shift_no: str, seconds: float, index: int, counts: Any, ready: Any,
                   go: Any, outbox: bool) -> None:
    app = build(url, workers, start=False, outbox=outbox)
    tenant = app.tenant("bank")
    runtime = tenant.module("payments")
    rng = random.Random(7000 + index)
    ready.release()
    go.wait()
    done = n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n += 1
        status = sell(tenant, runtime, shift_no, rng, f"{index}-{n}")
        if status != "succeeded":
            raise SystemExit(f"payment {index}-{n} ended {status}")
        done += 1
    counts[index] = done
    app.close()


def check(url: str, workers: int, expected: int) -> None:
    from products.payments.models import Payment

    app = build(url, workers, start=False)
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = Ledger(uow.session, tenant.clock)
        succeeded, gross, fees = uow.session.execute(
            select(func.count(), func.coalesce(func.sum(Payment.amount_minor), 0),
                   func.coalesce(func.sum(Payment.fee_minor), 0)).where(Payment.status == "succeeded")).one()
        assert succeeded == expected, f"{succeeded} succeeded payments in the database, {expected} counted"
        balances = ledger.balances([SETTLEMENT, FEES])
        assert balances[SETTLEMENT].available_minor == gross - fees, "merchant not credited the payments less fees"
        assert balances[FEES].available_minor == fees
        assert ledger.trial_balance("CNY").balanced
        assert ledger.verify() == [], "ledger audit failed after the run"
    app.close()


class ActivitySampler:
    """Samples what the backends of one database are doing (``pg_stat_activity``) and which of them
    wait for a lock (``pg_locks``), every ``interval`` seconds, in a thread of the parent process."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.url, self.interval = url, interval
        self.states: collections.Counter[str] = collections.Counter()
        self.lock_waits: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        parsed = make_url(self.url)
        database = parsed.database
        conninfo = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not self._stop.is_set():
                for wait_type, wait_event, state in conn.execute(
                        "SELECT wait_event_type, wait_event, state FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)):
                    self.states[f"{state}: {wait_type or '-'}/{wait_event or '-'}"] += 1
                for (query,) in conn.execute(
                        "SELECT left(a.query, 60) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE NOT l.granted AND a.datname = %s", (database,)):
                    self.lock_waits[" ".join(query.split())] += 1
                time.sleep(self.interval)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, top: int = 4) -> str:
        total = sum(self.states.values()) or 1
        states = ", ".join(f"{k} {v / total:.0%}" for k, v in self.states.most_common(top))
        locks = sum(self.lock_waits.values())
        worst = f" (most: {self.lock_waits.most_common(1)[0][0]!r})" if locks else ""
        return f"backends: {states}; lock waits seen: {locks} in {total} backend samples{worst}"


def cpu_per_sale(url: str, sales: int = 300, outbox: bool = True) -> tuple[float, float]:
    """Client and server CPU seconds per sale, one process, after a warm-up (``/proc`` accounting of
    the backends of the benchmark's database, so the server must run on this machine)."""
    import psycopg

    shift_nos = set_up(url, 1, outbox)
    app = build(url, 1, start=False, outbox=outbox)
    tenant = app.tenant("bank")
    runtime = tenant.module("payments")
    rng = random.Random(1)
    parsed = make_url(url)
    conninfo = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    tick = os.sysconf("SC_CLK_TCK")

    def server_seconds() -> float:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            pids = [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (parsed.database,))]
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    for n in range(20):
        sell(tenant, runtime, shift_nos[0], rng, f"warm-{n}")
    server_before, client_before = server_seconds(), time.process_time()
    for n in range(sales):
        sell(tenant, runtime, shift_nos[0], rng, f"cpu-{n}")
    client, server = time.process_time() - client_before, server_seconds() - server_before
    app.close()
    return client / sales, server / sales


def qr_payments_per_second(url: str, workers: int, seconds: float, outbox: bool = True,
                           sampler: ActivitySampler | None = None) -> float:
    shift_nos = set_up(url, workers, outbox)
    ctx = multiprocessing.get_context("spawn")
    counts = ctx.Array("l", workers)
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_window_worker, args=(url, workers, shift_nos[k], seconds, k, counts, ready, go, outbox))
             for k in range(workers)]
    for p in procs:
        p.start()
    started = 0
    while started < workers:  # a worker that dies before it is ready must not leave the others waiting
        if ready.acquire(timeout=1):
            started += 1
        elif any(p.exitcode not in (None, 0) for p in procs):
            for p in procs:
                p.terminate()
            raise SystemExit("a window worker failed while starting (see its traceback above)")
    if sampler is not None:
        sampler.__enter__()
    go.set()
    for p in procs:
        p.join()
    if sampler is not None:
        sampler.__exit__()
    for p in procs:
        if p.exitcode != 0:
            raise SystemExit(f"window worker failed with exit code {p.exitcode}")
    total = sum(counts[:])
    check(url, workers, total)
    return total / seconds


def bench(workers: int, seconds: float, outbox: bool = True) -> str:
    with temporary_database() as payments_url, temporary_database() as pgbench_url:
        sampler = ActivitySampler(payments_url)
        rate = qr_payments_per_second(payments_url, workers, seconds, outbox, sampler)
        baseline = pgbench_tps(pgbench_url, workers, seconds)
    label = "QR payments end to end" if outbox else "QR payments, outbox off (diagnostic)"
    line = (f"{label}, PostgreSQL, {workers} workers, {seconds:g}s: {rate:7.1f} payments/s "
            f"({3 * rate:.0f} units of work/s)  pgbench TPC-B {baseline:7.0f} tps  ratio {rate / baseline:.2f} "
            f"(target >= 0.3)  [load {os.getloadavg()[0]:.1f}]")
    print(line, flush=True)
    print(f"  {sampler.summary()}", flush=True)
    return line


def bench_cpu(outbox: bool = True) -> str:
    with temporary_database() as url:
        client, server = cpu_per_sale(url, outbox=outbox)
    line = (f"CPU per QR sale, one process{'' if outbox else ', outbox off'}: client {client * 1000:.2f} ms, "
            f"server {server * 1000:.2f} ms; 2 busy cores sustain at most {2 / (client + server):.0f} sales/s "
            f"[load {os.getloadavg()[0]:.1f}]")
    print(line, flush=True)
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--without-outbox", action="store_true",
                        help="also run with the outbox module off (events dispatched in process, not durable), "
                             "to show what the outbox's delivery costs; not the end-to-end figure")
    parser.add_argument("--cpu", action="store_true",
                        help="first measure client and server CPU per sale in one process")
    args = parser.parse_args(argv)
    print(f"PostgreSQL server: {make_url(server_url()).render_as_string(hide_password=True)}", flush=True)
    if args.cpu:
        bench_cpu()
        if args.without_outbox:
            bench_cpu(outbox=False)
    bench(args.workers, args.seconds)
    if args.without_outbox:
        bench(args.workers, args.seconds, outbox=False)


def test_qr_sales_run_end_to_end(tmp_path) -> None:
    """A few sales on SQLite in process, so the benchmark stays runnable (``pytest -o addopts= tests/benchmarks``)."""
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    shift_nos = set_up(url, 1)
    app = build(url, 1, start=False)
    tenant = app.tenant("bank")
    statuses = [sell(tenant, tenant.module("payments"), shift_nos[0], random.Random(n), f"t-{n}") for n in range(5)]
    app.close()
    assert statuses == ["succeeded"] * 5
    check(url, 1, 5)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[2]))
    main()
