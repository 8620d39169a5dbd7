"""Credit pay billing on real databases: statement figures of a scripted month, the interest-free
period, interest on a partly paid balance, late fee and penalty interest, every figure tied to the
ledger and the trial balance zero after each scenario.

Helpers here are shared by ``test_repayment.py`` and ``test_end_of_day.py``.

Scenario product: billing day 5, due day 25, no grace days, revolving 18.25 % a year (0.05 % a
day on a 365-day year), penalty 18.25 % a year on the amount past due, late fee 25.00, minimum
10 % with a floor of 100.00. The clock starts 2026-01-01 (Asia/Shanghai).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from core.testing.factories import mobile, resident_id
from core.testing.harness import tenant_config
from infra.compute import JobRunner
from middle.party.service import CustomerDraft
from products.credit_pay.end_of_day import owed, read_balances
from products.credit_pay.repayment import RepaymentDraft
from products.credit_pay.service import ActivationDraft, PurchaseDraft

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
GOOD_CONSENT = {
    "income_band": "10k_20k",
    "occupation": "skilled",
    "employment_band": "4y_7y",
    "housing": "own",
}
PRODUCT: dict[str, Any] = {
    "name": "Credit Pay",
    "billing_day": 5,
    "due_day": 25,
    "grace_days": 0,
    "revolving_annual_rate_bps": 1825,
    "penalty_annual_rate_bps": 1825,
    "late_fee_minor": 2_500,
    "minimum_payment_bps": 1_000,
    "minimum_payment_floor_minor": 10_000,
    "max_purchase_minor": 5_000_000,
    "max_daily_minor": 10_000_000,
}


def config(product: dict[str, Any] | None = None, plugins: list[str] | None = None) -> dict[str, Any]:
    modules = {
        "party": {},
        "credit": {},
        "risk": {},
        "credit_pay": {"products": {"standard": PRODUCT | (product or {})}},
    }
    extra: dict[str, Any] = {"plugins": plugins} if plugins else {}
    return {"tenants": {"bank": tenant_config(modules=modules, **extra)}}


def run(app: Any, fn: Any, partner_id: str | None = None) -> Any:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        return fn(tenant.module("credit_pay").container.service(uow=uow, partner_id=partner_id))


def open_account(app: Any, sequence: int = 1, product: str = "standard") -> str:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        draft = CustomerDraft(
            name="Li Lei", id_number=resident_id(date(1990, 5, 1), sequence=sequence), phone=mobile(sequence)
        )
        customer_no = tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no
    result = run(
        app,
        lambda pay: pay.activate(
            ActivationDraft(
                request_id=f"act-{sequence}", customer_no=customer_no, product=product,
                consented=dict(GOOD_CONSENT),
            )
        ),
        partner_id="travel_app",
    )
    assert result.outcome == "approve", result.reasons
    return result.account.account_no


def buy(app: Any, account_no: str, purchase_id: str, amount_minor: int) -> None:
    draft = PurchaseDraft(
        purchase_id=purchase_id, account_no=account_no, merchant_id="air", amount_minor=amount_minor
    )
    assert run(app, lambda pay: pay.authorize(draft)).status == "authorized"
    assert run(app, lambda pay: pay.capture(purchase_id)).status == "captured"


def pay(
    app: Any, account_no: str, repayment_id: str, amount_minor: int, partner_id: str | None = None
) -> Any:
    draft = RepaymentDraft(repayment_id=repayment_id, account_no=account_no, amount_minor=amount_minor)
    return run(app, lambda service: service.repay(draft), partner_id=partner_id)


def move_to(sim_clock: Any, day: date) -> None:
    """Noon of ``day`` in Shanghai (04:00 UTC)."""
    from datetime import UTC, datetime

    sim_clock.set(datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC))


def end_of_day(app: Any, day: date) -> Any:
    report = JobRunner(app).run("bank", "credit_pay.end_of_day", day)
    assert not report.failures, report.failures
    return report


def statements(app: Any, account_no: str) -> list[Any]:
    return run(app, lambda pay: pay.statements(account_no))


def balances(app: Any, account_no: str) -> dict[str, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        return read_balances(ledger, [account_no])[account_no]


def ledger_check(app: Any) -> None:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        assert ledger.verify() == []
        assert ledger.trial_balance("CNY").net_minor == 0


def ties_to_ledger(app: Any, account_no: str) -> None:
    """The newest statement's new balance is what the ledger says was owed at its date, and every
    statement's figures add up; with no activity since, the ledger still says the same."""
    rows = list(reversed(statements(app, account_no)))
    previous = 0
    for s in rows:
        assert s.previous_balance_minor == previous
        assert s.new_balance_minor == (
            s.previous_balance_minor
            + s.purchases_minor
            + s.installments_minor
            + s.converted_minor
            + s.interest_minor
            + s.penalty_minor
            + s.fees_minor
            - s.payments_minor
        )
        full = run(app, lambda pay, no=s.statement_no: pay.statement(no))
        assert sum(line.amount_minor for line in full.lines) == (
            s.purchases_minor + s.interest_minor + s.penalty_minor + s.fees_minor - s.payments_minor
        )
        previous = s.new_balance_minor


@BOTH
def test_statement_figures_of_a_scripted_month_and_interest_free_when_paid_in_full(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    buy(app, no, "flight", 100_000)
    buy(app, no, "hotel", 50_000)
    run(app, lambda service: service.refund("hotel", "hotel-r", 20_000))
    move_to(sim_clock, date(2026, 1, 6))
    [first] = statements(app, no)
    assert (first.statement_date, first.period_start, first.due_date) == (
        date(2026, 1, 5),
        date(2026, 1, 1),
        date(2026, 1, 25),
    )
    assert (first.previous_balance_minor, first.purchases_minor, first.interest_minor, first.fees_minor) == (
        0,
        130_000,
        0,
        0,
    )
    assert (first.payments_minor, first.new_balance_minor, first.minimum_payment_minor) == (
        0,
        130_000,
        13_000,
    )
    lines = run(app, lambda service: service.statement(first.statement_no)).lines
    assert [(line.kind, line.amount_minor) for line in lines] == [
        ("purchase", 100_000),
        ("purchase", 50_000),
        ("refund", -20_000),
    ]
    assert owed(balances(app, no)) == first.new_balance_minor

    move_to(sim_clock, date(2026, 1, 20))
    assert pay(app, no, "pay-1", 130_000).allocation["principal"] == 130_000
    buy(app, no, "train", 30_000)  # a new purchase, interest-free until the February due date
    move_to(sim_clock, date(2026, 2, 6))
    second = statements(app, no)[0]
    assert (second.previous_balance_minor, second.purchases_minor, second.payments_minor) == (
        130_000,
        30_000,
        130_000,
    )
    assert (second.interest_minor, second.penalty_minor, second.fees_minor, second.new_balance_minor) == (
        0,
        0,
        0,
        30_000,
    )
    assert statements(app, no)[1].status == "paid"
    assert second.minimum_payment_minor == 10_000  # the floor
    account = run(app, lambda service: service.account(no))
    assert (account.bucket, account.days_past_due, account.revolving, account.balance_minor) == (
        "M0",
        0,
        False,
        30_000,
    )
    ties_to_ledger(app, no)
    ledger_check(app)


@BOTH
def test_interest_accrues_daily_after_the_due_date_when_paid_partly(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    buy(app, no, "flight", 130_000)
    move_to(sim_clock, date(2026, 1, 24))
    pay(app, no, "part", 50_000)  # above the 13,000 minimum, below the balance
    move_to(sim_clock, date(2026, 2, 6))
    february, january = statements(app, no)
    assert january.status == "minimum_paid"
    # 80,000 x 0.05 % = 40.00 a day from 26 January through 5 February: 11 days.
    assert (february.interest_minor, february.penalty_minor, february.fees_minor) == (440, 0, 0)
    assert (february.previous_balance_minor, february.payments_minor, february.new_balance_minor) == (
        130_000,
        50_000,
        80_440,
    )
    account = run(app, lambda service: service.account(no))
    assert account.revolving and account.bucket == "M0" and account.interest_minor == 440
    ties_to_ledger(app, no)
    ledger_check(app)


@BOTH
def test_billed_interest_left_unpaid_bears_interest_when_the_product_compounds(make_sceneos, sim_clock) -> None:
    settings = config()
    products = settings["tenants"]["bank"]["modules"]["credit_pay"]["products"]
    products["compound"] = {**products["standard"], "compound_interest": True}
    app = make_sceneos(settings)
    plain, compound = open_account(app, 1), open_account(app, 2, product="compound")
    for no in (plain, compound):
        buy(app, no, f"flight-{no}", 130_000)
    move_to(sim_clock, date(2026, 1, 24))
    for no in (plain, compound):
        pay(app, no, f"part-{no}", 50_000)
    move_to(sim_clock, date(2026, 3, 6))  # nothing paid on February's statement
    march = {}
    for no in (plain, compound):
        march[no], february, _ = statements(app, no)
        assert february.interest_minor == 440  # 80,000 x 0.05 % x 11 days: interest accrued, not billed, bears none
        ties_to_ledger(app, no)
    ledger_check(app)
    # 6 February to 5 March, 28 days: 80,000 x 0.05 % = 40.00 a day; compounding, the 440 billed in
    # February bears interest too: 80,440 x 0.05 % = 40.22 a day, 1,126.16 (the .16 carried).
    assert (march[plain].interest_minor, march[compound].interest_minor) == (1_120, 1_126)
    assert march[plain].penalty_minor == march[compound].penalty_minor
    assert march[plain].fees_minor == march[compound].fees_minor


def test_a_compounding_product_keeps_its_compounded_rate_under_the_ceiling() -> None:
    from pydantic import ValidationError

    from products.credit_pay.settings import CreditProduct

    product = CreditProduct(**{**PRODUCT, "compound_interest": True})
    assert product.effective_rate_bps(1825) == 1986  # (1 + 18.25 % / 12) ** 12 - 1 = 19.857 %, rounded up
    assert CreditProduct(**PRODUCT).effective_rate_bps(1825) == 1825
    with pytest.raises(ValidationError, match=r"compounded monthly .* 1986 bps a year, above annual_rate_ceiling_bps"):
        CreditProduct(**{**PRODUCT, "compound_interest": True, "annual_rate_ceiling_bps": 1900})


@BOTH
def test_missed_minimum_charges_a_late_fee_and_penalty_interest_and_ages_the_account(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    buy(app, no, "flight", 130_000)
    move_to(sim_clock, date(2026, 2, 6))
    february, january = statements(app, no)
    assert january.status == "past_due"
    # Interest 130,000 x 0.05 % = 65.00 a day, penalty 13,000 x 0.05 % = 6.50 a day (the half
    # carried to the next day), both from 26 January through 5 February; late fee 25.00.
    assert (february.interest_minor, february.penalty_minor, february.fees_minor) == (715, 71, 2_500)
    assert february.new_balance_minor == 130_000 + 715 + 71 + 2_500
    # 10 % of the principal part, plus this period's charges and the 13,000 past due.
    assert february.minimum_payment_minor == 11_700 + 715 + 71 + 2_500 + 13_000
    account = run(app, lambda service: service.account(no))
    assert (account.bucket, account.days_past_due, account.past_due_minor) == ("M1", 11, 13_000)
    lines = run(app, lambda service: service.statement(february.statement_no)).lines
    assert [line.kind for line in lines].count("late_fee") == 1
    ties_to_ledger(app, no)
    ledger_check(app)


def test_an_idle_account_gets_no_statement_and_bad_product_keys_are_named(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    move_to(sim_clock, date(2026, 3, 1))
    assert statements(app, no) == []
    from core.errors import ConfigError

    for key, value in (
        ("penalty_annual_rate_bps", 3000),
        ("revolving_annual_rate_bps", 2500),
        ("overdue_bucket_days", [1, 1, 30]),
        ("repayment_allocation", ["fee", "fee", "interest", "principal"]),
    ):
        with pytest.raises((ConfigError, ValueError)) as info:
            make_sceneos(config({key: value}))
        assert key in str(info.value)
