"""Money: integer minor units with an ISO 4217 currency. Never float.

Rounding is explicit: every conversion from a ``Decimal`` amount names its rounding mode, which
comes from the tenant's configuration (``rounding``), so two banks may round differently.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache

import iso4217


class RoundingMode(StrEnum):
    """The rounding modes a bank may choose; names follow :mod:`decimal`."""

    HALF_EVEN = "HALF_EVEN"
    HALF_UP = "HALF_UP"
    HALF_DOWN = "HALF_DOWN"
    UP = "UP"
    DOWN = "DOWN"
    CEILING = "CEILING"
    FLOOR = "FLOOR"

    @property
    def decimal_mode(self) -> str:
        return getattr(decimal, f"ROUND_{self.value}")


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """Number of minor-unit digits of an ISO 4217 currency (CNY 2, JPY 0, BHD 3)."""
    try:
        currency = iso4217.Currency(code)
    except ValueError:
        raise ValueError(f"unknown ISO 4217 currency code {code!r}") from None
    exponent = currency.exponent
    if exponent is None:  # funds codes and metals (XAU) have no minor unit
        raise ValueError(f"currency {code!r} has no minor unit and cannot hold money")
    return exponent


def validate_currency(code: str) -> str:
    code = code.upper()
    currency_exponent(code)
    return code


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units (fen for CNY) of one currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool):
            raise TypeError(f"amount_minor must be int, not {type(self.amount_minor).__name__}")
        currency_exponent(self.currency)

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str, rounding: RoundingMode) -> Money:
        """From a major-unit amount (``Decimal("126.50")``), rounding to the minor unit."""
        if isinstance(amount, float):
            raise TypeError("Money never takes a float; pass a Decimal or a string")
        exponent = currency_exponent(currency)
        quantum = Decimal(1).scaleb(-exponent)
        major = Decimal(amount).quantize(quantum, rounding=rounding.decimal_mode)
        return cls(int(major.scaleb(exponent)), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def amount(self) -> Decimal:
        """The major-unit amount, exact."""
        return Decimal(self.amount_minor).scaleb(-currency_exponent(self.currency))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"
