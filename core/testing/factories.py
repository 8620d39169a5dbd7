"""Valid test identifiers: resident ID numbers with correct check digits, mobile numbers."""

from __future__ import annotations

from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def resident_id(birth_date: date, *, region_code: str = "110105", sequence: int = 1, female: bool = False) -> str:
    """An 18-character resident ID number (ISO 7064 MOD 11-2 check digit, GB 11643)."""
    if not 0 <= sequence <= 498:
        raise ValueError("sequence must be 0..498")
    order = sequence * 2 + (2 if female else 1)  # the order code's parity is the gender
    return with_check_digit(f"{region_code}{birth_date:%Y%m%d}{order:03d}")


def with_check_digit(body: str) -> str:
    """Append the ISO 7064 MOD 11-2 check digit to 17 digits (even if they are not a valid ID)."""
    return body + _CHECK[sum(int(digit) * weight for digit, weight in zip(body, _WEIGHTS, strict=True)) % 11]


def mobile(sequence: int = 0, *, prefix: str = "138") -> str:
    """A valid mainland mobile number, distinct per ``sequence``."""
    return f"{prefix}{sequence:08d}"
