"""The credit service: a customer's credit profile, its score, and the offer (line and price).

This is the contract the risk module's decision flows and the products call. Everything here is
plain data in, plain data out; no HTTP.

Obtain a service per unit of work, like every module's::

    runtime = tenant.module("credit")
    with tenant.unit_of_work() as uow:
        credit = runtime.container.service(uow=uow)      # CreditService(uow, settings, hooks, scorecard)
        profile = credit.build_profile("cus_...", {"income_band": "5k_10k", "bureau_authorized": True})
        score = credit.score(profile)                    # ScoreResult
        offer = credit.offer(profile, score)             # Offer | None (None: no line to offer)

``CreditService.build_profile(customer_no, consented: Mapping | ConsentedData | None, *, customer=None) -> CreditProfile``
    Identity facts from the party registry (``middle.party``; ``NotFound`` for an unknown
    customer; ``customer``: the party row the caller already read, which saves reading it again),
    the consented data validated (``ValidationFailed`` naming each bad field; an
    ``income_band`` must be one of the settings' ``income_bands``) and kept as the customer's
    latest consented data, internal history merged from ``sceneos_credit_internal_history``
    (collected; amounts and counts summed, days past due maxed, utilization derived), and bureau
    facts from ``sceneos_credit_fetch_bureau_report`` (firstresult) when the settings allow it and
    the customer authorized it (``bureau_authorized``).
``CreditService.score(profile) -> ScoreResult``
    The tenant's scorecard (settings ``scorecard``) applied to ``profile.facts()``: the score, each
    feature's points and bin, at most four principal reasons (largest shortfall from the feature's
    best points first), the scorecard's ``name@version``, the probability of default (Decimal).
    Pure: the same profile gives the same result, so decisions replay.
``CreditService.offer(profile, score) -> Offer | None``
    The limit strategy hook (``sceneos_credit_limit_strategy``, firstresult; the built-in default
    is ``trylast``) gives a line; then the caps from settings, in this order: ``max_line_minor``,
    ``max_total_exposure_minor`` less existing lines, round down to ``line_step_minor``, and below
    ``min_line_minor`` there is no offer (None). The pricing hook
    (``sceneos_credit_pricing_strategy``, same pattern) gives the annual and fee rates; then
    ``annual_rate_ceiling_bps`` bounds the rate and then rate + fee. Pure for a given profile and
    score (hooks should be too), so decisions replay.
``CreditService.assess(customer_no, consented) -> Assessment``
    The three steps in one call, for callers without a decision flow (CLI, limit reviews).
``CreditService.band_for(score) -> ScoreBand | None``
    The settings' score band a score falls in.

Data (pydantic, frozen; money in integer minor units of the tenant's currency, rates in basis
points, never floats for money):

* :class:`CreditProfile` = :class:`IdentityFacts` + :class:`ConsentedData` +
  :class:`InternalHistory` + ``bureau: dict | None``; ``facts()`` flattens it for scorecards and
  rules (bureau keys as ``bureau.<key>``, extra consented keys as ``extra.<key>``).
* :class:`ScoreResult`: ``score: int``, ``points_by_feature: dict[str, int]``,
  ``bins_by_feature: dict[str, str]``, ``reasons: list[Reason]`` (``Reason`` is a named tuple
  ``(code, message)``), ``scorecard_version: str``, ``probability_of_default: Decimal`` (six places;
  read from the score through the scorecard's scaling, not a float model output).
* :class:`Offer`: ``line_minor``, ``currency``, ``annual_rate_bps``, ``daily_rate`` (Decimal
  fraction per day, ``annual_rate_bps / 10000 / days_in_year`` rounded *down* to 8 places, so it
  never annualizes above the annual rate), ``fee_rate_bps`` (annualized, on the drawn balance),
  ``score_band``, ``strategy_version`` (``limit=<plugin>;pricing=<plugin>;config=<version>``).
* :class:`Pricing`: what the pricing hook returns (``annual_rate_bps``, ``fee_rate_bps``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.errors import ValidationFailed
from core.plugins import TenantHooks
from core.statements import run, tenant_bound
from core.tenancy import UnitOfWork
from middle.credit.models import CreditProfileRecord
from middle.credit.scorecard import FactValue, Reason, Scorecard, load_scorecard
from middle.credit.settings import CreditSettings, ScoreBand

DAILY_RATE_QUANTUM = Decimal("0.00000001")
BPS_PER_UNIT = Decimal(10_000)


class PartyRecord(Protocol):
    """A customer the caller already read from the party registry (a row or a ``CustomerView``)."""

    @property
    def customer_no(self) -> str: ...
    @property
    def birth_date(self) -> date: ...
    @property
    def region_code(self) -> str: ...
    @property
    def gender(self) -> str: ...


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IdentityFacts(_Facts):
    """Facts read from the party registry (validated resident ID number)."""

    customer_no: str
    as_of: date = Field(description="business date the profile was built on")
    age_years: int = Field(ge=0, le=150)
    region_code: str = Field(min_length=6, max_length=6)
    gender: str


class ConsentedData(_Facts):
    """Data the customer consented to share, sent by a partner or the bank. All optional."""

    income_band: str | None = Field(
        default=None, max_length=32, description="a code of settings.income_bands"
    )
    occupation: str | None = Field(
        default=None, max_length=32, description="unemployed, unskilled, skilled, management"
    )
    employment_band: str | None = Field(
        default=None, max_length=32, description="unemployed, lt_1y, 1y_4y, 4y_7y, 7y_plus"
    )
    housing: str | None = Field(default=None, max_length=32, description="own, rent, free")
    device_id: str | None = Field(default=None, max_length=128)
    scene: str | None = Field(
        default=None, max_length=32, description="the partner's scene: travel, ecommerce, ..."
    )
    order_count_90d: int | None = Field(default=None, ge=0)
    order_amount_90d_minor: int | None = Field(default=None, ge=0)
    active_days_90d: int | None = Field(default=None, ge=0, le=90)
    account_age_days: int | None = Field(
        default=None, ge=0, description="age of the customer's account at the partner"
    )
    bureau_authorized: bool = Field(
        default=False, description="the customer authorized a credit-report query"
    )
    # Bank-specific consented facts for the bank's own scorecards and rules (``extra.<key>``).
    extra: dict[str, FactValue] = Field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _extra_keys(cls, value: dict[str, FactValue]) -> dict[str, FactValue]:
        import re

        for key, fact in value.items():
            if not re.match(r"^[a-z][a-z0-9_]{0,40}$", key):
                raise ValueError(f"extra key {key!r} must be lower-case letters, digits and _")
            if isinstance(fact, float) and not math.isfinite(fact):
                raise ValueError(f"extra.{key} must be a finite number")
        return value


class InternalHistory(_Facts):
    """The customer's history at this bank, as the products report it (summed over products)."""

    existing_line_minor: int = Field(default=0, ge=0, description="credit lines already granted")
    outstanding_minor: int = Field(default=0, ge=0, description="drawn and unpaid on those lines")
    utilization_bps: int = Field(default=0, ge=0, description="outstanding / lines, derived")
    existing_credit_count: int = Field(default=0, ge=0)
    max_days_past_due: int = Field(default=0, ge=0, description="worst delinquency on record")
    current_days_past_due: int = Field(default=0, ge=0)
    on_time_repayments: int = Field(default=0, ge=0)
    late_repayments: int = Field(default=0, ge=0)


# How the reports of several products combine; utilization_bps is derived, never reported.
_SUMMED = (
    "existing_line_minor",
    "outstanding_minor",
    "existing_credit_count",
    "on_time_repayments",
    "late_repayments",
)
_MAXED = ("max_days_past_due", "current_days_past_due")


def merge_internal_history(reports: list[Mapping[str, Any]]) -> InternalHistory:
    """Combine the products' reports: amounts and counts add up, days past due take the worst."""
    totals: dict[str, int] = dict.fromkeys(_SUMMED + _MAXED, 0)
    for report in reports:
        if "utilization_bps" in report:
            raise ValueError("internal history reports outstanding_minor; utilization_bps is derived")
        one = InternalHistory.model_validate(dict(report))
        for key in _SUMMED:
            totals[key] += getattr(one, key)
        for key in _MAXED:
            totals[key] = max(totals[key], getattr(one, key))
    line, outstanding = totals["existing_line_minor"], totals["outstanding_minor"]
    utilization_bps = outstanding * 10_000 // line if line else (10_000 if outstanding else 0)
    return InternalHistory(**totals, utilization_bps=utilization_bps)


class CreditProfile(IdentityFacts, ConsentedData, InternalHistory):
    """Everything a credit decision may look at, for one customer on one business date."""

    bureau: dict[str, FactValue] | None = Field(
        default=None, description="the credit report's facts, if fetched"
    )

    def facts(self) -> dict[str, FactValue]:
        """Flat facts for scorecards and rules: fields, ``bureau.<key>``, ``extra.<key>``."""
        flat: dict[str, FactValue] = {
            name: getattr(self, name) for name in type(self).model_fields if name not in ("bureau", "extra")
        }
        flat["as_of"] = self.as_of.isoformat()
        for key, value in (self.bureau or {}).items():
            flat[f"bureau.{key}"] = value
        for key, value in self.extra.items():
            flat[f"extra.{key}"] = value
        return flat


class ScoreResult(BaseModel):
    """A scorecard's verdict on one profile."""

    model_config = ConfigDict(frozen=True)

    score: int
    points_by_feature: dict[str, int]
    bins_by_feature: dict[str, str]
    reasons: list[Reason] = Field(max_length=4, description="principal reasons, most important first")
    scorecard_version: str
    probability_of_default: Decimal = Field(ge=0, le=1)


class Pricing(BaseModel):
    """What a pricing strategy answers: rates in basis points per year."""

    model_config = ConfigDict(frozen=True)

    annual_rate_bps: int = Field(ge=0)
    fee_rate_bps: int = Field(default=0, ge=0)


class Offer(BaseModel):
    """A credit line and its price, after every cap and the rate ceiling."""

    model_config = ConfigDict(frozen=True)

    line_minor: int = Field(gt=0)
    currency: str
    annual_rate_bps: int = Field(ge=0)
    daily_rate: Decimal = Field(ge=0, description="fraction per day, e.g. 0.00049315")
    fee_rate_bps: int = Field(ge=0)
    score_band: str
    strategy_version: str


@dataclass(frozen=True)
class Assessment:
    profile: CreditProfile
    score: ScoreResult
    offer: Offer | None


def daily_rate_of(annual_rate_bps: int, days_in_year: int) -> Decimal:
    """The daily rate as a fraction, rounded down so it never annualizes above the annual rate."""
    return (Decimal(annual_rate_bps) / BPS_PER_UNIT / Decimal(days_in_year)).quantize(
        DAILY_RATE_QUANTUM, rounding=ROUND_DOWN
    )


def apply_line_caps(line_minor: int, profile: CreditProfile, settings: CreditSettings) -> int | None:
    """The caps from configuration, applied after the limit hook. None: no offer."""
    line = min(
        line_minor, settings.max_line_minor, settings.max_total_exposure_minor - profile.existing_line_minor
    )
    if line <= 0:
        return None
    line -= line % settings.line_step_minor
    if line <= 0 or line < settings.min_line_minor:
        return None
    assert (
        line <= settings.max_line_minor
        and line + profile.existing_line_minor <= settings.max_total_exposure_minor
    )
    return line


def apply_rate_ceiling(pricing: Pricing, settings: CreditSettings) -> Pricing:
    """The rate ceiling from configuration bounds the annual rate, then rate plus fee rate."""
    ceiling = settings.annual_rate_ceiling_bps
    rate = min(pricing.annual_rate_bps, ceiling)
    fee = min(pricing.fee_rate_bps, ceiling - rate)
    assert rate + fee <= ceiling
    return Pricing(annual_rate_bps=rate, fee_rate_bps=fee)


def _invalid(exc: ValidationError, prefix: str) -> ValidationFailed:
    details = [
        {
            "field": ".".join([prefix, *(str(p) for p in error["loc"])]).strip("."),
            "code": error["type"],
            "message": error["msg"].removeprefix("Value error, "),
        }
        for error in exc.errors()
    ]
    return ValidationFailed("; ".join(f"{d['field']}: {d['message']}" for d in details), details=details)


class CreditService:
    """Credit operations for one tenant within one unit of work. See the module docstring."""

    def __init__(
        self,
        uow: UnitOfWork,
        settings: CreditSettings,
        hooks: TenantHooks,
        scorecard: Scorecard | None = None,
    ) -> None:
        self.uow = uow
        self.tenant = uow.tenant
        self.settings = settings
        self.hooks = hooks
        self.scorecard = scorecard if scorecard is not None else load_scorecard(settings.scorecard)

    # --- profile ------------------------------------------------------------------------------

    def build_profile(
        self,
        customer_no: str,
        consented: Mapping[str, Any] | ConsentedData | None = None,
        *,
        customer: PartyRecord | None = None,
    ) -> CreditProfile:
        consent = self._validate_consented(consented)
        identity = self._identity(customer_no, customer)
        self._remember_consented(customer_no, consent)
        reports = [
            report
            for report in self.hooks.hook.sceneos_credit_internal_history(
                tenant=self.tenant, customer_no=customer_no
            )
            if report
        ]
        try:
            history = merge_internal_history(reports)
        except ValidationError as exc:
            raise _invalid(exc, "internal_history") from None
        profile = CreditProfile(**identity.model_dump(), **consent.model_dump(), **history.model_dump())
        if self.settings.fetch_bureau and consent.bureau_authorized:
            report = self.hooks.hook.sceneos_credit_fetch_bureau_report(tenant=self.tenant, profile=profile)
            if report is not None:
                profile = CreditProfile(**{**profile.model_dump(), "bureau": dict(report)})
        return profile

    def stored_consented(self, customer_no: str) -> ConsentedData | None:
        """The customer's latest consented data, as last given to :meth:`build_profile`."""
        row = self._profile_row(customer_no)
        return ConsentedData.model_validate(row.consented) if row is not None else None

    # --- score and offer ----------------------------------------------------------------------

    def score(self, profile: CreditProfile) -> ScoreResult:
        outcome = self.scorecard.compiled().score(profile.facts(), max_reasons=self.settings.max_reasons)
        return ScoreResult(
            score=outcome.score,
            points_by_feature=outcome.points_by_feature,
            bins_by_feature=outcome.bins_by_feature,
            reasons=outcome.reasons,
            scorecard_version=self.scorecard.id,
            probability_of_default=outcome.probability_of_default,
        )

    def band_for(self, score: int) -> ScoreBand | None:
        return self.settings.band_for(score)

    def offer(self, profile: CreditProfile, score: ScoreResult) -> Offer | None:
        band = self.settings.band_for(score.score)
        if band is None:
            return None
        kwargs = {
            "tenant": self.tenant,
            "profile": profile,
            "score": score,
            "band": band,
            "settings": self.settings,
        }
        limit_plugin, line = self._first_answer("sceneos_credit_limit_strategy", kwargs)
        if line is None:
            return None
        if not isinstance(line, int) or isinstance(line, bool):
            raise TypeError(
                f"plugin {limit_plugin!r}: sceneos_credit_limit_strategy must return int minor units"
            )
        line_minor = apply_line_caps(line, profile, self.settings)
        if line_minor is None:
            return None
        pricing_plugin, answer = self._first_answer(
            "sceneos_credit_pricing_strategy", {**kwargs, "line_minor": line_minor}
        )
        if answer is None:
            return None
        if not isinstance(answer, Pricing):
            raise TypeError(
                f"plugin {pricing_plugin!r}: sceneos_credit_pricing_strategy must return a Pricing"
            )
        pricing = apply_rate_ceiling(answer, self.settings)
        return Offer(
            line_minor=line_minor,
            currency=self.tenant.currency,
            annual_rate_bps=pricing.annual_rate_bps,
            daily_rate=daily_rate_of(pricing.annual_rate_bps, self.settings.days_in_year),
            fee_rate_bps=pricing.fee_rate_bps,
            score_band=band.name,
            strategy_version=f"limit={limit_plugin};pricing={pricing_plugin};config={self.settings.strategy_version}",
        )

    def assess(
        self, customer_no: str, consented: Mapping[str, Any] | ConsentedData | None = None
    ) -> Assessment:
        profile = self.build_profile(customer_no, consented)
        score = self.score(profile)
        return Assessment(profile=profile, score=score, offer=self.offer(profile, score))

    # --- inside -------------------------------------------------------------------------------

    def _first_answer(self, hook_name: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
        """A firstresult hook called one implementation at a time, to record which plugin answered."""
        for plugin_name, call in self.hooks.implementations(hook_name):
            result = call(**kwargs)
            if result is not None:
                return plugin_name, result
        return "-", None

    def _validate_consented(self, consented: Mapping[str, Any] | ConsentedData | None) -> ConsentedData:
        if isinstance(consented, ConsentedData):
            consent = consented
        else:
            try:
                consent = ConsentedData.model_validate(dict(consented or {}))
            except ValidationError as exc:
                raise _invalid(exc, "consented") from None
        if consent.income_band is not None and consent.income_band not in self.settings.income_bands:
            known = ", ".join(sorted(self.settings.income_bands))
            message = f"unknown income band {consent.income_band!r} (known: {known})"
            raise ValidationFailed(
                message,
                details=[
                    {"field": "consented.income_band", "code": "unknown_income_band", "message": message}
                ],
            )
        return consent

    def _identity(self, customer_no: str, customer: PartyRecord | None) -> IdentityFacts:
        if customer is None or customer.customer_no != customer_no:
            customer = self.tenant.module("party").container.service(uow=self.uow).get(customer_no)
        today = self.tenant.business_date()
        birth = customer.birth_date
        age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
        return IdentityFacts(
            customer_no=customer.customer_no,
            as_of=today,
            age_years=age,
            region_code=customer.region_code,
            gender=customer.gender,
        )

    def _profile_row(self, customer_no: str) -> CreditProfileRecord | None:
        # populate_existing: _remember_consented writes with an upsert, past the identity map.
        return self.uow.session.scalars(
            select(CreditProfileRecord)
            .where(CreditProfileRecord.customer_no == customer_no)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def _remember_consented(self, customer_no: str, consent: ConsentedData) -> None:
        """One upsert per assessment instead of a read, then an insert in a savepoint or an update:
        it is on every decision's path, and the database settles a concurrent first assessment of
        the same customer itself. The row (and ``updated_at``) changes only when the data did."""
        run(
            self.uow,
            _upsert_consented(self.uow.session.get_bind().dialect.name),
            {
                "customer_no": customer_no,
                "consented": consent.model_dump(mode="json"),
                "updated_at": self.uow.clock.now(),
            },
        )


@lru_cache(maxsize=4)
def _upsert_consented(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (tenant_id, customer_no) DO UPDATE`` for SQLite or PostgreSQL, built
    once and checked by the kernel's ``tenant_bound``: ``run`` stamps the row with the unit of work's tenant."""
    table = CreditProfileRecord.__table__
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    statement = insert(table).values(
        tenant_id=bindparam("tenant_id", type_=table.c.tenant_id.type),
        customer_no=bindparam("customer_no", type_=table.c.customer_no.type),
        consented=bindparam("consented", type_=table.c.consented.type),
        updated_at=bindparam("updated_at", type_=table.c.updated_at.type),
    )
    excluded = statement.excluded
    # JSON has no equality on PostgreSQL; both sides are serialized the same way, so compare text.
    return tenant_bound(
        statement.on_conflict_do_update(
            index_elements=[table.c.tenant_id, table.c.customer_no],
            set_={"consented": excluded.consented, "updated_at": excluded.updated_at},
            where=cast(table.c.consented, Text) != cast(excluded.consented, Text),
        )
    )


__all__ = [
    "Assessment",
    "ConsentedData",
    "CreditProfile",
    "CreditService",
    "IdentityFacts",
    "InternalHistory",
    "Offer",
    "Pricing",
    "Reason",
    "ScoreResult",
]
