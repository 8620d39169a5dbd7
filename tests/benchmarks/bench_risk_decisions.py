"""Risk decision benchmark: the activation flow in process against a hand-written function.

    .venv/bin/python tests/benchmarks/bench_risk_decisions.py                      # SQLite, defaults
    .venv/bin/python tests/benchmarks/bench_risk_decisions.py --decisions 5000 --postgres
    .venv/bin/python tests/benchmarks/bench_risk_decisions.py --wal-checkpoint on-commit

Each decision is one unit of work on a real database (a temp-file SQLite, or a fresh PostgreSQL
database with ``--postgres``), committed:

* **SceneOS**: ``RiskService.decide_activation`` — the applicant from the party registry,
  pre-screen rules, the anti-fraud step (blacklist and velocity in sliding windows, rules over
  them), the credit module's profile and scorecard, post-score rules, the credit module's limit
  and pricing strategies and an ``adjust`` rule; then the full decision record (inputs, every
  step's output, rule hits, score and points, versions, timings), the velocity attempt and the
  ``risk.decision.made`` event (through the outbox).
  The outbox's after-commit delivery of that event (its own transactions) is timed apart and
  reported as ``sceneos+outbox``; the targets apply to the decision itself.
* **Baseline**: one hand-written Python function taking *the same decision* with SQLAlchemy Core:
  the same party row, one blacklist query, one velocity query (only the two windows its rules
  use), ``if`` statements for the rules, a dictionary lookup per scorecard feature, the default
  limit and pricing arithmetic and caps, then one velocity row and one small decision row.

Both run interleaved in the same process on the same database (two tenants with the same
customers), on the same simulated clock (one second per request). Every request's outcome, line
and rate must be the same on both sides, or the script fails. Targets: SceneOS p99 under 5 ms,
and SceneOS's mean latency within 5x of the baseline's.

Without help, the SQLite tail is mostly WAL checkpoints: with the kernel's ``journal_mode=WAL`` and
``synchronous=NORMAL`` a commit does not fsync, but the commit that takes the WAL past
``wal_autocheckpoint`` (1,000 pages) copies it into the database and fsyncs, on the deciding
thread. A running application therefore checkpoints on a thread of its own
(``core/sqlite_wal.py``); ``--wal-checkpoint on-commit`` switches that off to measure SQLite's
own behaviour. The script prints how many decisions' COMMIT took over 1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from bisect import bisect_right
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select
from sqlalchemy.engine.default import DefaultDialect

from core.clock import SimulatedClock
from core.db import tenant_session
from core.tenancy import UnitOfWork
from core.testing.factories import mobile, resident_id
from core.testing.harness import make_app, tenant_config
from core.testing.postgres import server_url, temporary_database
from middle.credit.scorecard import resolve_scorecard_path
from middle.credit.settings import CreditSettings
from middle.party.models import Customer
from middle.party.service import CustomerDraft
from middle.risk.models import RiskBlacklistEntry, RiskDecision, RiskVelocityEvent
from middle.risk.service import ActivationRequest

FRAMEWORK, BASELINE = "bank", "base"
BLACKLISTED_PHONES = [mobile(900 + i) for i in range(5)]
RISK = {
    "velocity_windows": {"h1": 3600, "h24": 86400, "d7": 7 * 86400},
    "blacklist": {"phones": BLACKLISTED_PHONES},
    "rules": [
        {
            "name": "too_young",
            "expression": "applicant.age < 20",
            "action": "decline",
            "reason_code": "age_below_minimum",
            "priority": 300,
        },
        {
            "name": "region",
            "expression": 'applicant.province_code == "65"',
            "action": "decline",
            "reason_code": "region_not_served",
            "priority": 200,
        },
        {
            "name": "low_income",
            "expression": 'consented.income_band == "lt_3k"',
            "action": "review",
            "reason_code": "low_income",
        },
        {
            "name": "customer_burst",
            "expression": "velocity.customer.h1.count >= 3",
            "action": "review",
            "stage": "anti_fraud",
            "reason_code": "customer_velocity",
        },
        {
            "name": "cut_off",
            "expression": "score.value < 480",
            "action": "decline",
            "stage": "post_score",
            "reason_code": "score_below_cut_off",
        },
        {
            "name": "thin_file",
            "expression": "profile.existing_credit_count == 0",
            "action": "adjust",
            "stage": "post_score",
            "reason_code": "thin_file",
            "adjust": {"line_factor_bps": 9000},
        },
    ],
    "velocity_limits": [
        {
            "name": "device",
            "flow": "activation",
            "dimension": "device",
            "window": "h24",
            "max_count": 5,
            "action": "decline",
            "reason_code": "device_velocity",
        }
    ],
}
REGIONS = ["110105", "440305", "310101", "650102"]
INCOME = [None, "lt_3k", "3k_5k", "5k_10k", "10k_20k", "20k_plus"]
OCCUPATION = [None, "unskilled", "skilled", "management"]
EMPLOYMENT = [None, "lt_1y", "1y_4y", "4y_7y", "7y_plus"]
HOUSING = [None, "own", "rent", "free"]


def build(url: str, customers: int) -> tuple[Any, SimulatedClock, list[dict[str, Any]]]:
    clock = SimulatedClock(datetime(2026, 3, 2, 1, tzinfo=UTC))
    tenants = {
        tenant: tenant_config(tenant, modules={"party": {}, "credit": {}, "risk": RISK})
        for tenant in (FRAMEWORK, BASELINE)
    }
    app = make_app({"database": {"url": url}, "tenants": tenants}, database_url=url, clock=clock)
    rng = random.Random(7)
    people = []
    for i in range(customers):
        born = date(rng.randint(1960, 2007), rng.randint(1, 12), rng.randint(1, 28))
        region = REGIONS[i % len(REGIONS)]
        if born.year < 1992 and region in ("440305", "650102"):  # districts younger than the customer
            region = "110105"
        phone = BLACKLISTED_PHONES[i % 5] if i % 40 == 0 else mobile(i)
        draft = CustomerDraft(
            name=f"Customer {i}",
            id_number=resident_id(born, region_code=region, sequence=i % 400),
            phone=phone,
        )
        numbers = {}
        for tenant_id in (FRAMEWORK, BASELINE):
            tenant = app.tenant(tenant_id)
            with tenant.unit_of_work() as uow:
                numbers[tenant_id] = (
                    tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no
                )
        people.append(numbers)
    return app, clock, people


def make_requests(people: list[dict[str, str]], count: int) -> list[tuple[int, dict[str, Any]]]:
    rng = random.Random(11)
    requests = []
    for _ in range(count):
        index = rng.randrange(len(people))
        consented = {
            key: value
            for key, value in (
                ("income_band", rng.choice(INCOME)),
                ("occupation", rng.choice(OCCUPATION)),
                ("employment_band", rng.choice(EMPLOYMENT)),
                ("housing", rng.choice(HOUSING)),
            )
            if value is not None
        }
        # Mostly a device of one's own, sometimes a shared one (which the velocity limit catches).
        device = f"dev-{index}" if rng.random() < 0.8 else f"shared-{rng.randrange(20)}"
        requests.append((index, {"device_id": device, "consented": consented}))
    return requests


# --- SceneOS ------------------------------------------------------------------------------------


def framework(
    app: Any, customer_no: str, request: dict[str, Any]
) -> tuple[tuple[str, int | None, int | None], float, float]:
    """The decision in one unit of work, exactly as ``Tenant.unit_of_work`` runs it, with the
    outbox's after-commit delivery of the decision's event timed apart: returns the decision and
    the wall and CPU milliseconds that delivery took."""
    tenant = app.tenant(FRAMEWORK)
    runtime = tenant.module("risk")
    with tenant_session(tenant.session_factory, tenant.id) as session:
        decision = runtime.container.service(uow=UnitOfWork(session, tenant, tenant.bus)).decide_activation(
            ActivationRequest(customer_no=customer_no, **request)
        )
    committed, committed_cpu = time.perf_counter(), time.process_time()
    tenant.bus.after_commit(session)
    delivery_ms = (time.perf_counter() - committed) * 1000
    delivery_cpu_ms = (time.process_time() - committed_cpu) * 1000
    offer = decision.offer
    decided = (
        decision.outcome,
        offer.line_minor if offer else None,
        offer.annual_rate_bps if offer else None,
    )
    return decided, delivery_ms, delivery_cpu_ms


# --- the hand-written baseline ------------------------------------------------------------------


class Baseline:
    """The same decision, written by hand for this one configuration."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.engine = app.engine
        self.clock = app.clock
        self.credit = CreditSettings()
        card = json.loads(resolve_scorecard_path("default").read_text(encoding="utf-8"))
        self.features = []
        for feature in card["features"]:
            missing = next(b["points"] for b in feature["bins"] if b.get("missing"))
            other = next((b["points"] for b in feature["bins"] if b.get("other")), missing)
            if feature["kind"] == "numeric":
                intervals = [b for b in feature["bins"] if not b.get("missing")]
                self.features.append(
                    (
                        feature["name"],
                        "numeric",
                        [b["upper"] for b in intervals[:-1]],
                        [b["points"] for b in intervals],
                        missing,
                        other,
                    )
                )
            else:
                table = {c: b["points"] for b in feature["bins"] for c in b.get("categories") or []}
                self.features.append((feature["name"], "categorical", table, None, missing, other))
        self.count = 0

    def points(self, facts: dict[str, Any]) -> int:
        total = 0
        for name, kind, edges_or_table, points, missing, other in self.features:
            value = facts.get(name)
            if value is None:
                total += missing
            elif kind == "numeric":
                total += points[bisect_right(edges_or_table, float(value))]
            else:
                total += edges_or_table.get(str(value), other)
        return total

    def decide(self, customer_no: str, request: dict[str, Any]) -> tuple[str, int | None, int | None]:
        now = self.clock.now()
        consented = request["consented"]
        device = request["device_id"]
        outcome, reasons, line, rate, fee = "approve", [], None, None, None
        with self.engine.begin() as connection:
            row = connection.execute(
                select(
                    Customer.birth_date, Customer.region_code, Customer.id_number, Customer.phone_e164
                ).where(Customer.tenant_id == BASELINE, Customer.customer_no == customer_no)
            ).one()
            today = now.astimezone(_SHANGHAI).date()
            birth = row.birth_date
            age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
            if age < 20:
                outcome, reasons = "decline", ["age_below_minimum"]
            elif row.region_code[:2] == "65":
                outcome, reasons = "decline", ["region_not_served"]
            elif consented.get("income_band") == "lt_3k":
                outcome, reasons = "review", ["low_income"]
            if outcome != "decline":
                listed = (
                    connection.execute(
                        select(RiskBlacklistEntry.kind).where(
                            RiskBlacklistEntry.tenant_id == BASELINE,
                            or_(
                                and_(
                                    RiskBlacklistEntry.kind == "id_number",
                                    RiskBlacklistEntry.value == row.id_number,
                                ),
                                and_(
                                    RiskBlacklistEntry.kind == "phone",
                                    RiskBlacklistEntry.value == row.phone_e164,
                                ),
                                and_(RiskBlacklistEntry.kind == "device", RiskBlacklistEntry.value == device),
                            ),
                        )
                    )
                    .scalars()
                    .all()
                )
                event = RiskVelocityEvent
                device_24h = connection.execute(
                    select(func.count()).where(
                        event.tenant_id == BASELINE,
                        event.kind == "activation",
                        event.device_id == device,
                        event.occurred_at >= now - _DAY,
                        event.occurred_at <= now,
                    )
                ).scalar_one()
                customer_1h = connection.execute(
                    select(func.count(case((event.occurred_at >= now - _HOUR, 1)))).where(
                        event.tenant_id == BASELINE,
                        event.kind == "activation",
                        event.customer_no == customer_no,
                        event.occurred_at >= now - _WEEK,
                        event.occurred_at <= now,
                    )
                ).scalar_one()
                if listed:
                    order = ["id_number", "phone", "device"]
                    outcome, reasons = "decline", [f"blacklisted_{kind}" for kind in order if kind in listed]
                elif device_24h + 1 > 5:
                    outcome, reasons = "decline", ["device_velocity"]
                elif customer_1h >= 3 and "customer_velocity" not in reasons:
                    outcome, reasons = "review", [*reasons, "customer_velocity"]
            if outcome != "decline":
                score = self.points({"age_years": age, **consented})
                band = next((b for b in self.credit.score_bands if score >= b.min_score), None)
                if score < 480:
                    outcome, reasons = "decline", ["score_below_cut_off"]
                elif band is None or band.max_line_minor == 0:
                    outcome, reasons = "decline", ["no_offer"]
                else:
                    income = self.credit.income_bands.get(consented.get("income_band") or "")
                    line = (
                        band.max_line_minor * self.credit.unknown_income_line_pct // 100
                        if income is None
                        else min(band.max_line_minor, income * band.income_multiple_pct // 100)
                    )
                    line = min(line, self.credit.max_line_minor, self.credit.max_total_exposure_minor)
                    line -= line % self.credit.line_step_minor
                    if line <= 0 or line < self.credit.min_line_minor:
                        outcome, reasons, line = "decline", ["no_offer"], None
                    else:
                        rate = min(band.annual_rate_bps, self.credit.annual_rate_ceiling_bps)
                        fee = min(band.fee_rate_bps, self.credit.annual_rate_ceiling_bps - rate)
                        line = line * 9000 // 10_000  # thin file: no credit at this bank yet
                        line -= line % self.credit.line_step_minor
                        if line <= 0 or line < self.credit.min_line_minor:
                            outcome, reasons, line = "decline", ["line_below_minimum"], None
            if outcome == "decline":
                line = rate = fee = None
            self.count += 1
            decision_no = f"base_{self.count:012d}"
            connection.execute(
                insert(RiskVelocityEvent.__table__).values(
                    tenant_id=BASELINE,
                    kind="activation",
                    customer_no=customer_no,
                    device_id=device,
                    merchant_id=None,
                    amount_minor=0,
                    outcome=outcome,
                    decision_no=decision_no,
                    occurred_at=now,
                )
            )
            connection.execute(
                insert(RiskDecision.__table__).values(
                    tenant_id=BASELINE,
                    decision_no=decision_no,
                    flow="activation",
                    role="champion",
                    variant="champion",
                    decision_key=customer_no,
                    customer_no=customer_no,
                    outcome=outcome,
                    reasons=reasons,
                    line_minor=line,
                    currency="CNY" if line else None,
                    annual_rate_bps=rate,
                    fee_rate_bps=fee,
                    rule_set_version="hand",
                    versions={},
                    inputs={"request": request},
                    steps=[],
                    rule_hits=[],
                    facts={},
                    elapsed_us=0,
                    decided_at=now,
                )
            )
        return outcome, line, rate


_SHANGHAI = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")
_HOUR = __import__("datetime").timedelta(hours=1)
_DAY = __import__("datetime").timedelta(days=1)
_WEEK = __import__("datetime").timedelta(days=7)


# --- measuring ----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class CommitTimer:
    """The time of each DB-API COMMIT, to tell the storage's share of the tail from the rest."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._original = DefaultDialect.do_commit

    def __enter__(self) -> CommitTimer:
        original, times = self._original, self.times

        def do_commit(dialect: Any, dbapi_connection: Any) -> None:
            started = time.perf_counter()
            original(dialect, dbapi_connection)
            times.append((time.perf_counter() - started) * 1000)

        DefaultDialect.do_commit = do_commit  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        DefaultDialect.do_commit = self._original  # type: ignore[method-assign]


def run(url: str, label: str, decisions: int, customers: int, warmup: int, checkpoint: str = "background") -> bool:
    app, clock, people = build(url, customers)
    if checkpoint == "on-commit" and app.wal_checkpointer is not None:
        app.wal_checkpointer.stop()  # SQLite's own: the commit past 1,000 pages checkpoints
        app.wal_checkpointer = None
    baseline = Baseline(app)
    requests = make_requests(people, warmup + decisions)
    timings: dict[str, list[float]] = {"sceneos": [], "baseline": [], "delivery": []}
    cpu_ms = {"sceneos": 0.0, "baseline": 0.0}
    load_before = os.getloadavg()[0]
    outcomes: dict[str, int] = {}
    mismatches = []
    slow_commits = {"sceneos": 0, "baseline": 0}
    try:
        for position, (index, request) in enumerate(requests):
            clock.advance(seconds=1)
            cpu_started = time.process_time()
            started = time.perf_counter()
            with CommitTimer() as commits:
                ours, delivery_ms, delivery_cpu_ms = framework(app, people[index][FRAMEWORK], request)
            middle = time.perf_counter()
            cpu_middle = time.process_time()
            with CommitTimer() as baseline_commits:
                theirs = baseline.decide(people[index][BASELINE], request)
            ended = time.perf_counter()
            cpu_ended = time.process_time()
            if ours != theirs:
                mismatches.append((position, request, ours, theirs))
            if position >= warmup:
                timings["sceneos"].append((middle - started) * 1000 - delivery_ms)
                timings["delivery"].append(delivery_ms)
                timings["baseline"].append((ended - middle) * 1000)
                outcomes[ours[0]] = outcomes.get(ours[0], 0) + 1
                cpu_ms["sceneos"] += (cpu_middle - cpu_started) * 1000 - delivery_cpu_ms
                cpu_ms["baseline"] += (cpu_ended - cpu_middle) * 1000
                # The decision's own COMMIT is the first; the outbox's delivery commits follow it.
                slow_commits["sceneos"] += bool(commits.times) and commits.times[0] > 1.0
                slow_commits["baseline"] += bool(baseline_commits.times) and baseline_commits.times[0] > 1.0
    finally:
        app.close()
    checkpointing = f", WAL checkpoint {checkpoint}" if url.startswith("sqlite") else ""
    print(
        f"\n== {label}: {decisions} activation decisions ({warmup} warm-up), {customers} customers{checkpointing}"
    )
    print(
        f"   outcomes: {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}; "
        f"same decision on both sides: {len(requests) - len(mismatches)}/{len(requests)}"
    )
    for position, request, ours, theirs in mismatches[:5]:
        print(f"   MISMATCH at {position}: {request} sceneos={ours} baseline={theirs}")
    rows = {}
    timings["sceneos+outbox"] = [
        a + b for a, b in zip(timings["sceneos"], timings.pop("delivery"), strict=True)
    ]
    for name, values in timings.items():
        mean = statistics.fmean(values)
        rows[name] = (1000 / mean, mean, percentile(values, 0.5), percentile(values, 0.99), max(values))
        print(
            f"   {name:<14} {rows[name][0]:8.0f} decisions/s   mean {mean:6.3f} ms   p50 {rows[name][2]:6.3f} ms   "
            f"p99 {rows[name][3]:6.3f} ms   max {rows[name][4]:7.3f} ms"
        )
    load_after = os.getloadavg()[0]
    cpu = {name: total / len(timings["baseline"]) for name, total in cpu_ms.items()}
    print(
        f"   CPU per decision: sceneos {cpu['sceneos']:.3f} ms, baseline {cpu['baseline']:.3f} ms "
        f"({cpu['sceneos'] / cpu['baseline']:.2f}x); load average {load_before:.1f} -> {load_after:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print(
        f"   COMMIT over 1 ms: sceneos {slow_commits['sceneos']}, baseline {slow_commits['baseline']} "
        f"of {decisions} each"
    )
    ratio = rows["sceneos"][1] / rows["baseline"][1]
    p99_ratio = rows["sceneos"][3] / rows["baseline"][3]
    p99_ok, ratio_ok = rows["sceneos"][3] < 5.0, ratio <= 5.0
    print(
        f"   SceneOS / baseline: mean {ratio:.2f}x, p99 {p99_ratio:.2f}x  (sceneos: the decision committed; "
        f"sceneos+outbox: and its event delivered by the outbox after commit)"
    )
    print(
        f"   target p99 < 5 ms: {'PASS' if p99_ok else 'FAIL'}; target within 5x of the baseline: "
        f"{'PASS' if ratio_ok else 'FAIL'}"
    )
    return not mismatches and p99_ok and ratio_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="also on a fresh PostgreSQL database")
    parser.add_argument(
        "--wal-checkpoint",
        choices=["background", "on-commit"],
        default="background",
        help="SQLite: the kernel's background checkpointer (a running application's), or SQLite's own on commit",
    )
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as directory:
        ok &= run(
            f"sqlite:///{Path(directory) / 'bench.db'}",
            "SQLite (temp file)",
            args.decisions,
            args.customers,
            args.warmup,
            args.wal_checkpoint,
        )
    if args.postgres:
        with temporary_database(server_url()) as url:
            ok &= run(url, "PostgreSQL", args.decisions, args.customers, args.warmup)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
