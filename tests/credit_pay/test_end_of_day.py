"""Credit pay end of day on real databases: the compute job (idempotent per business date and
account, refusing a day that has not ended), hold expiry, buckets over months on the simulated
clock with the collections and bureau hooks and the events partners get, charge-off, and the
property that running every day and jumping ahead (inline catch-up) give the same account."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_billing import (
    BOTH,
    PRODUCT,
    balances,
    buy,
    config,
    end_of_day,
    ledger_check,
    move_to,
    open_account,
    pay,
    run,
    statements,
    ties_to_ledger,
)

from core.errors import Conflict
from core.hookspecs import hookimpl
from core.testing.harness import tenant_config
from infra.compute import JobRunner
from products.credit_pay.end_of_day import recoveries_account, write_off_account
from products.credit_pay.service import PurchaseDraft


class Recorder:
    """A bank's plugin: collections cases, bureau reports and every event."""

    def __init__(self) -> None:
        self.cases: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.events: list[Any] = []

    @hookimpl
    def sceneos_credit_pay_collections(self, case: dict[str, Any]) -> None:
        self.cases.append(case)

    @hookimpl
    def sceneos_credit_pay_bureau_report(self, report: dict[str, Any]) -> None:
        self.reports.append(report)

    @hookimpl
    def sceneos_on_event(self, event: Any) -> None:
        self.events.append(event)


def cycle_of(app: Any, no: str) -> tuple[Any, ...]:
    view = run(app, lambda service: service.account(no))
    return (view.bucket, view.days_past_due, view.past_due_minor, view.revolving, view.balance_minor)


@BOTH
def test_the_job_runs_each_date_once_and_refuses_a_day_that_has_not_ended(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    first, second = open_account(app, 1), open_account(app, 2)
    buy(app, first, "flight", 130_000)
    move_to(sim_clock, date(2026, 1, 2))
    report = JobRunner(app).run("bank", "credit_pay.end_of_day", date(2026, 1, 2))
    assert report.failures
    assert "cannot run before that day has ended" in report.failures[0].error
    move_to(sim_clock, date(2026, 2, 10))
    for offset in range(40):
        end_of_day(app, date(2026, 1, 1) + timedelta(days=offset))
    again = JobRunner(app).run("bank", "credit_pay.end_of_day", date(2026, 1, 20))
    assert again.already_completed
    snapshot = (statements(app, first), balances(app, first), cycle_of(app, first))
    # Re-running the engine for a date the account has passed changes nothing.
    from products.credit_pay.end_of_day import run_through

    counts = run(app, lambda service: run_through(service, [service._account_row(first)], date(2026, 2, 5)))
    assert counts == {"accounts": 0}
    assert (statements(app, first), balances(app, first), cycle_of(app, first)) == snapshot
    assert [s.new_balance_minor for s in statements(app, first)] == [130_000 + 715 + 71 + 2_500, 130_000]
    assert statements(app, second) == []  # an idle account: no statement
    ties_to_ledger(app, first)
    ledger_check(app)


def test_the_job_expires_uncaptured_authorizations(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config({"authorization_hold_minutes": 60}))
    no = open_account(app)
    line = run(app, lambda service: service.account(no)).line_minor
    draft = PurchaseDraft(purchase_id="held", account_no=no, merchant_id="air", amount_minor=40_000)
    run(app, lambda service: service.authorize(draft))
    move_to(sim_clock, date(2026, 1, 3))
    report = end_of_day(app, date(2026, 1, 2))
    assert report.summary["holds_expired"] == 1 and report.summary["purchases_expired"] == 1
    assert run(app, lambda service: service.purchase("held")).status == "expired"
    assert run(app, lambda service: service.account(no)).available_minor == line
    with pytest.raises(Conflict):
        run(app, lambda service: service.capture("held"))
    ledger_check(app)


@BOTH
def test_buckets_move_over_months_with_hooks_and_events_then_charge_off(make_sceneos, sim_clock) -> None:
    recorder = Recorder()
    app = make_sceneos(
        config({"charge_off_days_past_due": 90}, plugins=["recorder"]), plugins={"recorder": recorder}
    )
    no = open_account(app)
    buy(app, no, "flight", 130_000)
    seen = []
    for day in (date(2026, 1, 26), date(2026, 2, 6), date(2026, 3, 6), date(2026, 4, 6)):
        move_to(sim_clock, day)
        seen.append(cycle_of(app, no)[:2])
    # Days past due count from 26 January (the day after the missed due date).
    assert seen == [("M0", 0), ("M1", 11), ("M2", 39), ("M3", 70)]
    # The credit module's profile (internal history) sees the days past due.
    customer_no = run(app, lambda service: service.account(no)).customer_no
    assert run(app, lambda service: service.internal_history(customer_no))["current_days_past_due"] == 70
    assert [(c["previous_bucket"], c["bucket"]) for c in recorder.cases] == [
        ("M0", "M1"),
        ("M1", "M2"),
        ("M2", "M3"),
    ]
    assert all("customer_no" in c and c["account_no"] == no for c in recorder.cases)
    reasons = [r["reason"] for r in recorder.reports]
    assert reasons.count("statement") == 4 and reasons.count("overdue") == 3

    owed_before = balances(app, no)
    move_to(sim_clock, date(2026, 4, 27))  # 90 days past due on 25 April
    account = run(app, lambda service: service.account(no))
    assert account.status == "charged_off" and account.balance_minor == 0
    assert account.days_past_due == 90
    after = balances(app, no)
    assert all(after[c] == 0 for c in ("principal", "interest", "penalty", "fee"))
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        written_off = ledger.balance(write_off_account("CNY")).net_posted_minor
    assert written_off >= sum(owed_before[c] for c in ("principal", "interest", "penalty", "fee"))
    assert recorder.reports[-1]["reason"] == "charged_off"
    types = [e.type for e in recorder.events if e.type.startswith("credit_pay.")]
    for wanted in (
        "credit_pay.statement.issued",
        "credit_pay.account.overdue",
        "credit_pay.account.bucket_changed",
        "credit_pay.account.charged_off",
    ):
        assert wanted in types
    overdue = next(e for e in recorder.events if e.type == "credit_pay.account.overdue")
    assert overdue.payload["partner_id"] == "travel_app" and overdue.payload["past_due_minor"] == 13_000
    assert types.count("credit_pay.account.overdue") == 1
    with pytest.raises(Conflict):
        run(
            app,
            lambda service: service.authorize(
                PurchaseDraft(purchase_id="late", account_no=no, merchant_id="air", amount_minor=1_000)
            ),
        )
    # Charged off: nothing accrues any more.
    move_to(sim_clock, date(2026, 6, 1))
    assert balances(app, no) == after
    ledger_check(app)


@BOTH
def test_a_charge_off_writes_off_the_unbilled_installments_too(make_sceneos, sim_clock) -> None:
    from products.credit_pay.installments import InstallmentService, PurchaseConversion, installment_account

    recorder = Recorder()
    plans = [{"terms": 12, "method": "equal_principal", "period_rate_bps": 60}]
    app = make_sceneos(
        config({"charge_off_days_past_due": 90, "installment_plans": plans}, plugins=["recorder"]),
        plugins={"recorder": recorder},
    )
    no = open_account(app)
    buy(app, no, "sofa", 120_000)
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="sofa", terms=12, method="equal_principal")
    plan_no = run(app, lambda pay: InstallmentService(pay).convert_purchase(draft)).plan_no
    # Nothing is ever repaid: the first installment (billed 5 January) falls past due on 26
    # January, 90 days past due on 25 April.
    move_to(sim_clock, date(2026, 4, 20))
    assert run(app, lambda service: service.account(no)).status == "active"
    billed = run(app, lambda pay: InstallmentService(pay).plan(plan_no))
    billed_principal = sum(i.billed_principal_minor or 0 for i in billed.installments)
    assert billed.status == "active" and 0 < billed_principal < 120_000
    owed_before = balances(app, no)
    assert owed_before["principal"] == billed_principal  # the rest is still in the plan

    move_to(sim_clock, date(2026, 4, 27))
    account = run(app, lambda service: service.account(no))
    assert account.status == "charged_off" and account.balance_minor == 0
    closed = run(app, lambda pay: InstallmentService(pay).plan(plan_no))
    assert closed.status == "charged_off" and closed.remaining_principal_minor == 0
    assert {i.status for i in closed.installments} == {"billed", "charged_off"}
    assert ledger_balance(app, installment_account(no)) == 0
    after = balances(app, no)
    assert all(after[c] == 0 for c in ("principal", "interest", "penalty", "fee"))
    # Written off: the whole principal, billed or not, with what was owed of interest, penalty and
    # fees (a few more days of penalty interest accrued between the two readings).
    written_off = ledger_balance(app, write_off_account("CNY"))
    assert written_off >= 120_000 + owed_before["interest"] + owed_before["penalty"] + owed_before["fee"]
    assert written_off - 120_000 < 2 * (owed_before["interest"] + owed_before["penalty"] + owed_before["fee"])
    charged = next(e for e in recorder.events if e.type == "credit_pay.account.charged_off")
    assert charged.payload["written_off_minor"] == written_off
    plan_event = next(e for e in recorder.events if e.type == "credit_pay.installment_plan.charged_off")
    assert plan_event.payload["principal_minor"] == 120_000 - billed_principal
    # Later billing days bill nothing of the plan; a recovery counts the whole write-off.
    move_to(sim_clock, date(2026, 8, 1))
    assert ledger_balance(app, installment_account(no)) == 0
    recovered = pay(app, no, "rec-1", written_off + 500)
    assert (recovered.allocation["recovery"], recovered.allocation["credit"]) == (written_off, 500)
    ledger_check(app)


def charged_off(make_sceneos: Any, sim_clock: Any) -> tuple[Any, str, Recorder]:
    recorder = Recorder()
    app = make_sceneos(
        config({"charge_off_days_past_due": 90}, plugins=["recorder"]), plugins={"recorder": recorder}
    )
    no = open_account(app)
    buy(app, no, "flight", 130_000)
    move_to(sim_clock, date(2026, 4, 27))
    assert run(app, lambda service: service.account(no)).status == "charged_off"
    return app, no, recorder


def ledger_balance(app: Any, code: str) -> int:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        return ledger.balance(code).net_posted_minor


@BOTH
def test_a_repayment_after_charge_off_is_a_recovery_until_the_write_off_is_recovered(
    make_sceneos, sim_clock
) -> None:
    app, no, recorder = charged_off(make_sceneos, sim_clock)
    written_off = ledger_balance(app, write_off_account("CNY"))
    assert written_off > 130_000  # the principal with its interest, penalty and late fees

    first = pay(app, no, "rec-1", 100_000)
    assert first.allocation == {"penalty": 0, "fee": 0, "interest": 0, "principal": 0, "recovery": 100_000, "credit": 0}
    assert ledger_balance(app, recoveries_account("CNY")) == 100_000
    account = run(app, lambda service: service.account(no))
    assert account.status == "charged_off" and account.balance_minor == 0
    # A retry answers the stored recovery and moves nothing.
    assert not pay(app, no, "rec-1", 100_000).created
    assert ledger_balance(app, recoveries_account("CNY")) == 100_000
    with pytest.raises(Conflict):
        pay(app, no, "rec-1", 99_000)
    assert "recovered" not in [r["reason"] for r in recorder.reports]

    # The rest and 1,000 more: the write-off is recovered, the excess is owed to the customer.
    rest = written_off - 100_000
    second = pay(app, no, "rec-2", rest + 1_000, partner_id="travel_app")
    assert second.allocation["recovery"] == rest and second.allocation["credit"] == 1_000
    assert ledger_balance(app, recoveries_account("CNY")) == written_off
    assert run(app, lambda service: service.account(no)).balance_minor == -1_000
    assert [r["reason"] for r in recorder.reports].count("recovered") == 1
    assert recorder.reports[-1]["account_no"] == no
    # Anything later is all credit balance; the bureau is not told again.
    assert pay(app, no, "rec-3", 500).allocation["credit"] == 500
    assert [r["reason"] for r in recorder.reports].count("recovered") == 1
    received = [e.payload for e in recorder.events if e.type == "credit_pay.payment.received"]
    assert [(p["recovered_minor"], p["unrecovered_minor"]) for p in received] == [
        (100_000, rest),
        (rest, 0),
        (0, 0),
    ]
    assert received[1]["channel"] == "partner" and received[1]["balance_minor"] == -1_000
    assert [r.repayment_id for r in run(app, lambda service: service.repayments(no))] == ["rec-1", "rec-2", "rec-3"]
    ledger_check(app)


# --- catch-up equivalence --------------------------------------------------------------------------

EXAMPLES = itertools.count(1)  # every example shares the test's database: its own ids
EVENT = st.tuples(
    st.integers(min_value=0, max_value=40),  # day offset from the start
    st.sampled_from(["buy", "pay"]),
    st.integers(min_value=1_000, max_value=60_000),
)


def two_banks(compound: bool = False) -> dict[str, Any]:
    product = {**PRODUCT, "compound_interest": compound}
    modules = {"party": {}, "credit": {}, "risk": {}, "credit_pay": {"products": {"standard": product}}}
    return {"tenants": {name: tenant_config(modules=modules) for name in ("daily", "jumping")}}


def view_of(app: Any, tenant_id: str, no: str) -> dict[str, Any]:
    tenant = app.tenant(tenant_id)
    with tenant.unit_of_work() as uow:
        service = tenant.module("credit_pay").container.service(uow=uow)
        account = service.account(no)
        rows = [s.model_dump(exclude={"statement_no", "account_no", "lines"}) for s in service.statements(no)]
        from products.credit_pay.end_of_day import read_balances

        owed = read_balances(service.ledger, [no])[no]
    fields = (
        "balance_minor",
        "interest_minor",
        "penalty_minor",
        "fees_minor",
        "credit_balance_minor",
        "past_due_minor",
        "days_past_due",
        "bucket",
        "revolving",
        "available_minor",
        "status",
    )
    return {"account": {f: getattr(account, f) for f in fields}, "statements": rows, "owed": owed}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT, min_size=1, max_size=6), compound=st.booleans())
def test_running_every_day_and_jumping_ahead_give_the_same_account(make_sceneos, sim_clock, events, compound) -> None:
    """Bank "daily" runs the end-of-day job for every date; bank "jumping" never runs it, so each
    touch catches the account up. Same script, same clock: same statements, balances and state
    (with and without interest on interest)."""
    from core.testing.factories import mobile, resident_id
    from middle.party.service import CustomerDraft
    from products.credit_pay.service import ActivationDraft

    app = make_sceneos(two_banks(compound))
    example = next(EXAMPLES)
    start = app.tenant("daily").business_date()
    accounts: dict[str, str] = {}
    for tenant_id in ("daily", "jumping"):
        tenant = app.tenant(tenant_id)
        with tenant.unit_of_work() as uow:
            draft = CustomerDraft(
                name="Li Lei",
                id_number=resident_id(date(1990, 5, 1), sequence=example),
                phone=mobile(example),
            )
            customer = tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no
        with tenant.unit_of_work() as uow:
            pay_service = tenant.module("credit_pay").container.service(uow=uow)
            result = pay_service.activate(ActivationDraft(request_id=f"a{example}", customer_no=customer))
            accounts[tenant_id] = result.account.account_no
    runner = JobRunner(app)
    ran_through = start - timedelta(days=1)

    def advance_to(day: date) -> None:
        nonlocal ran_through
        if day > app.tenant("daily").business_date():
            move_to(sim_clock, day)
        while ran_through < day - timedelta(days=1):
            ran_through += timedelta(days=1)
            report = runner.run("daily", "credit_pay.end_of_day", ran_through)
            assert not report.failures, report.failures

    for n, (offset, kind, amount) in enumerate(sorted(events, key=lambda e: e[0])):
        advance_to(start + timedelta(days=offset))
        for tenant_id, no in accounts.items():
            tenant = app.tenant(tenant_id)
            with tenant.unit_of_work() as uow:
                service = tenant.module("credit_pay").container.service(uow=uow)
                if kind == "buy":
                    view = service.authorize(
                        PurchaseDraft(
                            purchase_id=f"p{example}-{n}", account_no=no, merchant_id="m", amount_minor=amount
                        )
                    )
                    if view.status == "authorized":
                        service.capture(f"p{example}-{n}")
                else:
                    from products.credit_pay.repayment import RepaymentDraft

                    service.repay(
                        RepaymentDraft(repayment_id=f"r{example}-{n}", account_no=no, amount_minor=amount)
                    )
    advance_to(start + timedelta(days=50))
    assert view_of(app, "daily", accounts["daily"]) == view_of(app, "jumping", accounts["jumping"])
    for tenant_id in ("daily", "jumping"):
        tenant = app.tenant(tenant_id)
        with tenant.unit_of_work() as uow:
            ledger = tenant.module("ledger").container.ledger(session=uow.session)
            assert ledger.trial_balance("CNY").net_minor == 0 and ledger.verify() == []


@given(
    processed_through=st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)),
    days=st.integers(min_value=-2, max_value=70),
    billing_day=st.integers(min_value=1, max_value=28),
)
def test_a_billing_day_falls_in_the_run_exactly_when_one_of_its_days_is_one(
    processed_through: date, days: int, billing_day: int
) -> None:
    from types import SimpleNamespace

    from products.credit_pay.end_of_day import Lifecycle

    through = processed_through + timedelta(days=days)
    state: Any = SimpleNamespace(
        cycle=SimpleNamespace(processed_through=processed_through), product=SimpleNamespace(billing_day=billing_day)
    )
    run_days = [processed_through + timedelta(days=i) for i in range(1, days + 1)]
    assert Lifecycle._bills_between(state, through) == any(d.day == billing_day for d in run_days)


def test_the_batchs_cycle_rows_carry_every_column_of_a_cycle() -> None:
    # The job reads and writes cycles as CycleRow: a column added to the model and not to the row
    # would be neither read nor written by end of day.
    from products.credit_pay.end_of_day import CYCLE_STATE, CycleRow
    from products.credit_pay.models import CreditPayCycle

    assert set(CycleRow.__dataclass_fields__) == {c.name for c in CreditPayCycle.__table__.c} - {"tenant_id"}
    assert set(CYCLE_STATE) == set(CycleRow.__dataclass_fields__) - {"id", "account_no", "partner_id"}
