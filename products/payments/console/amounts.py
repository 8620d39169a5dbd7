"""Amounts as a teller types them ("12.50") to integer minor units, exactly.

No float anywhere and no rounding: an amount with more decimals than the currency has (``12.505``
yuan, ``100.5`` yen) is refused, not rounded, because the teller meant a different amount.
"""

from __future__ import annotations

import re
from decimal import Decimal

from core.errors import ValidationFailed
from core.money import Money, currency_exponent

# Digits, at most one decimal point with digits on both sides; no sign, exponent or grouping.
# ASCII digits only (``\d`` would also take full-width and other scripts' digits).
_AMOUNT = re.compile(r"^(?P<whole>[0-9]{1,15})(?:\.(?P<fraction>[0-9]{1,6}))?$")


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"


def parse_amount(text: str, currency: str, *, field: str = "amount") -> int:
    """``"12.50"`` in CNY is 1250. Refuses empty, signed, zero, grouped (``1,000``) and over-precise input."""
    exponent = currency_exponent(currency)
    value = (text or "").strip()
    match = _AMOUNT.match(value)
    if match is None:
        example = "12.50" if exponent == 2 else ("1250" if exponent == 0 else "12." + "5" * exponent)
        raise InvalidAmount(f"type the amount as digits, like {example}",
                            details=[{"field": field, "code": "invalid_amount", "message": "not an amount"}])
    fraction = match.group("fraction") or ""
    if len(fraction) > exponent:
        places = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        raise InvalidAmount(f"{currency} amounts have {places}",
                            details=[{"field": field, "code": "too_many_decimals", "message": places}])
    minor = int(Decimal(value).scaleb(exponent))
    if minor <= 0:
        raise InvalidAmount("the amount must be more than zero",
                            details=[{"field": field, "code": "not_positive", "message": "must be > 0"}])
    return minor


def format_amount(amount_minor: int, currency: str) -> str:
    """Minor units as the teller reads them: ``1250`` CNY is ``12.50`` (the inverse of :func:`parse_amount`)."""
    return f"{Money(amount_minor, currency).amount:f}"
