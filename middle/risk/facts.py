"""The typed fact set rules are evaluated against.

Facts come in named sections (``applicant``, ``velocity``, ``score`` ...), each a frozen pydantic
model, so a rule refers to ``applicant.age`` or ``velocity.device.h1.count`` and a misspelled
field is caught when the rule is compiled (see :mod:`middle.risk.expressions`). Sections are
dumped to JSON-native values (``model_dump(mode="json")``) before rules see them: the same values
are stored in the decision record, so a replay evaluates exactly what the live decision did.

``consented`` is the credit module's :class:`~middle.credit.service.ConsentedData` (what a partner
sends with the user's consent; absent values are ``null``) and ``profile`` its
:class:`~middle.credit.service.CreditProfile` (from the ``scorecard`` step on). ``extra`` is an
open map of bank-specific facts a product passes through; rules test its keys with CEL's
``has()``: ``has(extra.vip) && extra.vip``. ``profile.bureau`` and ``profile.extra`` are open too.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from middle.credit.service import ConsentedData, CreditProfile

FlowName = Literal["activation", "purchase", "payment"]
FLOWS: tuple[str, ...] = ("activation", "purchase", "payment")

# Rules stages of each flow, in the order the flow evaluates them.
STAGES: dict[str, tuple[str, ...]] = {
    "activation": ("pre_screen", "anti_fraud", "post_score"),
    "purchase": ("pre_screen", "anti_fraud"),
    "payment": ("pre_screen", "anti_fraud"),
}

VELOCITY_DIMENSIONS: tuple[str, ...] = ("customer", "device", "merchant")
# Sections whose keys are not all known when a rule is compiled (a missing key fails at run time).
OPEN_SECTIONS: frozenset[str] = frozenset({"extra", "profile"})

JsonScalar = str | int | float | bool | None


class FactSection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RequestFacts(FactSection):
    """About the request itself."""

    flow: str = ""
    partner_id: str = ""
    scene: str = ""
    product: str = ""
    channel: str = ""
    local_hour: int = Field(default=0, description="hour of the decision in the tenant's timezone, 0-23")
    weekday: int = Field(default=1, description="ISO weekday of the business date, 1 (Monday) - 7")
    business_date: str = ""


class ApplicantFacts(FactSection):
    """The customer, from the party registry. ``known`` is false for an unknown payer."""

    known: bool = False
    customer_no: str = ""
    age: int = 0
    gender: str = ""
    region_code: str = Field(default="", description="six-digit administrative division of the ID number")
    province_code: str = ""
    phone_prefix: str = Field(default="", description="first three digits of the mobile number")
    customer_since_days: int = 0


class DeviceFacts(FactSection):
    known: bool = False
    id: str = ""


class TransactionFacts(FactSection):
    """A purchase or payment being authorized."""

    amount_minor: int = 0
    currency: str = ""
    merchant_id: str = ""
    merchant_category: str = ""
    terminal_id: str = ""


class AccountFacts(FactSection):
    """The credit account a purchase draws on, as the product passes it (``provided`` if it did)."""

    provided: bool = False
    line_minor: int = 0
    available_minor: int = 0
    days_past_due: int = 0


class BlacklistFacts(FactSection):
    """Which of the applicant's identifiers are on the tenant's blacklist."""

    id_number: bool = False
    phone: bool = False
    device: bool = False
    any: bool = False


class WindowFacts(FactSection):
    """Activity of one kind in one sliding window before this attempt."""

    count: int = 0
    amount_minor: int = 0


class VelocityFacts(FactSection):
    """Per dimension, per configured window (``velocity.customer.h24.count``)."""

    customer: dict[str, WindowFacts] = Field(default_factory=dict)
    device: dict[str, WindowFacts] = Field(default_factory=dict)
    merchant: dict[str, WindowFacts] = Field(default_factory=dict)


class ScoreFacts(FactSection):
    """The scorecard's result (activation, from the ``scorecard`` step on)."""

    value: float = 0
    band: str = ""
    scorecard_version: str = ""


# The sections each flow has at its first rules stage (``pre_screen``, from the ``applicant``
# step), the ones the ``anti_fraud`` step adds, and the ones the ``scorecard`` step adds.
GATHERED_SECTIONS: dict[str, tuple[str, ...]] = {
    "activation": ("request", "applicant", "consented", "device", "extra"),
    "purchase": ("request", "applicant", "device", "txn", "account", "extra"),
    "payment": ("request", "applicant", "device", "txn", "extra"),
}
ANTI_FRAUD_SECTIONS: tuple[str, ...] = ("blacklist", "velocity")
SCORE_SECTIONS: tuple[str, ...] = ("score", "profile")

SECTION_MODELS: dict[str, type[BaseModel]] = {
    "consented": ConsentedData,
    "profile": CreditProfile,
    "request": RequestFacts,
    "applicant": ApplicantFacts,
    "device": DeviceFacts,
    "txn": TransactionFacts,
    "account": AccountFacts,
    "blacklist": BlacklistFacts,
    "velocity": VelocityFacts,
    "score": ScoreFacts,
}


def sections_at(flow: str, stage: str) -> tuple[str, ...]:
    """The fact sections rules of ``flow`` can refer to at ``stage``."""
    sections = GATHERED_SECTIONS[flow]
    if stage in ("anti_fraud", "post_score"):
        sections = sections + ANTI_FRAUD_SECTIONS
    if stage == "post_score":
        sections = sections + SCORE_SECTIONS
    return sections


def empty_velocity(windows: dict[str, int]) -> dict[str, Any]:
    zero = {"count": 0, "amount_minor": 0}
    return {dimension: {name: dict(zero) for name in windows} for dimension in VELOCITY_DIMENSIONS}


def sample_facts(flow: str, stage: str, windows: dict[str, int]) -> dict[str, Any]:
    """Facts with every typed field present (zero values), to check a rule when it is compiled."""
    facts: dict[str, Any] = {}
    for section in sections_at(flow, stage):
        if section == "extra":
            facts[section] = {}
        elif section == "profile":
            facts[section] = _SAMPLE_PROFILE
        elif section == "velocity":
            facts[section] = empty_velocity(windows)
        else:
            facts[section] = SECTION_MODELS[section]().model_dump(mode="json")
    return facts


_SAMPLE_PROFILE = CreditProfile(
    customer_no="", as_of=date(2000, 1, 1), age_years=0, region_code="000000", gender=""
).model_dump(mode="json")
