"""Product configuration: several products per bank, white-label names, plans priced against the
annualized-rate ceiling when the configuration is loaded, and trial calculations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.errors import NotFound, ValidationFailed
from core.testing.harness import tenant_config
from products.credit_pay.settings import CreditPaySettings, CreditProduct


def test_defaults_offer_one_product_with_plans_within_the_ceiling() -> None:
    settings = CreditPaySettings()
    product = settings.product("standard")
    assert product is not None and product.currency == "CNY" and product.annual_rate_ceiling_bps == 2400
    assert {plan.terms for plan in product.installment_plans} == {3, 6, 12, 24}
    assert product.display_name("anyone") == product.name


def test_a_plan_priced_above_the_ceiling_is_refused_when_loaded() -> None:
    with pytest.raises(
        ValidationError, match=r"annualized rate of .* bps \(IRR\), above the ceiling of 2400"
    ):
        # 1.2 % a month flat on the original principal is about 26 % a year by IRR.
        CreditProduct(
            name="Dear", installment_plans=[{"terms": 12, "method": "flat_fee", "period_rate_bps": 120}]
        )
    CreditProduct(
        name="Fine", installment_plans=[{"terms": 12, "method": "flat_fee", "period_rate_bps": 100}]
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"terms": 5, "method": "annuity", "period_rate_bps": 50},
        {"terms": 6, "method": "balloon", "period_rate_bps": 50},
        {"terms": 6, "method": "annuity", "period_rate_bps": -1},
    ],
)
def test_bad_plans_are_refused(bad) -> None:
    with pytest.raises(ValidationError):
        CreditProduct(name="X", installment_plans=[bad])


def test_other_rules() -> None:
    with pytest.raises(ValidationError, match="max_purchase_minor"):
        CreditProduct(name="X", max_purchase_minor=10, max_daily_minor=5)
    with pytest.raises(ValidationError, match="due_day"):
        CreditProduct(name="X", billing_day=5, due_day=5)
    with pytest.raises(ValidationError):
        CreditProduct(name="X", currency="XYZ")
    with pytest.raises(ValidationError, match="defined twice"):
        CreditProduct(
            name="X", installment_plans=[{"terms": 3, "method": "annuity", "period_rate_bps": 1}] * 2
        )
    with pytest.raises(ValidationError, match="product code"):
        CreditPaySettings(products={"Bad-Code": {"name": "X"}})


def test_trials_for_joint_products_and_the_ceiling_at_pricing_time(make_sceneos) -> None:
    modules = {
        "party": {},
        "credit": {},
        "risk": {},
        "credit_pay": {
            "products": {
                "saas_shops": {
                    "name": "Shop installments",
                    "display_names": {"saas": "Pay in 3"},
                    "installment_plans": [
                        {"terms": 3, "method": "flat_fee", "period_rate_bps": "0"},
                        {"terms": 6, "method": "annuity", "period_rate_bps": "125.5"},
                    ],
                },
                "luxury": {
                    "name": "Luxury",
                    "annual_rate_ceiling_bps": 1420,
                    "installment_plans": [{"terms": 12, "method": "flat_fee", "period_rate_bps": 65}],
                },
            }
        },
    }
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=modules)}})
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        pay = tenant.module("credit_pay").container.service(uow=uow, partner_id="saas")
        trial = pay.trial("saas_shops", 186_000)
        assert [(p.terms, p.method) for p in trial.plans] == [(3, "flat_fee"), (6, "annuity")]
        free = trial.plans[0]
        assert free.total_charge_minor == 0 and free.annualized_rate_bps == "0.00"
        assert [i.principal_minor for i in free.installments] == [62_000] * 3
        six = pay.trial("saas_shops", 186_000, terms=6).plans[0]
        assert sum(i.principal_minor for i in six.installments) == 186_000 and len(six.installments) == 6
        # 12 x 1.255 %, give or take the rounding to the fen.
        assert abs(Decimal(six.annualized_rate_bps) - Decimal("1506")) <= Decimal("0.05")
        # A tiny amount would price the plan above the ceiling (rounding): withheld, not offered.
        tiny = pay.trial("luxury", 468)  # 14.26 % by IRR, against 14.10 % at the reference amount
        assert tiny.plans == [] and tiny.withheld == ["12xflat_fee"]
        assert pay.trial("luxury", 1_200_000).plans[0].total_charge_minor == 93_600
        with pytest.raises(NotFound):
            pay.trial("nope", 100)
        with pytest.raises(NotFound):
            pay.trial("luxury", 100, terms=24)
        with pytest.raises(ValidationFailed):
            pay.trial("luxury", 0)


@given(
    boundaries=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=9, unique=True).map(sorted),
    days=st.integers(min_value=-5, max_value=500),
)
def test_an_overdue_bucket_counts_the_boundaries_reached(boundaries: list[int], days: int) -> None:
    product = CreditProduct(name="X", overdue_bucket_days=boundaries, charge_off_days_past_due=0)
    reached = sum(1 for start in boundaries if days >= start)
    expected = f"M{reached}+" if reached == len(boundaries) else f"M{reached}"
    assert product.bucket_of(days) == expected
    assert product.bucket_of(0) == "M0"
