"""Validation of personal identifiers used across modules: Chinese resident ID numbers (GB 11643,
through python-stdnum) and phone numbers (through Google's libphonenumber port)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import phonenumbers
from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric


@dataclass(frozen=True)
class ResidentId:
    """Facts read from a valid 18-character resident ID number."""

    number: str
    birth_date: date
    region_code: str  # the six-digit administrative division code
    province: str | None
    county: str | None
    gender: str  # "male" or "female", from the order code's parity

    @property
    def masked(self) -> str:
        return f"{self.number[:6]}********{self.number[-4:]}"

    def age_on(self, day: date) -> int:
        years = day.year - self.birth_date.year
        return years - ((day.month, day.day) < (self.birth_date.month, self.birth_date.day))


class InvalidIdentifier(ValueError):
    """An identifier failed validation; ``code`` says which rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_resident_id(value: str, *, today: date) -> ResidentId:
    """Validate checksum, birth date (not after ``today``) and region; 15-digit numbers are refused."""
    number = ric.compact(value)
    if len(number) != 18:
        raise InvalidIdentifier("id_number_length", "resident ID number must have 18 characters")
    try:
        ric.validate(number)
    except stdnum_errors.InvalidChecksum:
        raise InvalidIdentifier("id_number_checksum", "resident ID number has a wrong check digit") from None
    except stdnum_errors.InvalidComponent:
        raise InvalidIdentifier("id_number_component", "resident ID number has an invalid birth date or region") from None
    except stdnum_errors.ValidationError:
        raise InvalidIdentifier("id_number_format", "resident ID number is not well formed") from None
    birth = ric.get_birth_date(number)
    if birth > today:
        raise InvalidIdentifier("id_number_birth_date", "resident ID number has a birth date in the future")
    place = ric.get_birth_place(number) or {}
    return ResidentId(
        number=number,
        birth_date=birth,
        region_code=number[:6],
        province=place.get("province"),
        county=place.get("county"),
        gender="male" if int(number[16]) % 2 else "female",
    )


def normalize_mobile(value: str, *, region: str = "CN") -> str:
    """A mobile number in E.164 (``+8613800138000``); refuses landlines and invalid numbers."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("phone_format", "phone number is not well formed") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentifier("phone_invalid", "phone number is not a valid number")
    if phonenumbers.number_type(parsed) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidIdentifier("phone_not_mobile", "phone number is not a mobile number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    return f"{e164[:-8]}****{e164[-4:]}"
