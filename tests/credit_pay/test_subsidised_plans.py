"""Merchant-subsidised (interest-free) installment plans on real databases: configuration refused
with the key named, trials that show the merchant's offer, a purchase at the merchant converted at
a zero rate while the merchant's payable pays the charges into subsidy income, billing with no
charge to the customer, retries, the campaign's dates, other merchants and bill installments at
the product's price, and cancellation reversing the subsidy. Over HTTP and the CLI too."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import select
from test_credit_pay_api import TRAVEL, app_config
from test_credit_pay_cli import CONFIG
from test_credit_pay_service import GOOD_CONSENT, config, ledger_check, purchase, register, run
from test_installments import bill, bought, counts, plans, product
from test_lines import EventRecorder
from typer.testing import CliRunner

from core.cli_support import open_app
from core.money import RoundingMode
from core.sdk import errors as sdk_errors
from core.testing.harness import tenant_config
from infra.ledger import LedgerEntry
from products.credit_pay.calc import schedule
from products.credit_pay.cli import cli
from products.credit_pay.installments import (
    BalanceConversion,
    PurchaseConversion,
    billing_dates,
    installment_account,
    installment_interest_income_account,
    installment_subsidy_income_account,
    installment_subsidy_unearned_account,
)
from products.credit_pay.service import merchant_account, receivable_account, subsidised_schedules
from products.credit_pay.settings import CreditProduct, MerchantSubsidisedPlan

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
CAMPAIGN = {
    "terms": 6,
    "method": "annuity",
    "period_rate_bps": 100,  # what the merchant pays: the 6 x annuity at 1 % a month
    "merchants": ["air_ticketing"],
    "valid_from": "2026-01-01",
    "valid_until": "2026-03-31",
}
# The merchant pays what the customer would have paid at 1 % a month (annuity, 6 terms).
SUBSIDY = schedule("annuity", 186_000, 6, Decimal("0.01")).total_charge_minor


def subsidised_product(**extra: Any) -> dict[str, Any]:
    return product(merchant_subsidised_plans=[CAMPAIGN], **extra)


def ledger_figures(app: Any, account_no: str, merchant_id: str = "air_ticketing") -> dict[str, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        ledger.open_account(installment_subsidy_income_account("CNY"), "CNY", "income")
        ledger.open_account(installment_subsidy_unearned_account("CNY"), "CNY", "liability")
        ledger.open_account(installment_interest_income_account("CNY"), "CNY", "income")
        codes = {
            "merchant_payable": merchant_account("CNY", merchant_id),
            "subsidy_income": installment_subsidy_income_account("CNY"),
            "subsidy_unearned": installment_subsidy_unearned_account("CNY"),
            "interest_income": installment_interest_income_account("CNY"),
            "receivable": receivable_account(account_no),
            "installment": installment_account(account_no),
        }
        known = {account.code for account in ledger.accounts()}
        found = ledger.balances([code for code in codes.values() if code in known])
        return {name: found[code].net_posted_minor if code in found else 0 for name, code in codes.items()}


def convert(app: Any, plan_id: str = "inst-1", purchase_id: str = "flight-1", **extra: Any) -> Any:
    fields = {"terms": 6, "method": "annuity", **extra}
    draft = PurchaseConversion(plan_id=plan_id, purchase_id=purchase_id, **fields)
    return plans(app, lambda s: s.convert_purchase(draft))


# --- configuration -------------------------------------------------------------------------------


def test_a_campaign_is_checked_when_the_configuration_is_loaded() -> None:
    CreditProduct(name="X", merchant_subsidised_plans=[CAMPAIGN])
    # Two campaigns of one merchant one after the other are fine; overlapping, they are refused.
    later = {**CAMPAIGN, "valid_from": "2026-04-01", "valid_until": None, "period_rate_bps": 80}
    CreditProduct(name="X", merchant_subsidised_plans=[CAMPAIGN, later])
    overlapping = {**later, "valid_from": "2026-03-31", "merchants": ["hotel", "air_ticketing"]}
    with pytest.raises(ValidationError, match=r"merchant_subsidised_plans: two 6 x annuity plans overlap .*air_ticketing"):
        CreditProduct(name="X", merchant_subsidised_plans=[CAMPAIGN, overlapping])
    open_ended = {**CAMPAIGN, "valid_from": None, "valid_until": None, "method": "flat_fee"}
    with pytest.raises(ValidationError, match="overlap"):
        CreditProduct(name="X", merchant_subsidised_plans=[open_ended, {**open_ended, "valid_from": "2030-01-01"}])
    for bad, named in [
        ({**CAMPAIGN, "valid_until": "2025-12-31"}, "valid_until is before valid_from"),
        ({**CAMPAIGN, "merchants": []}, "merchants"),
        ({**CAMPAIGN, "merchants": ["air ticketing"]}, "not a valid id"),
        ({**CAMPAIGN, "merchants": ["air", "air"]}, "named twice"),
        ({**CAMPAIGN, "terms": 5}, "terms"),
        ({**CAMPAIGN, "period_rate_bps": 1_001}, "period_rate_bps"),
        ({**CAMPAIGN, "merchant": ["air"]}, "merchant"),
    ]:
        with pytest.raises(ValidationError) as refused:
            CreditProduct(name="X", merchant_subsidised_plans=[bad])
        text = str(refused.value)
        assert "merchant_subsidised_plans.0" in text and named in text, text


def test_a_bad_campaign_stops_the_app_naming_the_key(make_sceneos) -> None:
    with pytest.raises(Exception, match=r"products\.standard\.merchant_subsidised_plans\[0\]\.valid_until"):
        make_sceneos(config(product(merchant_subsidised_plans=[{**CAMPAIGN, "valid_until": "2026-13-01"}])))


@given(
    principal=st.integers(min_value=1, max_value=10**11),
    terms=st.sampled_from([3, 6, 12, 24]),
    method=st.sampled_from(["annuity", "equal_principal", "flat_fee"]),
    rate_bps=st.integers(min_value=0, max_value=1_000),
)
@settings(max_examples=200, deadline=None)
def test_the_customer_repays_exactly_the_principal_and_the_merchant_the_plans_charges(
    principal: int, terms: int, method: str, rate_bps: int
) -> None:
    offer = MerchantSubsidisedPlan(
        terms=terms, method=method, period_rate_bps=rate_bps, merchants=["m"]
    )
    customer, merchant = subsidised_schedules(offer, principal, RoundingMode.HALF_EVEN)
    assert sum(i.principal_minor for i in customer.installments) == principal
    assert all(i.charge_minor == 0 and i.principal_minor >= 0 for i in customer.installments)
    assert customer.total_charge_minor == 0 and customer.annualized_rate_bps == 0
    # What the merchant pays is what the customer would have paid on the product's plan.
    assert merchant == schedule(method, principal, terms, Decimal(rate_bps) / 10_000)
    assert merchant.total_charge_minor >= 0


# --- trial and conversion ------------------------------------------------------------------------


def test_a_trial_at_the_merchant_shows_its_interest_free_plan_in_place_of_the_products(make_sceneos) -> None:
    app = make_sceneos(config(subsidised_product()))
    at_merchant = run(app, lambda pay: pay.trial("standard", 186_000, merchant_id="air_ticketing"))
    offered = {(p.terms, p.method): p for p in at_merchant.plans}
    free = offered[(6, "annuity")]
    assert free.subsidised_by == "air_ticketing" and free.merchant_subsidy_minor == SUBSIDY > 0
    assert free.total_charge_minor == 0 and free.annualized_rate_bps == "0.00" and free.period_rate_bps == "0.00"
    assert sum(i.principal_minor for i in free.installments) == 186_000
    assert all(i.charge_minor == 0 for i in free.installments)
    # The product's other plans are still offered at their price; the merchant's comes first.
    assert at_merchant.plans[0] == free
    assert offered[(3, "flat_fee")].subsidised_by is None and offered[(3, "flat_fee")].total_charge_minor > 0
    # Another merchant, or no merchant: the product's plans only.
    for merchant in ("hotel", None):
        elsewhere = run(app, lambda pay, m=merchant: pay.trial("standard", 186_000, terms=6, merchant_id=m))
        assert [(p.terms, p.method, p.subsidised_by) for p in elsewhere.plans] == [(6, "annuity", None)]
        assert elsewhere.plans[0].total_charge_minor == SUBSIDY


@BOTH
def test_a_purchase_at_the_merchant_converts_interest_free_and_the_merchant_pays_the_charges(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos(config(subsidised_product()))
    account_no = bought(app, 186_000)
    assert ledger_figures(app, account_no)["merchant_payable"] == 186_000
    plan = convert(app)
    assert plan.created and plan.subsidised_by == "air_ticketing" and plan.merchant_subsidy_minor == SUBSIDY
    assert plan.total_charge_minor == 0 and plan.annualized_rate_bps == "0.00" and plan.period_rate_bps == "0.00"
    assert [i.interest_minor + i.fee_minor for i in plan.installments] == [0] * 6
    assert sum(i.principal_minor for i in plan.installments) == 186_000
    assert ledger_figures(app, account_no) == {
        "merchant_payable": 186_000 - SUBSIDY,  # the bank owes the merchant its sale less the subsidy
        "subsidy_income": 0,  # earned as the plan is billed
        "subsidy_unearned": SUBSIDY,
        "interest_income": 0,
        "receivable": 0,
        "installment": 186_000,
    }
    # A retry answers the same plan and moves nothing.
    before = counts(app)
    again = convert(app)
    assert not again.created and again.plan_no == plan.plan_no and counts(app) == before

    # Each statement bills principal only; the merchant's payment is earned term by term, each
    # term's share the charge the merchant's rate puts on it.
    shares = [i.charge_minor for i in schedule("annuity", 186_000, 6, Decimal("0.01")).installments]
    for number, due_on in enumerate(billing_dates(date(2026, 1, 1), 5, 6), start=1):
        sim_clock.set(datetime(due_on.year, due_on.month, due_on.day, 1, tzinfo=sim_clock.now().tzinfo))
        items = bill(app, account_no, due_on)
        assert [(i.term_no, i.interest_minor, i.fee_minor) for i in items] == [(number, 0, 0)]
        figures = ledger_figures(app, account_no)
        assert (figures["subsidy_income"], figures["subsidy_unearned"]) == (
            sum(shares[:number]), SUBSIDY - sum(shares[:number])
        )
    figures = ledger_figures(app, account_no)
    assert figures["receivable"] == 186_000 and figures["installment"] == 0 and figures["interest_income"] == 0
    assert figures["subsidy_income"] == SUBSIDY and figures["merchant_payable"] == 186_000 - SUBSIDY
    assert figures["subsidy_unearned"] == 0
    assert plans(app, lambda s: s.plan(plan.plan_no)).status == "completed"
    ledger_check(app)


@BOTH
def test_other_merchants_bill_installments_and_dates_outside_the_campaign_pay_the_products_price(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos(config(subsidised_product()))
    account_no = bought(app, 186_000)
    for purchase_id, amount in (("hotel-1", 186_000), ("shop-1", 100_000)):
        run(app, lambda pay, p=purchase_id, a=amount: pay.authorize(purchase(account_no, p, a, merchant_id="hotel")))
        run(app, lambda pay, p=purchase_id: pay.capture(p))
    at_hotel = convert(app, "inst-hotel", "hotel-1")
    assert at_hotel.subsidised_by is None and at_hotel.merchant_subsidy_minor == 0
    assert at_hotel.total_charge_minor == SUBSIDY and at_hotel.period_rate_bps == "100.00"
    # A plan the campaign does not cover is the product's (3 x flat fee at the merchant).
    assert convert(app, "inst-3", terms=3, method="flat_fee").subsidised_by is None
    bill_plan = plans(
        app,
        lambda s: s.convert_balance(
            BalanceConversion(plan_id="bill-1", account_no=account_no, amount_minor=100_000, terms=6, method="annuity")
        ),
    )
    assert bill_plan.subsidised_by is None and bill_plan.total_charge_minor > 0

    # After the campaign the merchant's purchases pay the product's price again.
    sim_clock.set(datetime(2026, 4, 1, 1, tzinfo=sim_clock.now().tzinfo))
    run(app, lambda pay: pay.authorize(purchase(account_no, "flight-2", 186_000)))
    run(app, lambda pay: pay.capture("flight-2"))
    late = convert(app, "inst-late", "flight-2")
    assert late.subsidised_by is None and late.total_charge_minor == SUBSIDY
    assert ledger_figures(app, account_no)["subsidy_income"] == 0
    ledger_check(app)


@BOTH
def test_cancelling_an_interest_free_plan_reverses_the_merchants_payment(make_sceneos) -> None:
    app = make_sceneos(config(subsidised_product()))
    account_no = bought(app, 186_000)
    plan = convert(app)
    cancelled = plans(app, lambda s: s.cancel(plan.plan_no))
    assert cancelled.status == "cancelled"
    figures = ledger_figures(app, account_no)
    assert figures["merchant_payable"] == 186_000 and figures["subsidy_income"] == figures["subsidy_unearned"] == 0
    assert figures["receivable"] == 186_000 and figures["installment"] == 0
    entries = counts(app)[2]
    assert plans(app, lambda s: s.cancel(plan.plan_no)).status == "cancelled" and counts(app)[2] == entries
    # Converted again (another plan id), the merchant pays again: one subsidy per running plan.
    again = convert(app, "inst-2")
    assert again.merchant_subsidy_minor == SUBSIDY
    assert ledger_figures(app, account_no)["subsidy_unearned"] == SUBSIDY
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ids = set(uow.session.scalars(select(LedgerEntry.entry_id).where(LedgerEntry.entry_id.like("%subsidy%"))))
    assert ids == {
        "credit_pay:installment_subsidy:inst-1",
        f"credit_pay:installment_subsidy_cancel:{plan.plan_no}",
        "credit_pay:installment_subsidy:inst-2",
    }
    ledger_check(app)


def test_an_early_payoff_keeps_the_merchants_payment(make_sceneos) -> None:
    app = make_sceneos(config(subsidised_product(early_payoff="all_charges")))
    account_no = bought(app, 186_000)
    plan = convert(app)
    paid_off = plans(app, lambda s: s.pay_off(plan.plan_no))
    assert paid_off.status == "paid_off"
    # All the charges are billed, and there are none: the customer owes the principal only.
    assert sum((i.billed_interest_minor or 0) + (i.billed_fee_minor or 0) for i in paid_off.installments) == 0
    figures = ledger_figures(app, account_no)
    assert figures["receivable"] == 186_000 and figures["subsidy_income"] == SUBSIDY  # earned at once
    assert figures["subsidy_unearned"] == 0
    ledger_check(app)


def test_a_partial_refund_reschedules_an_interest_free_plan_at_no_charge(make_sceneos) -> None:
    app = make_sceneos(config(subsidised_product()))
    account_no = bought(app, 186_000)
    plan = convert(app)
    run(app, lambda pay: pay.refund("flight-1", "rf-1", 66_000))
    reduced = plans(app, lambda s: s.plan(plan.plan_no))
    # The rest is principal only, the merchant's method at a zero rate; the merchant's payment is
    # its price for the sale and stays (docs/credit-pay.md).
    assert [i.principal_minor for i in reduced.installments] == [
        item.principal_minor for item in schedule("annuity", 120_000, 6, Decimal(0)).installments
    ]
    assert reduced.total_charge_minor == 0 and all(i.interest_minor == 0 for i in reduced.installments)
    figures = ledger_figures(app, account_no)
    assert (figures["installment"], figures["subsidy_unearned"], figures["subsidy_income"]) == (120_000, SUBSIDY, 0)
    # Refunded in full, the plan closes and earns the rest of the merchant's payment at once.
    run(app, lambda pay: pay.refund("flight-1", "rf-2", 120_000))
    figures = ledger_figures(app, account_no)
    assert (figures["installment"], figures["subsidy_unearned"], figures["subsidy_income"]) == (0, 0, SUBSIDY)
    ledger_check(app)


@BOTH
def test_a_charge_off_earns_the_rest_of_the_merchants_payment(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config(subsidised_product(charge_off_days_past_due=90)))
    account_no = bought(app, 186_000)
    plan = convert(app)
    # Nothing is ever repaid: the account is charged off within half a year, its plan with it.
    sim_clock.set(datetime(2026, 6, 30, 4, tzinfo=sim_clock.now().tzinfo))
    assert run(app, lambda pay: pay.account(account_no)).status == "charged_off"
    closed = plans(app, lambda s: s.plan(plan.plan_no))
    assert closed.status == "charged_off"
    figures = ledger_figures(app, account_no)
    assert (figures["installment"], figures["subsidy_unearned"], figures["subsidy_income"]) == (0, 0, SUBSIDY)
    ledger_check(app)


def test_the_created_event_names_the_merchant_and_its_subsidy(make_sceneos) -> None:
    recorder = EventRecorder()
    modules = {"party": {}, "credit": {}, "risk": {}, "credit_pay": subsidised_product()}
    app = make_sceneos(
        {"tenants": {"bank": tenant_config(modules=modules, plugins=["recorder"])}},
        plugins={"recorder": recorder},
    )
    bought(app, 186_000)
    convert(app)
    created = [e.payload for e in recorder.events if e.type == "credit_pay.installment_plan.created"]
    assert [(e["subsidised_by"], e["merchant_subsidy_minor"]) for e in created] == [("air_ticketing", SUBSIDY)]


# --- HTTP and CLI --------------------------------------------------------------------------------


def test_a_partner_asks_the_merchants_trial_and_converts_interest_free(make_sceneos, partner_client) -> None:
    settings = app_config()
    products = settings["tenants"]["bank"]["modules"]["credit_pay"]["products"]
    products["standard"]["merchant_subsidised_plans"] = [CAMPAIGN]
    app = make_sceneos(settings)
    travel = partner_client(app, *TRAVEL)
    travel.put("/v1/users/u-1", json={"customer_no": register(app)})
    travel.post("/v1/users/u-1/consents", json={"scopes": ["credit_decision"]})
    body = {"request_id": "act-1", "consented": GOOD_CONSENT}
    no = travel.post("/v1/credit_pay/activations", json=body, user_id="u-1").data["account"]["account_no"]
    buy = {"purchase_id": "flight-1", "account_no": no, "merchant_id": "air_ticketing", "amount_minor": 186_000}
    travel.post("/v1/credit_pay/purchases", json=buy, user_id="u-1")
    travel.post("/v1/credit_pay/purchases/flight-1/capture")

    trial = travel.post(
        "/v1/credit_pay/products/standard/trials",
        json={"amount_minor": 186_000, "terms": 6, "merchant_id": "air_ticketing"},
    ).data
    # The merchant's 6 x annuity first, the product's 6 x flat fee (not in the campaign) after it.
    assert [(p["method"], p["subsidised_by"], p["total_charge_minor"] == 0) for p in trial["plans"]] == [
        ("annuity", "air_ticketing", True),
        ("flat_fee", None, False),
    ]
    with pytest.raises(sdk_errors.ValidationError) as bad:
        travel.post(
            "/v1/credit_pay/products/standard/trials", json={"amount_minor": 186_000, "merchant_id": "air ticketing"}
        )
    assert bad.value.status == 422 and "merchant_id" in str(bad.value.problem["errors"])
    conversion = {"plan_id": "inst-1", "terms": 6, "method": "annuity"}
    plan = travel.post("/v1/credit_pay/purchases/flight-1/installments", json=conversion, user_id="u-1").data
    assert plan["subsidised_by"] == "air_ticketing" and plan["merchant_subsidy_minor"] == SUBSIDY
    assert plan["total_charge_minor"] == 0


def test_staff_see_the_merchants_plans_in_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("products.credit_pay.cli.console", Console(width=300))
    config_file = tmp_path / "sceneos.toml"
    campaign = (
        "\n[[tenants.bank.modules.credit_pay.products.standard.merchant_subsidised_plans]]\n"
        'terms = 6\nmethod = "annuity"\nperiod_rate_bps = 100\nmerchants = ["air_ticketing"]\n'
    )
    plans_toml = (
        "[tenants.bank.modules.credit_pay.products.standard]\nname = \"Credit Pay\"\n"
        'installment_plans = [{ terms = 6, method = "annuity", period_rate_bps = 100 }]\n'
    )
    config_file.write_text(CONFIG.format(db=tmp_path / "cli.db") + plans_toml + campaign, encoding="utf-8")
    with open_app(str(config_file)) as app:
        account_no = bought(app, 186_000)
        plan = convert(app)
    runner = CliRunner()
    trial = runner.invoke(cli, ["trial", "186000", "-t", "bank", "--merchant", "air_ticketing", "-c", str(config_file)])
    assert trial.exit_code == 0, trial.output
    assert f"interest-free: merchant air_ticketing pays {SUBSIDY}" in " ".join(trial.output.split())
    shown = runner.invoke(cli, ["plans", account_no, "-t", "bank", "-c", str(config_file)])
    assert shown.exit_code == 0 and f"merchant air_ticketing paid {SUBSIDY}" in " ".join(shown.output.split())
    assert plan.plan_no in shown.output
    bad = runner.invoke(cli, ["trial", "186000", "-t", "bank", "--merchant", "air ticketing", "-c", str(config_file)])
    assert bad.exit_code == 1 and "merchant_id" in bad.output and "Traceback" not in bad.output


def test_the_window_is_in_business_dates(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config(subsidised_product()))
    sim_clock.set(datetime(2026, 3, 31, 12, tzinfo=sim_clock.now().tzinfo))
    last_day = run(app, lambda pay: pay.trial("standard", 186_000, terms=6, merchant_id="air_ticketing"))
    assert last_day.plans[0].subsidised_by == "air_ticketing"
    sim_clock.advance(timedelta(days=1))
    after = run(app, lambda pay: pay.trial("standard", 186_000, terms=6, merchant_id="air_ticketing"))
    assert after.plans[0].subsidised_by is None
