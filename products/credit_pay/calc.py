"""Installment trial calculation: pure functions on integer minor units and ``Decimal``.

Three methods, each over ``terms`` monthly periods on a principal in minor units:

* ``annuity``: equal installments of principal and interest at ``period_rate`` per period. The
  installment is the exact annuity payment rounded to the minor unit; each period's interest is
  the outstanding balance times the rate, rounded; the last installment takes whatever principal
  is left, so the rounding difference lands there.
* ``equal_principal``: the principal split evenly (rounded down), the remainder in the last
  installment; interest on the outstanding balance, rounded, each period.
* ``flat_fee``: the principal split as in ``equal_principal``; a fee of ``period_rate`` times the
  *original* principal each period, rounded down, the last period bringing the fees to the total
  fee (``period_rate`` x principal x terms) rounded once.

For a tiny principal the rounded annuity installment may repay the balance before the last period;
the remaining installments are then zero (never an overpayment).

Principal parts always sum exactly to the principal. The annualized rate is found by the IRR
method: the monthly rate ``i`` at which the installments, discounted, equal the principal, times
12 (the nominal annual rate regulators in China require to be shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import StrEnum

from core.money import RoundingMode


class Method(StrEnum):
    ANNUITY = "annuity"
    EQUAL_PRINCIPAL = "equal_principal"
    FLAT_FEE = "flat_fee"


PERIODS_PER_YEAR = 12
_PRECISION = 50
# The IRR is solved to this tolerance on the monthly rate (far below one basis point a year).
_IRR_TOLERANCE = Decimal("1e-15")


@dataclass(frozen=True)
class Installment:
    number: int
    principal_minor: int
    # Interest (annuity, equal principal) or fee (flat fee) of the period.
    charge_minor: int
    balance_after_minor: int

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.charge_minor


@dataclass(frozen=True)
class Schedule:
    method: Method
    principal_minor: int
    terms: int
    period_rate: Decimal
    installments: tuple[Installment, ...]
    # Nominal annual rate by the IRR method, as a fraction (0.1325 = 13.25 %), 8 decimal places.
    annualized_rate: Decimal

    @property
    def total_charge_minor(self) -> int:
        return sum(item.charge_minor for item in self.installments)

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.total_charge_minor

    @property
    def annualized_rate_bps(self) -> Decimal:
        return (self.annualized_rate * 10_000).quantize(Decimal("0.01"))


def _round(value: Decimal, rounding: RoundingMode) -> int:
    return int(value.quantize(Decimal(1), rounding=rounding.decimal_mode))


def _validate(principal_minor: int, terms: int, period_rate: Decimal) -> None:
    if type(principal_minor) is not int or principal_minor <= 0:
        raise ValueError(f"principal_minor must be a positive int, not {principal_minor!r}")
    if type(terms) is not int or not 1 <= terms <= 360:
        raise ValueError(f"terms must be an int from 1 to 360, not {terms!r}")
    if not isinstance(period_rate, Decimal) or not period_rate.is_finite() or period_rate < 0:
        raise ValueError(f"period_rate must be a non-negative Decimal, not {period_rate!r}")


def schedule(
    method: Method | str,
    principal_minor: int,
    terms: int,
    period_rate: Decimal,
    rounding: RoundingMode = RoundingMode.HALF_EVEN,
) -> Schedule:
    """Every installment of ``principal_minor`` over ``terms`` periods, and the annualized rate."""
    method = Method(method)
    _validate(principal_minor, terms, period_rate)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if method is Method.ANNUITY:
            rows = _annuity(principal_minor, terms, period_rate, rounding)
        elif method is Method.EQUAL_PRINCIPAL:
            rows = _equal_principal(principal_minor, terms, period_rate, rounding)
        else:
            rows = _flat_fee(principal_minor, terms, period_rate, rounding)
        rate = irr_annualized(principal_minor, [row.total_minor for row in rows])
    return Schedule(method, principal_minor, terms, period_rate, tuple(rows), rate)


def annuity_payment(principal_minor: int, terms: int, period_rate: Decimal) -> Decimal:
    """The exact (unrounded) level installment, in minor units."""
    if period_rate == 0:
        return Decimal(principal_minor) / terms
    growth = (1 + period_rate) ** terms
    return Decimal(principal_minor) * period_rate * growth / (growth - 1)


def _annuity(principal: int, terms: int, rate: Decimal, rounding: RoundingMode) -> list[Installment]:
    payment = _round(annuity_payment(principal, terms, rate), rounding)
    rows, balance = [], principal
    for number in range(1, terms + 1):
        interest = _round(balance * rate, rounding)
        # Never more principal than is owed; the last period repays the rest, whatever it is.
        part = balance if number == terms else min(balance, max(payment - interest, 0))
        balance -= part
        rows.append(Installment(number, part, interest, balance))
    return rows


def _even_parts(principal: int, terms: int) -> list[int]:
    part = principal // terms
    return [part] * (terms - 1) + [principal - part * (terms - 1)]


def _equal_principal(principal: int, terms: int, rate: Decimal, rounding: RoundingMode) -> list[Installment]:
    rows, balance = [], principal
    for number, part in enumerate(_even_parts(principal, terms), start=1):
        interest = _round(balance * rate, rounding)
        balance -= part
        rows.append(Installment(number, part, interest, balance))
    return rows


def _flat_fee(principal: int, terms: int, rate: Decimal, rounding: RoundingMode) -> list[Installment]:
    # The total fee is rounded once; every period but the last takes its share rounded down, so
    # the last (which carries the difference) is never negative.
    total_fee = _round(principal * rate * terms, rounding)
    fee = int((principal * rate).to_integral_value(rounding="ROUND_FLOOR"))
    rows, balance = [], principal
    for number, part in enumerate(_even_parts(principal, terms), start=1):
        charge = fee if number < terms else total_fee - fee * (terms - 1)
        balance -= part
        rows.append(Installment(number, part, charge, balance))
    return rows


def npv(principal_minor: int, totals: list[int], monthly_rate: Decimal) -> Decimal:
    """Present value of the installments at ``monthly_rate`` less the principal."""
    factor = 1 + monthly_rate
    value, discount = Decimal(0), Decimal(1)
    for total in totals:
        discount /= factor
        value += total * discount
    return value - principal_minor


def irr_annualized(principal_minor: int, totals: list[int]) -> Decimal:
    """The nominal annual rate (12 times the monthly IRR) of borrowing ``principal_minor`` and
    repaying ``totals`` monthly. Bisection: the NPV falls strictly as the rate rises."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if sum(totals) <= principal_minor:
            # Nothing (or less than nothing) on top of the principal: a zero rate (never negative
            # here, since installments repay exactly the principal plus non-negative charges).
            return Decimal(0)
        low, high = Decimal(0), Decimal(1)
        while npv(principal_minor, totals, high) > 0:
            high *= 2
        while high - low > _IRR_TOLERANCE:
            middle = (low + high) / 2
            if npv(principal_minor, totals, middle) > 0:
                low = middle
            else:
                high = middle
        return ((low + high) / 2 * PERIODS_PER_YEAR).quantize(Decimal("0.00000001"))
