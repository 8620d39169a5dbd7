"""A converted purchase refunded in part, on real databases: the plan is reduced (its unbilled
installments scheduled again, over the same due dates, for what is left), or closed when the refund
reaches its unbilled principal; retries change nothing; billing then follows the new schedule;
the ledger's installment receivable always equals the principal still scheduled. A hypothesis
property over random plans, billings and refunds: principal billed, scheduled, refunded and
written off always add up to the plan's principal."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_credit_pay_service import ledger_check, purchase, run
from test_installments import balances, bill, bought, counts, next_example, plans, product
from test_lines import EventRecorder

from core.testing.harness import tenant_config
from products.credit_pay.calc import schedule
from products.credit_pay.installments import PurchaseConversion, billing_dates

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def at(clock: Any, day: date) -> None:
    clock.set(datetime(day.year, day.month, day.day, 1, tzinfo=clock.now().tzinfo))


def with_events(make_sceneos: Any, credit_pay: dict[str, Any]) -> tuple[Any, EventRecorder]:
    events = EventRecorder()
    modules = {"party": {}, "credit": {}, "risk": {}, "credit_pay": credit_pay}
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=modules, plugins=["events"])}},
                       plugins={"events": events})
    return app, events


@BOTH
def test_a_partial_refund_reduces_the_plan_and_billing_follows_the_new_schedule(make_sceneos, sim_clock) -> None:
    app, events = with_events(make_sceneos, product())
    account_no = bought(app, 186_000)
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=6, method="annuity")
    plan = plans(app, lambda s: s.convert_purchase(draft))
    dates = billing_dates(date(2026, 1, 1), 5, 6)
    billed = []
    for due_on in dates[:2]:
        at(sim_clock, due_on)
        billed += bill(app, account_no, due_on)
    billed_principal = sum(i.principal_minor for i in billed)
    unbilled = 186_000 - billed_principal
    before = balances(app, account_no)
    assert (before["receivable"], before["installment"]) == (billed_principal, unbilled)

    run(app, lambda pay: pay.refund("flight-1", "rf-1", 60_000))
    reduced = plans(app, lambda s: s.plan(plan.plan_no))
    assert reduced.status == "active" and reduced.closed_at is None
    assert (reduced.refunded_principal_minor, reduced.remaining_principal_minor) == (60_000, unbilled - 60_000)
    # The four unbilled installments, on their own due dates, are the plan's method at its rate
    # for what is left, to the minor unit.
    again = schedule("annuity", unbilled - 60_000, 4, Decimal("0.01"))
    scheduled = [i for i in reduced.installments if i.status == "scheduled"]
    assert [(i.due_on, i.principal_minor, i.interest_minor, i.fee_minor) for i in scheduled] == [
        (due_on, item.principal_minor, item.charge_minor, 0) for due_on, item in zip(dates[2:], again.installments, strict=True)
    ]
    assert reduced.total_charge_minor == sum(i.interest_minor for i in billed) + again.total_charge_minor
    assert reduced.total_charge_minor < plan.total_charge_minor
    # The refund's credit and the principal out of the plan meet in the revolving balance: what
    # revolves is what was billed; the installment receivable is what is still scheduled.
    after = balances(app, account_no)
    assert (after["receivable"], after["installment"]) == (billed_principal, unbilled - 60_000)
    event = next(e for e in events.events if e.type == "credit_pay.installment_plan.reduced")
    assert {k: event.payload[k] for k in ("plan_no", "refund_id", "refunded_minor", "remaining_principal_minor")} == {
        "plan_no": plan.plan_no, "refund_id": "rf-1", "refunded_minor": 60_000, "remaining_principal_minor": unbilled - 60_000
    }
    assert (event.payload["charges_before_minor"], event.payload["charges_after_minor"]) == (
        plan.total_charge_minor, reduced.total_charge_minor
    )

    # A retry of the refund reduces nothing twice.
    entries = counts(app)[2]
    run(app, lambda pay: pay.refund("flight-1", "rf-1", 60_000))
    assert counts(app)[2] == entries
    assert plans(app, lambda s: s.plan(plan.plan_no)) == reduced

    # A second partial refund reduces it again; billing follows; the plan completes on its date.
    run(app, lambda pay: pay.refund("flight-1", "rf-2", 10_000))
    for due_on in dates[2:]:
        at(sim_clock, due_on)
        billed += bill(app, account_no, due_on)
    done = plans(app, lambda s: s.plan(plan.plan_no))
    assert done.status == "completed" and done.refunded_principal_minor == 70_000
    assert sum(i.principal_minor for i in billed) + 70_000 == 186_000
    assert balances(app, account_no)["installment"] == 0
    ledger_check(app)


@BOTH
def test_a_refund_reaching_the_unbilled_principal_closes_the_plan(make_sceneos, sim_clock) -> None:
    app = make_sceneos_plain(make_sceneos)
    account_no = bought(app, 90_000)
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=3, method="flat_fee")
    plan = plans(app, lambda s: s.convert_purchase(draft))
    dates = billing_dates(date(2026, 1, 1), 5, 3)
    for due_on in dates[:2]:
        at(sim_clock, due_on)
        bill(app, account_no, due_on)
    # 30,000 is unbilled; a refund of 40,000 (not the whole purchase) leaves nothing of the plan.
    run(app, lambda pay: pay.refund("flight-1", "rf-1", 40_000))
    closed = plans(app, lambda s: s.plan(plan.plan_no))
    assert closed.status == "refunded" and closed.refunded_principal_minor == 30_000
    assert [i.status for i in closed.installments] == ["billed", "billed", "refunded"]
    # The plan's charges are what it billed: the refund waives the third installment's fee, and the
    # plan as converted keeps its figures.
    assert closed.total_charge_minor == plan.total_charge_minor
    # What the customer still owes of the purchase (90,000 less 40,000) all revolves now: the
    # 60,000 billed and the 30,000 out of the plan, less the refund.
    after = balances(app, account_no)
    assert (after["receivable"], after["installment"]) == (90_000 - 40_000, 0)
    # The rest of the purchase can still be refunded; the plan stays closed.
    run(app, lambda pay: pay.refund("flight-1", "rf-2", 50_000))
    assert plans(app, lambda s: s.plan(plan.plan_no)).refunded_principal_minor == 30_000
    at(sim_clock, dates[2])
    assert bill(app, account_no, dates[2]) == []
    ledger_check(app)


def make_sceneos_plain(make_sceneos: Any) -> Any:
    modules = {"party": {}, "credit": {}, "risk": {}, "credit_pay": product()}
    return make_sceneos({"tenants": {"bank": tenant_config(modules=modules)}})


SHARED: dict[str, Any] = {}


@settings(max_examples=20, deadline=None)
@given(
    principal=st.integers(10_000, 300_000),
    method=st.sampled_from([(3, "flat_fee"), (6, "annuity"), (12, "equal_principal")]),
    billed_first=st.integers(0, 11),
    refunds=st.lists(st.integers(1, 120_000), min_size=1, max_size=4),
)
def test_principal_billed_scheduled_and_refunded_add_up(
    make_sceneos, sim_clock, principal: int, method: tuple[int, str], billed_first: int, refunds: list[int]
) -> None:
    """For any plan, any number of installments billed and any refunds of the purchase (as much as
    is refundable), the plan's principal is exactly what was billed, what is scheduled, what
    refunds took out and what a charge-off wrote off; the installment receivable is what is
    scheduled; the ledger balances."""
    app, example, account = next_example(SHARED, sim_clock, lambda: make_sceneos_plain(make_sceneos), first_sequence=200)
    start = app.tenant("bank").business_date()
    no = account.account_no
    principal = min(principal, account.line_minor)
    pid = f"p-{example}"
    run(app, lambda pay: pay.authorize(purchase(no, pid, principal)))
    run(app, lambda pay: pay.capture(pid))
    terms, name = method
    draft = PurchaseConversion(plan_id=f"inst-{example}", purchase_id=pid, terms=terms, method=name)
    plan = plans(app, lambda s: s.convert_purchase(draft))
    dates = billing_dates(start, 5, terms)
    for due_on in dates[: min(billed_first, terms)]:
        at(sim_clock, due_on)
        bill(app, no, due_on)
    refunded = 0
    for k, amount in enumerate(refunds):
        amount = min(amount, principal - refunded)
        if amount <= 0:
            break
        run(app, lambda pay, k=k, amount=amount: pay.refund(pid, f"rf-{example}-{k}", amount))
        refunded += amount
    view = plans(app, lambda s: s.plan(plan.plan_no))
    billed = sum(i.billed_principal_minor or 0 for i in view.installments if i.status == "billed")
    scheduled = sum(i.principal_minor for i in view.installments if i.status == "scheduled")
    # An account never repaid is charged off after months of billing: its plan's rest written off.
    charged_off = sum(i.principal_minor for i in view.installments if i.status == "charged_off")
    assert billed + scheduled + charged_off + view.refunded_principal_minor == principal
    assert view.remaining_principal_minor == scheduled
    assert all(min(i.principal_minor, i.interest_minor, i.fee_minor) >= 0 for i in view.installments)
    assert view.refunded_principal_minor <= refunded
    if view.status == "active":
        assert view.refunded_principal_minor == refunded
    assert balances(app, no)["installment"] == scheduled
    ledger_check(app)
