"""Credit pay benchmarks, each printing a ratio against a baseline measured in the same run.

    .venv/bin/python tests/benchmarks/bench_credit_pay.py                          # both, defaults
    .venv/bin/python tests/benchmarks/bench_credit_pay.py --only authorize --seconds 10
    .venv/bin/python tests/benchmarks/bench_credit_pay.py --only end_of_day --accounts 100000 --backends sqlite,postgres
    .venv/bin/python tests/benchmarks/bench_credit_pay.py --only end_of_day --accounts 1000000 --backends postgres
    .venv/bin/python tests/benchmarks/bench_credit_pay.py --only end_of_day --accounts 20000 --profile

(a) **Purchase authorizations per second on PostgreSQL**, end to end through the service layer.
    ``--auth-accounts`` customers are registered and activated through the services (party,
    then ``CreditPayService.activate``: the risk module's activation flow with the credit
    module's scorecard, limit and pricing), in ``--workers`` processes. Then ``--workers``
    processes (default 8) authorize purchases for ``--seconds``, each in its own unit of work as
    ``POST /v1/credit_pay/purchases`` makes it for a signed-in customer (``service.authorize`` with
    the customer as ``owner``): the ownership check, inline catch-up, per-purchase and daily
    limits, the available line, the risk module's purchase flow with rules, a blacklist and
    velocity limits on (its decision record and velocity event are written), the pending ledger
    entry on the line and the events through the outbox. Random accounts, 40 merchants, random
    amounts. Afterwards: the database holds exactly the purchases counted, each with its hold,
    the trial balance is zero and the ledger audit is clean. Then ``pgbench`` TPC-B with the
    same number of clients for the same time on the same server (a fresh database). Target:
    authorizations/s >= 0.3 x pgbench's transactions/s.

(b) **End of day** (``credit_pay.end_of_day`` through ``infra.compute.JobRunner`` with the
    in-process executor) for ``--accounts`` revolving accounts with balances, on SQLite (temp
    file) and PostgreSQL (fresh database). The fixture is written set-based (``INSERT ...
    SELECT`` over a number series, for the fixture only): the credit accounts and their cycle
    rows (revolving, processed through the day before, a carried fraction of interest), the six
    ledger accounts of each (the constrained line with its balance row, receivable, interest,
    penalty, fees, credit balance) and one balanced opening entry per account (line granted,
    principal owed to the merchant). Then, in the same run on the same data:

    1. **raw SQL** accrues day D: one ``INSERT ... SELECT`` computing each account's interest
       ``carry + principal x rate x 100 // day_count`` micro-units (principal summed from its
       ledger postings, the same integer rounding as the engine: whole minor units posted, the
       remainder carried), then ledger entries, postings and transaction rows ``INSERT ...
       SELECT`` from it and one ``UPDATE`` of the cycles (carry, processed through), one
       transaction;
    2. **the job** runs day D+1 (holds partition plus one partition per 1,000 accounts);
    3. **raw SQL** again for day D+2 (the two baselines bracket the job; the ratio uses their
       mean).

    Every account's interest on the three days is checked against an independent computation
    in Python, and the trial balance must be zero (``Ledger.verify`` too, up to 60,000
    accounts). Printed: both times, the ratio (target: within 3x), time and CPU (this process) per account, so
    running several ``--accounts`` sizes shows whether it grows linearly. ``--profile`` runs the
    job under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from core.clock import SimulatedClock
from core.db import create_db_engine
from core.testing.factories import mobile, resident_id
from core.testing.harness import make_app, tenant_config
from core.testing.postgres import server_url, temporary_database

try:
    from tests.benchmarks.bench_ledger import pgbench_tps
except ImportError:  # run as a script: this folder is sys.path[0]
    from bench_ledger import pgbench_tps  # type: ignore[no-redef]

TENANT = "bank"
PARTNER = "travel_app"
CURRENCY = "CNY"
MERCHANTS = 40
CONSENT = {"income_band": "10k_20k", "occupation": "skilled", "employment_band": "4y_7y", "housing": "own"}
PRODUCT: dict[str, Any] = {
    "name": "Credit Pay",
    "billing_day": 5,
    "due_day": 25,
    "grace_days": 3,
    "revolving_annual_rate_bps": 1825,
    "penalty_annual_rate_bps": 1825,
    "late_fee_minor": 2_500,
    "max_purchase_minor": 5_000_000,
    "max_daily_minor": 10_000_000,
}
# The purchase-time risk checks: pre-screen rules on the transaction and the account, the
# blacklist, and velocity limits per customer and per merchant (anti-fraud stage).
RISK: dict[str, Any] = {
    "velocity_windows": {"m10": 600, "h24": 86_400},
    "blacklist": {"phones": [mobile(90_000 + i) for i in range(5)], "devices": ["rooted-emulator-01"]},
    "rules": [
        {"name": "over_available", "flow": "purchase", "expression": "txn.amount_minor > account.available_minor",
         "action": "decline", "reason_code": "over_available_line", "priority": 300},
        {"name": "gambling", "flow": "purchase", "expression": 'txn.merchant_category == "7995"',
         "action": "decline", "reason_code": "merchant_category_blocked", "priority": 200},
        {"name": "large_ticket", "flow": "purchase", "expression": "txn.amount_minor > 3000000",
         "action": "review", "reason_code": "large_purchase"},
        {"name": "night_large", "flow": "purchase",
         "expression": "request.local_hour < 5 && txn.amount_minor > 1000000",
         "action": "decline", "reason_code": "night_large_purchase"},
    ],
    "velocity_limits": [
        {"name": "customer_burst", "flow": "purchase", "dimension": "customer", "window": "m10",
         "max_count": 1_000, "action": "decline", "reason_code": "customer_velocity"},
        {"name": "merchant_day", "flow": "purchase", "dimension": "merchant", "window": "h24",
         "max_count": 10_000_000, "action": "review", "reason_code": "merchant_velocity"},
    ],
}


def config(url: str) -> dict[str, Any]:
    modules = {
        "party": {},
        "credit": {},
        "risk": RISK,
        "credit_pay": {"products": {"standard": PRODUCT}},
    }
    return {"database": {"url": url}, "tenants": {TENANT: tenant_config(modules=modules)}}


def build(url: str, *, start: bool = True, clock: SimulatedClock | None = None) -> Any:
    return make_app(config(url), database_url=url, start=start, clock=clock)


def ledger_of(tenant: Any, uow: Any) -> Any:
    return tenant.module("ledger").container.ledger(session=uow.session)


def audit(url: str, *, clock: SimulatedClock | None = None, verify: bool = True) -> None:
    """The trial balance is zero and (``verify``) the ledger's audit finds nothing."""
    app = build(url, start=False, clock=clock)
    tenant = app.tenant(TENANT)
    with tenant.unit_of_work() as uow:
        ledger = ledger_of(tenant, uow)
        assert ledger.trial_balance(CURRENCY).balanced, "trial balance is not zero"
        if verify:
            problems = ledger.verify()
            assert problems == [], f"ledger audit failed: {problems[:3]}"
    app.close()


def _wait_ready(procs: list[Any], ready: Any, what: str) -> None:
    """Wait for every worker to be ready; one that dies first must not leave the others waiting."""
    started = 0
    while started < len(procs):
        if ready.acquire(timeout=1):
            started += 1
        elif any(p.exitcode not in (None, 0) for p in procs):
            for p in procs:
                p.terminate()
            raise SystemExit(f"a {what} worker failed while starting (see its traceback above)")


def _join(procs: list[Any], what: str) -> None:
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"{what} worker failed with exit code {p.exitcode}")


# --- (a) purchase authorizations per second ----------------------------------------------------


def activate(tenant: Any, sequence: int) -> tuple[str, str]:
    """Register customer ``sequence`` and activate credit pay for them, through the services, each
    step in its own unit of work (as ``POST /customers`` and ``POST /activations`` do); the account
    and customer numbers."""
    from middle.party.service import CustomerDraft
    from products.credit_pay.service import ActivationDraft

    birth = date(1980, 1, 1) + timedelta(days=sequence // 499)  # (birth date, sequence) is unique
    with tenant.unit_of_work() as uow:
        draft = CustomerDraft(name=f"Customer {sequence}", id_number=resident_id(birth, sequence=sequence % 499),
                              phone=mobile(sequence))
        customer_no = tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no
    with tenant.unit_of_work() as uow:
        service = tenant.module("credit_pay").container.service(uow=uow, partner_id=PARTNER)
        result = service.activate(ActivationDraft(request_id=f"act-{sequence}", customer_no=customer_no,
                                                  consented=dict(CONSENT), device_id=f"dev-{sequence}"))
    if result.account is None:
        raise SystemExit(f"activation {sequence} was not approved: {result.outcome} {result.reasons}")
    return str(result.account.account_no), customer_no


def _activation_worker(url: str, sequences: list[int], out: Any) -> None:
    app = build(url, start=False)
    tenant = app.tenant(TENANT)
    out.put([activate(tenant, s) for s in sequences])
    app.close()


def set_up_accounts(url: str, accounts: int, workers: int) -> tuple[list[tuple[str, str]], float]:
    """Activate ``accounts`` customers through the services in ``workers`` processes; the (account,
    customer) numbers and the activations per second."""
    build(url).close()  # migrate once, before the workers start
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    started = time.perf_counter()
    procs = [ctx.Process(target=_activation_worker, args=(url, list(range(k + 1, accounts + 1, workers)), out))
             for k in range(workers)]
    for p in procs:
        p.start()
    numbers: list[tuple[str, str]] = []
    for _ in procs:
        numbers += out.get()
    _join(procs, "activation")
    return sorted(numbers), accounts / (time.perf_counter() - started)


def authorize_one(tenant: Any, account: tuple[str, str], rng: random.Random, purchase_id: str) -> Any:
    """One authorization as ``POST /v1/credit_pay/purchases`` makes it for a signed-in customer:
    one unit of work, ``authorize`` with the ownership check."""
    account_no, customer_no = account
    from products.credit_pay.service import PurchaseDraft

    draft = PurchaseDraft(purchase_id=purchase_id, account_no=account_no, merchant_id=f"m{rng.randrange(MERCHANTS)}",
                          amount_minor=rng.randrange(100, 50_000), merchant_category="4722")
    with tenant.unit_of_work() as uow:
        service = tenant.module("credit_pay").container.service(uow=uow, partner_id=PARTNER)
        return service.authorize(draft, owner=customer_no)


def _purchase_worker(url: str, numbers: list[tuple[str, str]], seconds: float, index: int, counts: Any, ready: Any,
                     go: Any) -> None:
    app = build(url, start=False)
    tenant = app.tenant(TENANT)
    rng = random.Random(5000 + index)
    ready.release()
    go.wait()
    done = n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n += 1
        view = authorize_one(tenant, numbers[rng.randrange(len(numbers))], rng, f"p{index}-{n}")
        if view.status != "authorized":
            raise SystemExit(f"purchase p{index}-{n} was {view.status}: {view.reasons}")
        done += 1
    counts[index] = done
    app.close()


def check_purchases(url: str, expected: int) -> None:
    """Exactly ``expected`` authorized purchases, each with its pending hold; a clean ledger."""
    from infra.ledger.models import LedgerPending
    from products.credit_pay.models import CreditPayPurchase

    app = build(url, start=False)
    tenant = app.tenant(TENANT)
    with tenant.unit_of_work() as uow:
        authorized, held = uow.session.execute(
            select(func.count(), func.coalesce(func.sum(CreditPayPurchase.amount_minor), 0))
            .where(CreditPayPurchase.status == "authorized")).one()
        pending = uow.session.scalar(select(func.count()).select_from(LedgerPending)
                                     .where(LedgerPending.status == "pending"))
        assert authorized == expected, f"{authorized} authorized purchases in the database, {expected} counted"
        assert pending == expected, f"{pending} pending holds in the ledger, {expected} purchases"
        ledger = ledger_of(tenant, uow)
        merchants = [a.code for a in ledger.accounts() if a.code.startswith(f"credit_pay:merchant:{CURRENCY}:")]
        assert sum(b.credits_pending_minor for b in ledger.balances(merchants).values()) == held, "holds do not add up"
    app.close()
    audit(url)


def authorizations_per_second(url: str, accounts: int, workers: int, seconds: float) -> tuple[float, float]:
    numbers, activations = set_up_accounts(url, accounts, workers)
    ctx = multiprocessing.get_context("spawn")
    counts = ctx.Array("l", workers)
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_purchase_worker, args=(url, numbers, seconds, k, counts, ready, go))
             for k in range(workers)]
    for p in procs:
        p.start()
    _wait_ready(procs, ready, "purchase")
    go.set()
    _join(procs, "purchase")
    total = sum(counts[:])
    check_purchases(url, total)
    return total / seconds, activations


def bench_authorize(accounts: int, workers: int, seconds: float) -> str:
    with temporary_database() as pay_url, temporary_database() as pgbench_url:
        rate, activations = authorizations_per_second(pay_url, accounts, workers, seconds)
        baseline = pgbench_tps(pgbench_url, workers, seconds)
    line = (f"purchase authorizations end to end, PostgreSQL, {workers} workers, {accounts} accounts, {seconds:g}s: "
            f"{rate:7.1f}/s  pgbench TPC-B {baseline:7.0f} tps  ratio {rate / baseline:.2f} (target >= 0.3)"
            f"  [set-up: {activations:.1f} activations/s]")
    print(line, flush=True)
    return line



# --- (b) end of day against raw set-based SQL --------------------------------------------------

# Accrual days: no billing day (5th), no due date (25th + grace) among them, so a day is accrual only.
DAY = date(2026, 3, 10)
OPENED = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
LINE_MINOR = 5_000_000
DAY_COUNT = 365
MICROS = 1_000_000
# The revolving rate is each account's own price (no product-wide rate), so interest varies per account.
EOD_PRODUCT = {k: v for k, v in PRODUCT.items() if k != "revolving_annual_rate_bps"}


def principal_of(i: int) -> int:
    return 10_000 + (i * 7919) % 4_000_000


def rate_of(i: int) -> int:
    return 1_000 + (i % 8) * 100


def carry_of(i: int) -> int:
    return (i * 104_729) % MICROS


def eod_clock() -> SimulatedClock:
    """Noon in Shanghai three days after ``DAY``: D, D+1 and D+2 have ended."""
    return SimulatedClock(datetime.combine(DAY + timedelta(days=3), datetime.min.time(), UTC) + timedelta(hours=4))


def eod_build(url: str, clock: SimulatedClock, *, start: bool = True) -> Any:
    cfg = config(url)
    cfg["tenants"][TENANT]["modules"]["credit_pay"] = {"products": {"standard": EOD_PRODUCT}}
    return make_app(cfg, database_url=url, start=start, clock=clock)


class Sql:
    """The few SQL fragments that differ between SQLite and PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def series(self) -> str:
        """A CTE ``s(i)`` of 1..:n (BIGINT)."""
        if self.pg:
            return "WITH s(i) AS (SELECT generate_series(1::bigint, CAST(:n AS bigint)))"
        return "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)"

    def padded(self, column: str) -> str:
        return f"lpad(CAST({column} AS text), 10, '0')" if self.pg else f"printf('%010d', {column})"

    def false(self) -> str:
        return "false" if self.pg else "0"

    def true(self) -> str:
        return "true" if self.pg else "1"


def _typed(sql: str, **types: Any) -> Any:
    from sqlalchemy import Date, bindparam

    from core.db import UTCDateTime

    kinds = {"now": UTCDateTime(), "day": Date(), "day_before": Date()}
    return text(sql).bindparams(*[bindparam(name, type_=kinds[name]) for name in types])


def account_no_sql(sql: Sql, i: str = "i") -> str:
    return f"'cpa_b' || {sql.padded(i)}"


def write_fixture(url: str, accounts: int, clock: SimulatedClock) -> float:
    """The accounts, cycles, ledger accounts, line balance rows and opening entries, set-based.

    Direct inserts for the benchmark's fixture only (the product opens accounts one activation at
    a time): explicit ids, so the ledger rows of account ``i`` are found by arithmetic rather than
    by joins; PostgreSQL's sequences are moved past them afterwards."""
    from products.credit_pay.end_of_day import (
        fee_income_account,
        interest_income_account,
        penalty_income_account,
        repayment_clearing_account,
        write_off_account,
    )
    from products.credit_pay.service import lines_granted_account, merchant_account

    started = time.perf_counter()
    app = eod_build(url, clock)
    tenant = app.tenant(TENANT)
    with tenant.unit_of_work() as uow:
        ledger = ledger_of(tenant, uow)
        ledger.open_account(lines_granted_account(CURRENCY), CURRENCY, "liability")
        ledger.open_account(merchant_account(CURRENCY, "fixture"), CURRENCY, "liability", "merchant", "fixture")
        for code in (interest_income_account, penalty_income_account, fee_income_account):
            ledger.open_account(code(CURRENCY), CURRENCY, "income")
        ledger.open_account(repayment_clearing_account(CURRENCY), CURRENCY, "asset")
        ledger.open_account(write_off_account(CURRENCY), CURRENCY, "expense")
        ids = {a.code: uow.session.execute(text("SELECT id FROM ledger_accounts WHERE tenant_id = :t AND code = :c"),
                                           {"t": TENANT, "c": a.code}).scalar_one() for a in ledger.accounts()}
    app.close()
    engine = create_db_engine(url)
    sql = Sql(engine.dialect.name)
    no = account_no_sql(sql)
    params = {"t": TENANT, "n": accounts, "now": OPENED, "day_before": DAY - timedelta(days=1),
              "cur": CURRENCY, "line": LINE_MINOR, "granted": ids[lines_granted_account(CURRENCY)],
              "merchant": ids[merchant_account(CURRENCY, "fixture")], "f": sql.false(), "tr": sql.true()}
    with engine.begin() as conn:
        a0 = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM ledger_accounts")).scalar_one()
        e0 = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM ledger_entries")).scalar_one()
        p0 = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM ledger_postings")).scalar_one()
        params |= {"a0": a0, "e0": e0, "p0": p0}
        principal, rate, carry = "(10000 + (i * 7919) % 4000000)", "(1000 + (i % 8) * 100)", "((i * 104729) % 1000000)"
        conn.execute(_typed(f"""{sql.series()}
            INSERT INTO credit_pay_accounts (id, tenant_id, account_no, customer_no, product_code, currency,
                line_minor, annual_rate_bps, fee_rate_bps, decision_no, status, created_at)
            SELECT i, :t, {no}, 'cus_b' || {sql.padded('i')}, 'standard', :cur, :line, {rate}, 0,
                'dec_fixture', 'active', :now FROM s""", now=True), params)
        conn.execute(_typed(f"""{sql.series()}
            INSERT INTO credit_pay_cycles (id, tenant_id, account_no, partner_id, processed_through, revolving,
                interest_carry_micros, penalty_carry_micros, past_due_minor, overdue_since, days_past_due, bucket,
                last_statement_date, charged_off_on, interest_since_statement_minor)
            SELECT i, :t, {no}, '{PARTNER}', :day_before, {params['tr']}, {carry}, 0, 0, NULL, 0, 'M0', NULL, NULL, 0
            FROM s""", day_before=True), params)
        kinds = [("line", "asset", "credits_must_not_exceed_debits", "credit_pay:line:"),
                 ("receivable", "asset", "none", "credit_pay:receivable:"),
                 ("interest", "asset", "none", "credit_pay:interest:"),
                 ("penalty", "asset", "none", "credit_pay:penalty:"),
                 ("fees", "asset", "none", "credit_pay:fees:"),
                 ("credit", "liability", "none", "credit_pay:credit:")]
        for k, (_, type_, constraint, prefix) in enumerate(kinds):
            conn.execute(_typed(f"""{sql.series()}
                INSERT INTO ledger_accounts (id, tenant_id, code, currency, type, owner_type, owner_id,
                    balance_constraint, created_at)
                SELECT :a0 + 6 * (i - 1) + {k + 1}, :t, '{prefix}' || {no}, :cur, '{type_}', 'customer',
                    'cus_b' || {sql.padded('i')}, '{constraint}', :now FROM s""", now=True), params)
        conn.execute(_typed(f"""{sql.series()}
            INSERT INTO ledger_balances (tenant_id, account_id, debits_posted_minor, credits_posted_minor,
                debits_pending_minor, credits_pending_minor, updated_at)
            SELECT :t, :a0 + 6 * (i - 1) + 1, :line, {principal}, 0, 0, :now FROM s""", now=True), params)
        conn.execute(_typed(f"""{sql.series()}
            INSERT INTO ledger_entries (id, tenant_id, entry_id, kind, description, entry_metadata, fingerprint,
                pending_entry_pk, reverses_entry_pk, created_at)
            SELECT :e0 + i, :t, 'bench:opening:' || {no}, 'standard', 'opening balance (benchmark fixture)',
                NULL, 'benchmark-fixture', NULL, NULL, :now FROM s""", now=True), params)
        # line granted (debit line, credit lines granted L - P) and the principal owed to the
        # merchant (debit receivable, credit merchant; credit line: the line in use)
        legs = [(1, "debit", ":a0 + 6 * (i - 1) + 1", ":line"),
                (2, "credit", ":granted", f":line - {principal}"),
                (3, "debit", ":a0 + 6 * (i - 1) + 2", principal),
                (4, "credit", ":merchant", principal),
                (5, "credit", ":a0 + 6 * (i - 1) + 1", principal)]
        for k, side, account, amount in legs:
            conn.execute(_typed(f"""{sql.series()}
                INSERT INTO ledger_postings (id, tenant_id, entry_pk, account_id, side, amount_minor, currency,
                    pending, created_at)
                SELECT :p0 + 5 * (i - 1) + {k}, :t, :e0 + i, {account}, '{side}', {amount}, :cur, {params['f']}, :now
                FROM s""", now=True), params)
        if sql.pg:
            for table in ("credit_pay_accounts", "credit_pay_cycles", "ledger_accounts", "ledger_entries",
                          "ledger_postings"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT MAX(id) FROM {table}))"))
    if sql.pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def baseline_accrual(url: str, day: date, clock: SimulatedClock) -> tuple[float, int, int]:
    """Day ``day``'s interest of every revolving account behind it, in raw set-based SQL, one
    transaction: (seconds, entries, interest minor units)."""
    from products.credit_pay.end_of_day import interest_income_account

    engine = create_db_engine(url)
    sql = Sql(engine.dialect.name)
    params = {"t": TENANT, "day": day, "iso": day.isoformat(), "ref": day.isoformat(), "now": clock.now(),
              "cur": CURRENCY, "dc": DAY_COUNT}
    started = time.perf_counter()
    with engine.begin() as conn:
        params["income"] = conn.execute(text("SELECT id FROM ledger_accounts WHERE tenant_id = :t AND code = :c"),
                                        {"t": TENANT, "c": interest_income_account(CURRENCY)}).scalar_one()
        conn.execute(text("DROP TABLE IF EXISTS bench_accrual"))
        # carry + principal x rate x 100 // day count, in millionths of a minor unit: the whole
        # units are posted, the rest carried (the engine's rounding, end_of_day._accrue). Integer
        # arithmetic throughout (PostgreSQL's SUM(bigint) is numeric: cast back to BIGINT).
        conn.execute(_typed(f"""
            CREATE TEMP TABLE bench_accrual AS
            SELECT cycle_id, account_no, total / 1000000 AS whole, total % 1000000 AS carry FROM (
                SELECT c.id AS cycle_id, c.account_no,
                    c.interest_carry_micros + CAST((
                        SELECT COALESCE(SUM(CASE WHEN p.side = 'debit' THEN p.amount_minor
                                                 ELSE -p.amount_minor END), 0)
                        FROM ledger_postings p WHERE p.account_id = la.id AND p.pending = {sql.false()}
                    ) AS BIGINT) * a.annual_rate_bps * 100 / :dc AS total
                FROM credit_pay_cycles c
                JOIN credit_pay_accounts a ON a.tenant_id = c.tenant_id AND a.account_no = c.account_no
                JOIN ledger_accounts la ON la.tenant_id = c.tenant_id
                    AND la.code = 'credit_pay:receivable:' || c.account_no
                WHERE c.tenant_id = :t AND c.processed_through < :day AND c.charged_off_on IS NULL
                    AND c.revolving = {sql.true()}
            ) accrual""", day=True), params)
        conn.execute(text("ANALYZE bench_accrual"))  # a temporary table has no statistics otherwise
        entry_id = "'credit_pay:interest:' || b.account_no || ':' || :iso"
        new_entries = f"""
            INSERT INTO ledger_entries (tenant_id, entry_id, kind, description, entry_metadata, fingerprint,
                pending_entry_pk, reverses_entry_pk, created_at)
            SELECT :t, {entry_id}, 'standard', 'revolving interest', NULL, 'raw-sql-baseline', NULL, NULL, :now
            FROM bench_accrual b WHERE b.whole > 0"""
        postings = f"""
            INSERT INTO ledger_postings (tenant_id, entry_pk, account_id, side, amount_minor, currency, pending,
                created_at)
            SELECT :t, e.id, CASE WHEN sides.side = 'debit' THEN ia.id ELSE :income END, sides.side, b.whole, :cur,
                {sql.false()}, :now
            FROM bench_accrual b
            JOIN {{entries}} e ON e.tenant_id = :t AND e.entry_id = {entry_id}
            JOIN ledger_accounts ia ON ia.tenant_id = :t AND ia.code = 'credit_pay:interest:' || b.account_no
            CROSS JOIN (SELECT 'debit' AS side UNION ALL SELECT 'credit' AS side) sides
            WHERE b.whole > 0"""
        if sql.pg:  # one statement: the postings join the entries just inserted (RETURNING), not the table
            conn.execute(_typed(f"WITH new_entries AS ({new_entries} RETURNING id, tenant_id, entry_id) "
                                + postings.format(entries="new_entries"), now=True), params)
        else:  # SQLite has no data-modifying CTE: the postings find their entries by (tenant_id, entry_id)
            conn.execute(_typed(new_entries, now=True), params)
            conn.execute(_typed(postings.format(entries="ledger_entries"), now=True), params)
        conn.execute(_typed(f"""
            INSERT INTO credit_pay_transactions (tenant_id, account_no, business_date, kind, amount_minor, reference,
                entry_id, statement_no, created_at)
            SELECT :t, b.account_no, :day, 'interest', b.whole, :ref, {entry_id}, NULL, :now
            FROM bench_accrual b WHERE b.whole > 0""", now=True, day=True), params)
        conn.execute(_typed("""
            UPDATE credit_pay_cycles SET interest_carry_micros = b.carry, processed_through = :day
            FROM bench_accrual b WHERE credit_pay_cycles.id = b.cycle_id""", day=True), params)
        entries, minor = conn.execute(text("SELECT COUNT(*), COALESCE(SUM(whole), 0) FROM bench_accrual "
                                           "WHERE whole > 0")).one()
        conn.execute(text("DROP TABLE bench_accrual"))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, int(entries), int(minor)


def expected_interest(accounts: int, days: int) -> list[tuple[int, int]]:
    """An independent model, from the fixture's formulas: per day, (entries, minor units)."""
    totals = [[0, 0] for _ in range(days)]
    for i in range(1, accounts + 1):
        carry, daily = carry_of(i), principal_of(i) * rate_of(i) * 100 // DAY_COUNT
        for d in range(days):
            whole, carry = divmod(carry + daily, MICROS)
            if whole:
                totals[d][0] += 1
                totals[d][1] += whole
    return [(e, m) for e, m in totals]


def interest_by_day(url: str) -> dict[date, tuple[int, int]]:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(_typed("""SELECT business_date, COUNT(*), SUM(amount_minor) FROM credit_pay_transactions
                                      WHERE tenant_id = :t AND kind = 'interest' GROUP BY business_date"""),
                            {"t": TENANT}).all()
    engine.dispose()
    return {date.fromisoformat(str(d)[:10]): (int(n), int(m)) for d, n, m in rows}


def sample_check(url: str, accounts: int, days: list[date]) -> int:
    """Every ``step``-th account's interest on each day equals the model's; the number checked."""
    step = max(1, accounts // 20_000)
    engine = create_db_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(_typed("""
            SELECT a.id, t.business_date, t.amount_minor FROM credit_pay_transactions t
            JOIN credit_pay_accounts a ON a.tenant_id = t.tenant_id AND a.account_no = t.account_no
            WHERE t.tenant_id = :t AND t.kind = 'interest' AND a.id % :step = 0"""),
            {"t": TENANT, "step": step}).all()
        carries = dict(conn.execute(text("SELECT id, interest_carry_micros FROM credit_pay_cycles "
                                         "WHERE tenant_id = :t AND id % :step = 0"), {"t": TENANT, "step": step}).all())
    engine.dispose()
    found: dict[tuple[int, date], int] = {(i, date.fromisoformat(str(d)[:10])): m for i, d, m in rows}
    checked = 0
    for i in range(step, accounts + 1, step):
        carry, daily = carry_of(i), principal_of(i) * rate_of(i) * 100 // DAY_COUNT
        for day in days:
            whole, carry = divmod(carry + daily, MICROS)
            assert found.get((i, day), 0) == whole, f"account {i} on {day}: {found.get((i, day))} != {whole}"
        assert carries[i] == carry, f"account {i}: carry {carries[i]} != {carry}"
        checked += 1
    return checked


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "postgres":
        with temporary_database() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/eod.db"


def run_job(url: str, clock: SimulatedClock, day: date, profile: bool) -> tuple[float, float, Any, str]:
    from infra.compute import InProcessExecutor, JobRunner

    app = eod_build(url, clock, start=False)
    profiler = cProfile.Profile() if profile else None
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    report = JobRunner(app).run(TENANT, "credit_pay.end_of_day", day, executor=InProcessExecutor())
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    app.close()
    if not report.completed:
        raise SystemExit(f"end of day failed: {report.error or report.failures[:2]}")
    stats = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        out.write("\n--- by own time ---\n")
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        stats = out.getvalue()
    return elapsed, cpu, report, stats


def bench_end_of_day(backend: str, accounts: int, profile: bool = False) -> str:
    clock = eod_clock()
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    with database(backend) as url:
        setup = write_fixture(url, accounts, clock)
        first, n1, m1 = baseline_accrual(url, days[0], clock)
        job_seconds, job_cpu, report, stats = run_job(url, clock, days[1], profile)
        second, n3, m3 = baseline_accrual(url, days[2], clock)
        model = expected_interest(accounts, 3)
        found = interest_by_day(url)
        assert [found.get(d, (0, 0)) for d in days] == model, f"interest by day {found} != model {model}"
        assert (n1, m1) == model[0] and (n3, m3) == model[2]
        assert report.summary.get("accounts") == accounts, report.summary
        assert report.summary.get("interest_minor", 0) == model[1][1], report.summary
        checked = sample_check(url, accounts, days)
        # Ledger.verify() binds every constrained account id at once: above 65,535 of them PostgreSQL
        # refuses the statement (too many parameters), so the full audit runs only up to 60,000.
        audit(url, clock=clock, verify=accounts <= 60_000)
    baseline = (first + second) / 2
    line = (f"end of day, {backend:8}, {accounts:>9,} accounts: job {job_seconds:8.1f}s "
            f"({job_seconds / accounts * 1e6:6.0f} us/account, this process's CPU {job_cpu / accounts * 1e6:4.0f})  raw SQL {first:6.1f}s / {second:6.1f}s "
            f"({baseline / accounts * 1e6:5.1f} us/account)  ratio {job_seconds / baseline:5.1f}x (target <= 3x)"
            f"  [fixture {setup:.0f}s; {report.partitions_total} partitions; {checked} accounts checked]")
    print(line, flush=True)
    if stats:
        print(stats, flush=True)
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["authorize", "end_of_day"])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--auth-accounts", type=int, default=1_000,
                        help="accounts activated through the services for (a)")
    parser.add_argument("--accounts", default="100000",
                        help="end-of-day sizes, comma-separated (e.g. 100000,1000000)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--profile", action="store_true", help="run the end-of-day job under cProfile")
    args = parser.parse_args(argv)
    print(f"PostgreSQL server: {make_url(server_url()).render_as_string(hide_password=True)}", flush=True)
    if args.only in (None, "authorize"):
        bench_authorize(args.auth_accounts, args.workers, args.seconds)
    if args.only in (None, "end_of_day"):
        for size in (int(n) for n in args.accounts.split(",")):
            for backend in args.backends.split(","):
                bench_end_of_day(backend, size, args.profile)


def test_end_of_day_benchmark_runs() -> None:
    """A small run on SQLite, so the benchmark stays runnable (``pytest -o addopts= tests/benchmarks``)."""
    assert "ratio" in bench_end_of_day("sqlite", 300)


def test_an_authorization_runs_end_to_end(tmp_path) -> None:
    """Two activations and a few authorizations on SQLite, in process."""
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    app = build(url)
    tenant = app.tenant(TENANT)
    numbers = [activate(tenant, s) for s in (1, 2)]
    rng = random.Random(3)
    views = [authorize_one(tenant, numbers[n % 2], rng, f"t-{n}") for n in range(4)]
    app.close()
    assert [v.status for v in views] == ["authorized"] * 4
    check_purchases(url, 4)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[2]))
    main()
