"""Installment plans on real databases: converting a captured purchase or part of the revolving
balance, billing every installment with its statement over the plan's life on the simulated clock,
early payoff under each configured rule, cancellation, idempotent retries, refusals that change
nothing, and the ledger (trial balance zero, installment receivable emptied)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from test_credit_pay_service import GOOD_CONSENT, activate, config, ledger_check, purchase, register, run

from core.errors import Conflict, NotFound, Rejected
from infra.ledger import LedgerEntry
from products.credit_pay.calc import schedule
from products.credit_pay.end_of_day import fee_account, interest_account, interest_income_account
from products.credit_pay.installments import (
    BalanceConversion,
    InstallmentService,
    PurchaseConversion,
    bill_installments_due,
    billing_dates,
    installment_account,
    installment_fee_income_account,
    installment_interest_income_account,
)
from products.credit_pay.models import CreditPayAccount, CreditPayInstallment, CreditPayInstallmentPlan
from products.credit_pay.service import receivable_account

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
PLANS = [
    {"terms": 3, "method": "flat_fee", "period_rate_bps": 60},
    {"terms": 6, "method": "annuity", "period_rate_bps": 100},
    {"terms": 12, "method": "equal_principal", "period_rate_bps": 100},
    {"terms": 24, "method": "annuity", "period_rate_bps": "199.99"},  # 2399.88 bps at the reference
]


def product(**extra: Any) -> dict[str, Any]:
    plans = extra.pop("installment_plans", PLANS[:3])
    limits = {"max_purchase_minor": 10**9, "max_daily_minor": 10**9}
    return {"products": {"standard": {"name": "Credit Pay", "installment_plans": plans, **limits, **extra}}}


def plans(app: Any, fn: Any, partner_id: str | None = "travel_app") -> Any:
    return run(app, lambda pay: fn(InstallmentService(pay)), partner_id=partner_id)


def bought(app: Any, amount_minor: int = 186_000, purchase_id: str = "flight-1") -> str:
    account = activate(app, register(app)).account
    run(app, lambda pay: pay.authorize(purchase(account.account_no, purchase_id, amount_minor)))
    run(app, lambda pay: pay.capture(purchase_id))
    return account.account_no


def bill(app: Any, account_no: str, statement_date: date) -> list[Any]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        account = uow.session.scalars(
            select(CreditPayAccount).where(CreditPayAccount.account_no == account_no)
        ).one()
        return bill_installments_due(uow.session, ledger, account, statement_date)


def balances(app: Any, account_no: str) -> dict[str, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        for code in (installment_interest_income_account("CNY"), installment_fee_income_account("CNY")):
            ledger.open_account(code, "CNY", "income")
        codes = {
            "receivable": receivable_account(account_no),
            "interest": interest_account(account_no),
            "fees": fee_account(account_no),
            "installment": installment_account(account_no),
            "interest_income": installment_interest_income_account("CNY"),
            "fee_income": installment_fee_income_account("CNY"),
        }
        try:
            ledger.get_account(codes["installment"])
        except Exception:
            codes.pop("installment")
        found = ledger.balances(list(codes.values()))
        result = {name: found[code].net_posted_minor for name, code in codes.items()}
        result.setdefault("installment", 0)
        return result


def revolving_interest(app: Any) -> int:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        return ledger.balance(interest_income_account("CNY")).net_posted_minor


def counts(app: Any) -> tuple[int, int, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        return (
            uow.session.scalar(select(func.count(CreditPayInstallmentPlan.id))),
            uow.session.scalar(select(func.count(CreditPayInstallment.id))),
            uow.session.scalar(select(func.count(LedgerEntry.id))),
        )


def test_billing_dates_are_the_billing_days_strictly_after_the_conversion() -> None:
    assert billing_dates(date(2026, 1, 1), 5, 3) == [date(2026, 1, 5), date(2026, 2, 5), date(2026, 3, 5)]
    assert billing_dates(date(2026, 1, 5), 5, 2) == [date(2026, 2, 5), date(2026, 3, 5)]
    assert billing_dates(date(2026, 11, 20), 5, 3) == [date(2026, 12, 5), date(2027, 1, 5), date(2027, 2, 5)]


LIVES = pytest.mark.parametrize(
    ("terms", "method", "rate"),
    [(6, "annuity", "0.01"), (12, "equal_principal", "0.01"), (3, "flat_fee", "0.006")],
)


@BOTH
@LIVES
def test_a_converted_purchase_is_billed_over_its_life_until_paid_off(
    make_sceneos, sim_clock, terms: int, method: str, rate: str
) -> None:
    app = make_sceneos(config(product()))
    account_no = bought(app, 186_007)
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=terms, method=method)
    plan = plans(app, lambda s: s.convert_purchase(draft))
    expected = schedule(method, 186_007, terms, Decimal(rate))
    charges = expected.total_charge_minor
    flat = method == "flat_fee"
    assert plan.created and plan.status == "active" and plan.principal_minor == 186_007
    assert (
        plan.annualized_rate_bps == str(expected.annualized_rate_bps) and plan.total_charge_minor == charges
    )
    assert [i.interest_minor + i.fee_minor for i in plan.installments] == [
        i.charge_minor for i in expected.installments
    ]
    assert [i.due_on for i in plan.installments] == billing_dates(date(2026, 1, 1), 5, terms)
    assert balances(app, account_no) == {
        "receivable": 0,
        "interest": 0,
        "fees": 0,
        "installment": 186_007,
        "interest_income": 0,
        "fee_income": 0,
    }
    # A retry answers the same plan and moves nothing.
    before = counts(app)
    again = plans(app, lambda s: s.convert_purchase(draft))
    assert not again.created and again.plan_no == plan.plan_no and counts(app) == before
    with pytest.raises(Conflict):
        plans(app, lambda s: s.convert_purchase(draft.model_copy(update={"terms": 24, "method": "annuity"})))

    billed_principal = billed_charges = 0
    for number, due_on in enumerate(billing_dates(date(2026, 1, 1), 5, terms), start=1):
        sim_clock.set(datetime(due_on.year, due_on.month, due_on.day, 1, tzinfo=sim_clock.now().tzinfo))
        # Nothing is billed for the day before its statement date.
        assert bill(app, account_no, due_on - timedelta(days=1)) == []
        items = bill(app, account_no, due_on)
        assert [(i.plan_no, i.term_no) for i in items] == [(plan.plan_no, number)]
        row = expected.installments[number - 1]
        assert (items[0].principal_minor, items[0].interest_minor, items[0].fee_minor) == (
            row.principal_minor,
            0 if flat else row.charge_minor,
            row.charge_minor if flat else 0,
        )
        entries = counts(app)[2]
        assert bill(app, account_no, due_on) == items and counts(app)[2] == entries  # idempotent
        billed_principal += items[0].principal_minor
        billed_charges += items[0].interest_minor + items[0].fee_minor
        assert balances(app, account_no)["installment"] == 186_007 - billed_principal
    assert billed_principal == 186_007 and billed_charges == charges
    # Principal back in the revolving receivable; each charge in its own receivable, never in the
    # principal (it used no line).
    assert balances(app, account_no) == {
        "receivable": 186_007,
        "interest": 0 if flat else charges,
        "fees": charges if flat else 0,
        "installment": 0,
        "interest_income": 0 if flat else charges,
        "fee_income": charges if flat else 0,
    }
    final = plans(app, lambda s: s.plan(plan.plan_no))
    assert final.status == "completed" and final.remaining_principal_minor == 0
    assert all(i.status == "billed" for i in final.installments)
    ledger_check(app)


@BOTH
def test_a_bill_installment_converts_part_of_the_revolving_balance(make_sceneos) -> None:
    app = make_sceneos(config(product()))
    account_no = bought(app, 300_000)
    draft = BalanceConversion(
        plan_id="bill-1",
        account_no=account_no,
        amount_minor=120_000,
        terms=3,
        method="flat_fee",
        statement_ref="st-1",
    )
    plan = plans(app, lambda s: s.convert_balance(draft))
    assert plan.source == "balance" and plan.statement_ref == "st-1" and plan.total_charge_minor == 2_160
    assert [i.fee_minor for i in plan.installments] == [720, 720, 720]
    assert balances(app, account_no)["receivable"] == 180_000
    assert not plans(app, lambda s: s.convert_balance(draft)).created
    with pytest.raises(Conflict) as exists:
        plans(app, lambda s: s.convert_balance(draft.model_copy(update={"amount_minor": 100_000})))
    assert exists.value.details[0]["code"] == "exists_with_different_principal_minor"
    # More than the revolving balance is refused.
    with pytest.raises(Conflict) as short:
        plans(
            app,
            lambda s: s.convert_balance(
                draft.model_copy(update={"plan_id": "bill-2", "amount_minor": 180_001})
            ),
        )
    assert short.value.details[0]["code"] == "insufficient_revolving_balance"
    items = [
        item for due_on in billing_dates(date(2026, 1, 1), 5, 3) for item in bill(app, account_no, due_on)
    ]
    assert sum(i.principal_minor for i in items) == 120_000 and sum(i.fee_minor for i in items) == 2_160
    assert balances(app, account_no)["fee_income"] == 2_160
    assert balances(app, account_no)["fees"] == 2_160 and balances(app, account_no)["receivable"] == 300_000
    ledger_check(app)


@pytest.mark.parametrize(
    ("rule", "interest"),
    [("charges_waived", 0), ("next_period_charge", 1_000), ("all_charges", 5_500)],
)
def test_early_payoff_bills_the_remaining_principal_with_the_configured_charges(
    make_sceneos, sim_clock, rule: str, interest: int
) -> None:
    app = make_sceneos(config(product(early_payoff=rule, early_payoff_fee_bps="50")))
    account_no = bought(app, 120_000)
    plan = plans(
        app,
        lambda s: s.convert_purchase(
            PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=12, method="equal_principal")
        ),
    )
    first, second, third = billing_dates(date(2026, 1, 1), 5, 3)
    billed = bill(app, account_no, first) + bill(app, account_no, second)
    assert [i.interest_minor for i in billed] == [1_200, 1_100]
    sim_clock.set(datetime(2026, 2, 20, 2, tzinfo=sim_clock.now().tzinfo))
    paid = plans(app, lambda s: s.pay_off(plan.plan_no))
    assert paid.status == "paid_off" and paid.remaining_principal_minor == 0
    # Remaining principal 100,000; the early payoff fee is 0.50 % of it.
    assert sum(i.billed_interest_minor or 0 for i in paid.installments) == 1_200 + 1_100 + interest
    assert sum(i.billed_fee_minor or 0 for i in paid.installments) == 500
    # The interest receivable also holds the revolving interest the catch-up accrued before the
    # payoff (the statements went unpaid); the plan's charges are in it and never in the principal.
    assert balances(app, account_no) == {
        "receivable": 120_000,
        "interest": 1_200 + 1_100 + interest + revolving_interest(app),
        "fees": 500,
        "installment": 0,
        "interest_income": 1_200 + 1_100 + interest,
        "fee_income": 500,
    }
    before = counts(app)
    assert not plans(app, lambda s: s.pay_off(plan.plan_no)).created and counts(app) == before
    with pytest.raises(Conflict):
        plans(app, lambda s: s.cancel(plan.plan_no))
    # The payoff posted at once: later statements bill nothing more of the plan.
    assert bill(app, account_no, third) == [] and bill(app, account_no, date(2027, 3, 5)) == []
    assert balances(app, account_no)["installment"] == 0
    ledger_check(app)


@BOTH
def test_cancellation_before_the_first_billing_returns_the_principal(make_sceneos) -> None:
    app = make_sceneos(config(product()))
    account_no = bought(app)
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=3, method="flat_fee")
    plan = plans(app, lambda s: s.convert_purchase(draft))
    cancelled = plans(app, lambda s: s.cancel(plan.plan_no))
    assert cancelled.created and cancelled.status == "cancelled"
    assert all(i.status == "cancelled" for i in cancelled.installments)
    assert balances(app, account_no) == {
        "receivable": 186_000,
        "interest": 0,
        "fees": 0,
        "installment": 0,
        "interest_income": 0,
        "fee_income": 0,
    }
    assert not plans(app, lambda s: s.cancel(plan.plan_no)).created
    with pytest.raises(Conflict):
        plans(app, lambda s: s.pay_off(plan.plan_no))
    assert bill(app, account_no, date(2026, 6, 5)) == []  # nothing of a cancelled plan is billed
    # The purchase may be converted again; once billed, a plan can no longer be cancelled.
    second = plans(app, lambda s: s.convert_purchase(draft.model_copy(update={"plan_id": "inst-2"})))
    bill(app, account_no, date(2026, 1, 5))
    with pytest.raises(Conflict) as billed:
        plans(app, lambda s: s.cancel(second.plan_no))
    assert billed.value.details[0]["code"] == "plan_already_billed"
    ledger_check(app)


@BOTH
def test_every_refused_conversion_changes_nothing(make_sceneos) -> None:
    app = make_sceneos(config(product(installment_plans=PLANS)))
    account_no = bought(app)
    run(app, lambda pay: pay.authorize(purchase(account_no, "held", 50_000)))
    run(app, lambda pay: pay.authorize(purchase(account_no, "small", 10_005)))
    run(app, lambda pay: pay.capture("small"))
    run(app, lambda pay: pay.authorize(purchase(account_no, "returned", 40_000)))
    run(app, lambda pay: pay.capture("returned"))
    run(app, lambda pay: pay.refund("returned", "rf-1", 40_000))
    run(app, lambda pay: pay.authorize(purchase(account_no, "tiny", 9_999)))
    run(app, lambda pay: pay.capture("tiny"))
    plans(
        app,
        lambda s: s.convert_purchase(
            PurchaseConversion(plan_id="ok", purchase_id="flight-1", terms=3, method="flat_fee")
        ),
    )
    before = counts(app), balances(app, account_no)

    def refused(error: type[Exception], code: str | None, **draft: Any) -> None:
        fields = {"plan_id": "bad", "purchase_id": "flight-1", "terms": 6, "method": "annuity", **draft}
        with pytest.raises(error) as caught:
            plans(app, lambda s: s.convert_purchase(PurchaseConversion(**fields)))
        if code is not None:
            assert caught.value.details[0]["code"] == code
        assert (counts(app), balances(app, account_no)) == before

    refused(Conflict, "already_converted")
    refused(Conflict, "purchase_not_captured", purchase_id="held")
    refused(Conflict, "purchase_refunded", purchase_id="returned")
    refused(NotFound, None, purchase_id="nope")
    refused(Rejected, "plan_not_offered", purchase_id="small", terms=9)
    refused(Rejected, "plan_not_offered", purchase_id="small", terms=3, method="annuity")
    refused(Rejected, "below_min_conversion", purchase_id="tiny", terms=3, method="flat_fee")
    # 24 x annuity at 1.9999 % prices 2399.88 bps on the reference amount, above 2400 on 100.05.
    refused(Rejected, "plan_above_rate_ceiling", purchase_id="small", terms=24)
    with pytest.raises(NotFound):
        plans(app, lambda s: s.pay_off("cpi_nope"))
    ledger_check(app)


# The application of the running property test, built by its first example (hypothesis calls the
# test once per example with the same function-scoped fixtures); the clock tells tests apart.
SHARED: dict[str, Any] = {}


def next_example(shared: dict[str, Any], sim_clock: Any, make_app: Any, *, first_sequence: int) -> tuple[Any, int, Any]:
    """For a hypothesis test on one app per test (``shared``): the app, this example's number and a
    new activated account, opened on the next 6th after where the previous example left the clock."""
    from products.credit_pay.service import ActivationDraft

    if shared.get("clock") is not sim_clock:
        shared.update(clock=sim_clock, app=make_app(), examples=0)
    app, example = shared["app"], shared["examples"]
    shared["examples"] += 1
    start = app.tenant("bank").business_date() + timedelta(days=1)
    while start.day != 6:
        start += timedelta(days=1)
    sim_clock.set(datetime(start.year, start.month, start.day, 4, tzinfo=UTC))
    customer_no = register(app, sequence=first_sequence + example)
    account = run(
        app,
        lambda pay: pay.activate(
            ActivationDraft(request_id=f"a-{example}", customer_no=customer_no, consented=dict(GOOD_CONSENT))
        ),
        partner_id="travel_app",
    ).account
    return app, example, account


@settings(max_examples=15)
@given(
    converted=st.integers(10_000, 200_000),
    revolving=st.integers(0, 100_000),
    method=st.sampled_from([(3, "flat_fee"), (6, "annuity"), (12, "equal_principal")]),
    paid_off=st.booleans(),
    repayments=st.lists(st.integers(1, 250_000), min_size=1, max_size=3),
)
def test_repayments_give_back_line_only_for_principal(
    make_sceneos,
    sim_clock,
    converted: int,
    revolving: int,
    method: tuple[int, str],
    paid_off: bool,
    repayments: list[int],
) -> None:
    """For any repayments after an installment (or an early payoff with every charge) is billed, the
    available line is exactly the line less the principal still owed (revolving and unbilled
    installment principal): installment interest and fees, repaid or not, never move the line."""
    from products.credit_pay.repayment import RepaymentDraft

    app, example, account = next_example(
        SHARED, sim_clock, lambda: make_sceneos(config(product(early_payoff="all_charges", early_payoff_fee_bps="50"))),
        first_sequence=100,
    )
    no, line = account.account_no, account.line_minor
    assert line >= converted + revolving
    run(app, lambda pay: pay.authorize(purchase(no, f"c-{example}", converted)))
    run(app, lambda pay: pay.capture(f"c-{example}"))
    terms, how = method
    draft = PurchaseConversion(plan_id=f"i-{example}", purchase_id=f"c-{example}", terms=terms, method=how)
    plan = plans(app, lambda s: s.convert_purchase(draft))
    if revolving:
        run(app, lambda pay: pay.authorize(purchase(no, f"r-{example}", revolving)))
        run(app, lambda pay: pay.capture(f"r-{example}"))
    first = plan.installments[0].due_on + timedelta(days=1)  # its statement has been issued
    sim_clock.set(datetime(first.year, first.month, first.day, 4, tzinfo=UTC))
    if paid_off:
        plans(app, lambda s: s.pay_off(plan.plan_no))

    def principal_owed() -> int:
        now = balances(app, no)
        return now["receivable"] + now["installment"]

    before = run(app, lambda pay: pay.account(no))
    assert before.interest_minor + before.fees_minor > 0  # the billed charges are owed, as charges
    assert before.available_minor == line - principal_owed()
    for index, amount in enumerate(repayments):
        held = principal_owed()
        made = run(
            app,
            lambda pay, a=amount, i=index: pay.repay(
                RepaymentDraft(repayment_id=f"p-{example}-{i}", account_no=no, amount_minor=a)
            ),
        )
        view = run(app, lambda pay: pay.account(no))
        assert view.available_minor == line - principal_owed() <= line
        assert principal_owed() == held - made.allocation["principal"]
        assert view.available_minor - before.available_minor <= sum(repayments[: index + 1])
    ledger_check(app)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_conversions_of_one_purchase_make_one_plan(make_sceneos) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app = make_sceneos(config(product()))
    account_no = bought(app)
    barrier = threading.Barrier(4)

    def convert(plan_id: str) -> str:
        barrier.wait()
        draft = PurchaseConversion(plan_id=plan_id, purchase_id="flight-1", terms=6, method="annuity")
        try:
            view = plans(app, lambda s: s.convert_purchase(draft))
        except Conflict as exc:
            return exc.details[0]["code"]
        return "created" if view.created else "retry"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(convert, ["a", "a", "b", "b"]))
    # One plan id wins (its twin is answered as a retry); the other id finds the purchase converted.
    assert outcomes == ["already_converted", "already_converted", "created", "retry"]
    assert counts(app)[0] == 1 and balances(app, account_no)["installment"] == 186_000
    ledger_check(app)


def test_the_early_payoff_and_review_settings_are_checked_when_loaded() -> None:
    from pydantic import ValidationError

    from products.credit_pay.settings import CreditProduct

    product = CreditProduct(name="Credit Pay")
    assert (product.early_payoff, product.early_payoff_fee_bps, product.min_conversion_minor) == (
        "charges_waived",
        Decimal(0),
        10_000,
    )
    assert (product.line_review_interval_days, product.line_review_may_lower) == (180, True)
    for bad in (
        {"early_payoff": "interest_forgiven"},
        {"early_payoff_fee_bps": "-1"},
        {"early_payoff_fee_bps": "0.001"},
        {"min_conversion_minor": 0},
        {"line_review_interval_days": -1},
    ):
        with pytest.raises(ValidationError) as refused:
            CreditProduct(name="Credit Pay", **bad)
        assert next(iter(bad)) in str(refused.value)


@BOTH
def test_a_purchase_refunded_in_full_closes_its_plan_and_nothing_more_is_billed(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config(product()))
    account_no = bought(app, 186_000)
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=6, method="annuity")
    plan = plans(app, lambda s: s.convert_purchase(draft))
    dates = billing_dates(date(2026, 1, 1), 5, 6)
    billed = []
    for due_on in dates[:2]:
        sim_clock.set(datetime(due_on.year, due_on.month, due_on.day, 1, tzinfo=sim_clock.now().tzinfo))
        billed += bill(app, account_no, due_on)
    billed_interest = sum(i.interest_minor for i in billed)
    # A partial refund reduces the plan (test_partial_refunds.py); it runs on.
    run(app, lambda pay: pay.refund("flight-1", "rf-1", 6_000))
    assert plans(app, lambda s: s.plan(plan.plan_no)).status == "active"
    run(app, lambda pay: pay.refund("flight-1", "rf-2", 180_000))
    closed = plans(app, lambda s: s.plan(plan.plan_no))
    assert closed.status == "refunded" and closed.closed_at is not None and closed.remaining_principal_minor == 0
    assert [i.status for i in closed.installments] == ["billed", "billed"] + ["refunded"] * 4
    # The unbilled principal went back to the revolving balance, where the refunds met it: no
    # principal is owed any more; the plan's interest is what its two billed installments charged
    # (the interest receivable also holds revolving interest end of day accrued meanwhile).
    after = balances(app, account_no)
    assert (after["receivable"], after["installment"], after["fees"]) == (0, 0, 0)
    assert after["interest_income"] == billed_interest > 0
    assert after["interest"] >= billed_interest
    # A retry of the refund closes nothing twice; later statements bill nothing of the plan.
    entries = counts(app)[2]
    run(app, lambda pay: pay.refund("flight-1", "rf-2", 180_000))
    assert counts(app)[2] == entries
    third = dates[2]
    sim_clock.set(datetime(third.year, third.month, third.day, 1, tzinfo=sim_clock.now().tzinfo))
    assert bill(app, account_no, third) == []
    with pytest.raises(Conflict) as closed_plan:
        plans(app, lambda s: s.cancel(plan.plan_no))
    assert closed_plan.value.details[0]["code"] == "plan_refunded"
    ledger_check(app)
