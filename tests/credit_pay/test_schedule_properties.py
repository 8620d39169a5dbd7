"""Property tests of the installment schedules against an independent computation.

``test_credit_pay_calc.py`` checks each installment's charge against exact arithmetic for the
default rounding mode, the plan terms a product may offer and whole basis points, and the
annualized rate by the sign of the exact NPV around it. This file adds what it leaves out:

* the **whole** schedule (every principal part, charge and balance, and the level annuity
  payment) recomputed independently from the documented rule: the unrounded schedule in exact
  ``fractions.Fraction`` arithmetic, then the rounding rule written here from scratch (not with
  ``decimal``) for **every rounding mode** a bank may configure, for any term count from 1 to 120
  and rates with two decimals of a basis point;
* the annualized rate against an **independent IRR**: a bisection on exact rationals written
  here, to 1e-13 a month. Stated tolerance: the two agree within 1e-8 a year (calc rounds to 8
  decimal places, i.e. 0.0001 bps), and the displayed ``annualized_rate_bps`` (two decimals) is
  within 0.01 bps of the independent rate;
* the billing dates of a plan: one per month on the billing day, strictly after the conversion.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from core.money import RoundingMode
from products.credit_pay.calc import Method, schedule
from products.credit_pay.installments import billing_dates

IRR_TOLERANCE_MONTHLY = Fraction(1, 10**13)
ANNUAL_TOLERANCE = Fraction(1, 10**8)


def floor(value: Fraction) -> int:
    return value.numerator // value.denominator


def rounded(value: Fraction, mode: RoundingMode) -> int:
    """``value`` to an integer by ``mode``, the way a bank's rounding setting is documented."""
    low = floor(value)
    rest = value - low
    if rest == 0:
        return low
    negative = value < 0
    away = low if negative else low + 1  # away from zero
    toward = low + 1 if negative else low  # toward zero
    half = Fraction(1, 2)
    if mode is RoundingMode.FLOOR:
        return low
    if mode is RoundingMode.CEILING:
        return low + 1
    if mode is RoundingMode.UP:
        return away
    if mode is RoundingMode.DOWN:
        return toward
    distance_from_low = rest
    if distance_from_low != half:
        return low if distance_from_low < half else low + 1
    if mode is RoundingMode.HALF_UP:
        return away
    if mode is RoundingMode.HALF_DOWN:
        return toward
    return low if low % 2 == 0 else low + 1  # HALF_EVEN


def exact_annuity_payment(principal: int, n: int, r: Fraction) -> Fraction:
    if r == 0:
        return Fraction(principal, n)
    growth = (1 + r) ** n
    return principal * r * growth / (growth - 1)


def expected_schedule(
    method: Method, principal: int, n: int, r: Fraction, mode: RoundingMode
) -> list[tuple[int, int, int]]:
    """(principal part, charge, balance after) per installment, by the documented rule."""
    rows: list[tuple[int, int, int]] = []
    balance = principal
    if method is Method.ANNUITY:
        payment = rounded(exact_annuity_payment(principal, n, r), mode)
        for k in range(1, n + 1):
            interest = rounded(balance * r, mode)
            part = balance if k == n else min(balance, max(payment - interest, 0))
            balance -= part
            rows.append((part, interest, balance))
        return rows
    even = principal // n
    parts = [even] * (n - 1) + [principal - even * (n - 1)]
    if method is Method.EQUAL_PRINCIPAL:
        for part in parts:
            interest = rounded(balance * r, mode)
            balance -= part
            rows.append((part, interest, balance))
        return rows
    total_fee = rounded(principal * r * n, mode)
    fee = floor(principal * r)
    for k, part in enumerate(parts, start=1):
        balance -= part
        rows.append((part, fee if k < n else total_fee - fee * (n - 1), balance))
    return rows


def npv(principal: int, totals: list[int], monthly: Fraction) -> Fraction:
    """Exact present value of the installments less the principal (Horner in the discount factor)."""
    v = 1 / (1 + monthly)
    value = Fraction(0)
    for total in reversed(totals):
        value = (value + total) * v
    return value - principal


def independent_irr(principal: int, totals: list[int]) -> Fraction:
    """The monthly IRR by bisection on dyadic rationals (exact NPV; it falls as the rate rises)."""
    if sum(totals) <= principal:
        return Fraction(0)
    low, high = Fraction(0), Fraction(1)
    while npv(principal, totals, high) > 0:
        high *= 2
    while high - low > IRR_TOLERANCE_MONTHLY:
        middle = (low + high) / 2
        low, high = (middle, high) if npv(principal, totals, middle) > 0 else (low, middle)
    return (low + high) / 2


methods = st.sampled_from(list(Method))
modes = st.sampled_from(list(RoundingMode))
# Rates with two decimals of a basis point: 0 to 3.00 % a month.
rates = st.integers(min_value=0, max_value=30_000).map(lambda hundredths: Decimal(hundredths) / 1_000_000)
# Rates and principals whose products land exactly on half a minor unit, so every tie rule is used.
tie_rates = st.sampled_from(
    [Decimal("0.005"), Decimal("0.0025"), Decimal("0.0075"), Decimal("0.0125"), Decimal("0.015")]
)
tie_principals = st.integers(min_value=1, max_value=10**7).map(lambda k: 100 * k + 100)
principals = st.one_of(st.integers(min_value=1, max_value=10**11), tie_principals)


@settings(max_examples=200, deadline=None)
@given(
    method=methods,
    principal=principals,
    n=st.integers(min_value=1, max_value=120),
    rate=st.one_of(rates, tie_rates),
    mode=modes,
)
def test_every_schedule_is_the_documented_rounding_of_the_exact_schedule(
    method, principal, n, rate, mode
) -> None:
    result = schedule(method, principal, n, rate, mode)
    r = Fraction(rate)
    got = [(row.principal_minor, row.charge_minor, row.balance_after_minor) for row in result.installments]
    assert got == expected_schedule(method, principal, n, r, mode)
    assert sum(part for part, _, _ in got) == principal
    assert all(part >= 0 and charge >= 0 for part, charge, _ in got)
    assert result.total_minor == principal + sum(charge for _, charge, _ in got)
    # Each rounded charge is within one minor unit of the unrounded one (the flat fee's last
    # period carries at most n - 1 units of the other periods' rounding down).
    balance = Fraction(principal)
    for k, (part, charge, _) in enumerate(got, start=1):
        exact = principal * r if method is Method.FLAT_FEE else balance * r
        slack = n if method is Method.FLAT_FEE and k == n else 1
        assert abs(charge - exact) <= slack
        balance -= part


@settings(max_examples=60, deadline=None)
@given(
    method=methods,
    principal=st.integers(min_value=1_000, max_value=10**10),
    n=st.sampled_from([1, 2, 3, 6, 9, 12, 18, 24, 36]),
    rate=rates,
    mode=modes,
)
def test_the_annualized_rate_matches_an_independent_irr(method, principal, n, rate, mode) -> None:
    result = schedule(method, principal, n, rate, mode)
    totals = [row.total_minor for row in result.installments]
    annual = 12 * independent_irr(principal, totals)
    assert abs(Fraction(result.annualized_rate) - annual) <= ANNUAL_TOLERANCE
    assert abs(Fraction(result.annualized_rate_bps) - annual * 10_000) <= Fraction(1, 100)
    if rate > 0 and method is not Method.FLAT_FEE and principal >= 100_000:
        # Interest on the balance at r a month is an IRR of r a month, up to the rounding.
        assert abs(annual - 12 * Fraction(rate)) < Fraction(1, 1_000)


@settings(max_examples=200, deadline=None)
@given(
    after=st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)),
    billing_day=st.integers(min_value=1, max_value=28),
    n=st.integers(min_value=1, max_value=36),
)
def test_installments_fall_due_on_consecutive_billing_days_after_the_conversion(
    after, billing_day, n
) -> None:
    dates = billing_dates(after, billing_day, n)
    assert len(dates) == n and all(d.day == billing_day for d in dates)
    assert after < dates[0] <= after + timedelta(days=31)
    for earlier, later in itertools.pairwise(dates):
        assert (later.year * 12 + later.month) - (earlier.year * 12 + earlier.month) == 1
