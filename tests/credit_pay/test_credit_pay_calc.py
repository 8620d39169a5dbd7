"""Installment schedules and the IRR-annualized rate, checked against exact rational arithmetic."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.money import RoundingMode
from products.credit_pay.calc import Method, schedule


def round_half_even(value: Fraction) -> int:
    floor = value.numerator // value.denominator
    rest = value - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


def exact_npv(principal: int, totals: list[int], monthly: Fraction) -> Fraction:
    return (
        sum((Fraction(t) / (1 + monthly) ** k for k, t in enumerate(totals, start=1)), Fraction(0))
        - principal
    )


principals = st.integers(min_value=100, max_value=50_000_000)
terms = st.sampled_from([1, 3, 6, 12, 24])
rates_bps = st.integers(min_value=0, max_value=300).map(lambda bps: Decimal(bps) / 10_000)
methods = st.sampled_from(list(Method))


@settings(max_examples=150, deadline=None)
@given(method=methods, principal=principals, n=terms, rate=rates_bps)
def test_every_schedule_repays_exactly_the_principal_with_exact_charges(method, principal, n, rate) -> None:
    result = schedule(method, principal, n, rate)
    rows = result.installments
    r = Fraction(rate)
    assert [row.number for row in rows] == list(range(1, n + 1))
    assert sum(row.principal_minor for row in rows) == principal
    assert all(row.principal_minor >= 0 and row.charge_minor >= 0 for row in rows)
    assert rows[-1].balance_after_minor == 0
    balance = principal
    for row in rows:
        if method is Method.FLAT_FEE:
            expected = (principal * r).numerator // (principal * r).denominator  # rounded down
            if row.number < n:
                assert row.charge_minor == expected
        else:
            assert row.charge_minor == round_half_even(balance * r)  # interest on the balance, exactly
        balance -= row.principal_minor
        assert row.balance_after_minor == balance
    if method is Method.FLAT_FEE:
        assert result.total_charge_minor == round_half_even(principal * r * n)
    if method is Method.EQUAL_PRINCIPAL:
        assert all(row.principal_minor == principal // n for row in rows[:-1])
    if method is Method.ANNUITY:
        payment = Fraction(principal, n) if r == 0 else principal * r * (1 + r) ** n / ((1 + r) ** n - 1)
        level = round_half_even(payment)
        balance = principal
        for row in rows[:-1]:
            if balance > level:  # level installments until the balance runs out
                assert row.total_minor == level
            balance -= row.principal_minor
        # The rounding difference, carried to the last installment, stays small.
        assert abs(rows[-1].total_minor - payment) <= 2 * n


@settings(max_examples=80, deadline=None)
@given(
    method=methods,
    principal=st.integers(min_value=10_000, max_value=50_000_000),
    n=terms,
    rate=st.integers(min_value=1, max_value=300).map(lambda bps: Decimal(bps) / 10_000),
)
def test_the_annualized_rate_is_the_irr_of_the_cash_flows(method, principal, n, rate) -> None:
    result = schedule(method, principal, n, rate)
    totals = [row.total_minor for row in result.installments]
    monthly = Fraction(result.annualized_rate) / 12
    step = Fraction(1, 10**7)
    if sum(totals) == principal:
        assert result.annualized_rate == 0
        return
    # An independent check of the root: the exact NPV changes sign around the reported monthly rate.
    assert exact_npv(principal, totals, monthly - step) > 0
    assert exact_npv(principal, totals, monthly + step) < 0


def test_annuity_and_equal_principal_rates_are_their_nominal_rates_and_flat_fees_cost_more() -> None:
    annuity = schedule(Method.ANNUITY, 1_200_000, 12, Decimal("0.01"))
    assert abs(annuity.annualized_rate - Decimal("0.12")) < Decimal("0.0001")
    equal = schedule(Method.EQUAL_PRINCIPAL, 1_200_000, 12, Decimal("0.01"))
    assert abs(equal.annualized_rate - Decimal("0.12")) < Decimal("0.0001")
    assert [row.principal_minor for row in equal.installments] == [100_000] * 12
    assert equal.installments[0].charge_minor == 12_000 and equal.installments[-1].charge_minor == 1_000
    flat = schedule(Method.FLAT_FEE, 1_200_000, 12, Decimal("0.006"))
    assert flat.total_charge_minor == 86_400 and {row.charge_minor for row in flat.installments} == {7_200}
    # 0.6 % a month on the original principal costs about 13 % a year (IRR), not 7.2 %.
    assert Decimal("0.129") < flat.annualized_rate < Decimal("0.132")


def test_rounding_differences_land_in_the_last_installment() -> None:
    result = schedule(Method.EQUAL_PRINCIPAL, 186_000 + 1, 6, Decimal(0))
    assert [row.principal_minor for row in result.installments] == [31_000] * 5 + [31_001]
    flat = schedule(Method.FLAT_FEE, 1_001, 3, Decimal("0.0075"), RoundingMode.HALF_UP)
    assert [row.charge_minor for row in flat.installments] == [7, 7, 9]  # 22.5225 -> 23 in all
    assert schedule(Method.ANNUITY, 1_000, 3, Decimal(0)).annualized_rate == 0


def test_bad_inputs_are_refused() -> None:
    for principal, n, rate in ((0, 3, Decimal(0)), (100, 0, Decimal(0)), (100, 3, Decimal(-1))):
        with pytest.raises(ValueError):
            schedule(Method.ANNUITY, principal, n, rate)
    with pytest.raises(ValueError):
        schedule("balloon", 100, 3, Decimal(0))
