"""Settings of the credit-pay product, under ``[tenants.<id>.modules.credit_pay]``.

A bank defines one or more credit products (e.g. one per partner for white-labelled "joint"
products) under ``products.<code>``. Money is in minor units of the product's currency; rates are
basis points. Every installment plan is priced against the product's annualized-rate ceiling when
the configuration is loaded (by the IRR method, on a reference principal), and every trial
calculation is checked again for its actual amount: no plan above the ceiling is ever offered.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from datetime import date
from decimal import ROUND_CEILING, Decimal
from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.money import validate_currency
from core.settings import ModuleSettings, StrictModel
from infra.payouts import BankAccount
from products.credit_pay.calc import Method, schedule

# The principal on which plans are priced when the configuration is checked: 10,000.00 CNY.
REFERENCE_PRINCIPAL_MINOR = 1_000_000
CODE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# The callers' ids (purchases, plans, merchants...): 1 to 64 of A-Z a-z 0-9 _ . : -, alphanumeric first.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class InstallmentPlan(StrictModel):
    """One plan offered: ``terms`` monthly installments by ``method`` at ``period_rate_bps`` a month
    (interest on the balance for annuity and equal principal; a fee on the original principal for
    flat fee)."""

    terms: Literal[3, 6, 12, 24]
    method: Method
    period_rate_bps: Decimal = Field(ge=0, le=1_000, decimal_places=2)

    @property
    def period_rate(self) -> Decimal:
        return self.period_rate_bps / 10_000


class MerchantSubsidisedPlan(InstallmentPlan):
    """An interest-free plan for purchases at ``merchants`` (a merchant's campaign, "12 terms
    interest-free"): the customer repays the principal only; the merchant pays, once, when the
    purchase is converted, the charges ``method`` at ``period_rate_bps`` would have put on the
    customer, deducted from what the bank owes it. Offered from ``valid_from`` to ``valid_until``
    (business dates, both included; either may be left open)."""

    merchants: list[str] = Field(min_length=1)
    valid_from: date | None = None
    valid_until: date | None = None

    @field_validator("merchants")
    @classmethod
    def _merchants(cls, value: list[str]) -> list[str]:
        for merchant in value:
            if not re.match(ID_PATTERN, merchant):
                raise ValueError(f"merchant id {merchant!r} is not a valid id (A-Z a-z 0-9 _ . : -, max 64)")
        if len(set(value)) != len(value):
            raise ValueError("a merchant is named twice")
        return value

    @model_validator(mode="after")
    def _window(self) -> MerchantSubsidisedPlan:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self

    def offered(self, merchant_id: str, on: date) -> bool:
        return (
            merchant_id in self.merchants
            and (self.valid_from is None or self.valid_from <= on)
            and (self.valid_until is None or on <= self.valid_until)
        )

    def overlaps(self, other: MerchantSubsidisedPlan) -> bool:
        """Whether both would answer the same merchant's conversion on some day."""
        if (self.terms, self.method) != (other.terms, other.method) or not set(self.merchants) & set(
            other.merchants
        ):
            return False
        starts_before_other_ends = (
            self.valid_from is None or other.valid_until is None or self.valid_from <= other.valid_until
        )
        ends_after_other_starts = (
            self.valid_until is None or other.valid_from is None or other.valid_from <= self.valid_until
        )
        return starts_before_other_ends and ends_after_other_starts


class CreditProduct(StrictModel):
    """One credit product of the bank."""

    name: str = Field(min_length=1, max_length=64, description="the product's own name")
    # Partner id -> the name that partner shows its users (white label).
    display_names: dict[str, str] = Field(default_factory=dict)
    currency: str = "CNY"
    billing_day: int = Field(default=5, ge=1, le=28)
    due_day: int = Field(default=25, ge=1, le=28)
    grace_days: int = Field(default=3, ge=0, le=30)
    installment_plans: list[InstallmentPlan] = Field(default_factory=list)
    # Merchants' interest-free campaigns on purchases (see MerchantSubsidisedPlan): a conversion of
    # a purchase at such a merchant, with the plan's terms and method, takes it over a plan above.
    merchant_subsidised_plans: list[MerchantSubsidisedPlan] = Field(default_factory=list)
    max_purchase_minor: int = Field(default=5_000_000, gt=0)
    max_daily_minor: int = Field(default=10_000_000, gt=0)
    annual_rate_ceiling_bps: int = Field(default=2400, ge=0, le=3600)
    # How long an authorization holds the line before it expires uncaptured.
    authorization_hold_minutes: int = Field(default=7 * 24 * 60, ge=1, le=30 * 24 * 60)
    # Installment plans (products/credit_pay/installments.py): the smallest amount converted, and
    # what an early payoff charges besides the remaining principal: "charges_waived" (nothing),
    # "next_period_charge" (the next unbilled installment's interest or fee), "all_charges"
    # (every remaining interest or fee), plus early_payoff_fee_bps of the remaining principal.
    min_conversion_minor: int = Field(default=10_000, gt=0)
    early_payoff: Literal["charges_waived", "next_period_charge", "all_charges"] = "charges_waived"
    early_payoff_fee_bps: Decimal = Field(default=Decimal(0), ge=0, le=1_000, decimal_places=2)
    # Line review (products/credit_pay/lines.py): days between scheduled reviews of an account's
    # line (0: no scheduled review), and whether a review may lower a line (never below usage).
    line_review_interval_days: int = Field(default=180, ge=0, le=3660)
    line_review_may_lower: bool = True

    # --- account lifecycle: billing, interest, repayment, overdue (products/credit_pay/end_of_day.py)
    # Minimum payment on a statement: minimum_payment_bps of the statement's principal part (rounded
    # up to the minor unit), plus every installment, interest, penalty and fee billed and any amount
    # past due; at least minimum_payment_floor_minor, never more than the new balance.
    minimum_payment_bps: int = Field(default=1_000, ge=0, le=10_000)
    minimum_payment_floor_minor: int = Field(default=10_000, ge=0)
    # Interest-free period: a statement balance paid in full by its due date (plus grace days)
    # bears no interest; when false, revolving interest accrues on every day's principal.
    interest_free_period: bool = True
    # Revolving rate, a year (None: the account's own price from the credit decision); penalty rate
    # on the amount past due, a year; both in bps, never above annual_rate_ceiling_bps.
    revolving_annual_rate_bps: int | None = Field(default=None, ge=0, le=3600)
    penalty_annual_rate_bps: int = Field(default=0, ge=0, le=3600)
    # Days in the year of the daily rate (annual rate / day count).
    interest_day_count: Literal[360, 365] = 365
    # Interest on interest: interest billed on a statement and still unpaid bears revolving interest
    # from the day after the statement date (monthly compounding, as card issuers in China do);
    # interest accrued since the last statement does not. The ceiling then applies to the
    # compounded rate, (1 + rate / 12) ** 12 - 1.
    compound_interest: bool = False
    # Charged once per statement whose minimum is not paid by the due date plus grace days.
    late_fee_minor: int = Field(default=0, ge=0)
    # First day past due of buckets M1, M2, ...: a day count below the first is M0; the last bucket
    # is open-ended (with seven boundaries, "M7+").
    overdue_bucket_days: list[int] = Field(default_factory=lambda: [1, 31, 61, 91, 121, 151, 181])
    # Days past due at which the account is charged off (written off); 0: never.
    charge_off_days_past_due: int = Field(default=180, ge=0, le=3660)
    # Order in which a repayment settles what is owed (a bank's plugin may replace it per account).
    repayment_allocation: list[Literal["penalty", "fee", "interest", "principal"]] = Field(
        default_factory=lambda: ["penalty", "fee", "interest", "principal"]
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return validate_currency(value)

    def bucket_of(self, days_past_due: int) -> str:
        """The overdue bucket of a day count: "M0" .. "M<n>", the last one "M<n>+"."""
        # The boundaries are strictly increasing (validated): the bucket is how many are <= the count.
        index = bisect_right(self.overdue_bucket_days, days_past_due)
        if index == 0:
            return "M0"
        return f"M{index}+" if index == len(self.overdue_bucket_days) else f"M{index}"

    def revolving_rate_bps(self, account_rate_bps: int) -> int:
        return account_rate_bps if self.revolving_annual_rate_bps is None else self.revolving_annual_rate_bps

    def effective_rate_bps(self, annual_rate_bps: int) -> int:
        """What a year of ``annual_rate_bps`` costs: the rate itself, or compounded monthly with
        ``compound_interest`` (rounded up to a whole bp, so a ceiling is never passed by rounding)."""
        if not self.compound_interest:
            return annual_rate_bps
        yearly = (1 + Decimal(annual_rate_bps) / 120_000) ** 12 - 1
        return int((yearly * 10_000).to_integral_value(rounding=ROUND_CEILING))

    @model_validator(mode="after")
    def _rules(self) -> CreditProduct:
        if self.max_purchase_minor > self.max_daily_minor:
            raise ValueError("max_purchase_minor must not exceed max_daily_minor")
        if self.due_day == self.billing_day:
            raise ValueError("due_day must differ from billing_day")
        for key in ("revolving_annual_rate_bps", "penalty_annual_rate_bps"):
            rate = getattr(self, key)
            if rate is not None and rate > self.annual_rate_ceiling_bps:
                raise ValueError(
                    f"{key} ({rate} bps) exceeds annual_rate_ceiling_bps ({self.annual_rate_ceiling_bps} bps)"
                )
        if self.revolving_annual_rate_bps is not None:
            compounded = self.effective_rate_bps(self.revolving_annual_rate_bps)
            if compounded > self.annual_rate_ceiling_bps:
                raise ValueError(
                    f"revolving_annual_rate_bps ({self.revolving_annual_rate_bps} bps) compounded monthly "
                    f"(compound_interest) is {compounded} bps a year, above annual_rate_ceiling_bps "
                    f"({self.annual_rate_ceiling_bps} bps)"
                )
        days = self.overdue_bucket_days
        if not days or days[0] < 1 or any(b <= a for a, b in pairwise(days)):
            raise ValueError(
                "overdue_bucket_days must be strictly increasing day counts starting at 1 or more"
            )
        if sorted(self.repayment_allocation) != ["fee", "interest", "penalty", "principal"]:
            raise ValueError("repayment_allocation must name penalty, fee, interest and principal once each")
        seen = set()
        for plan in self.installment_plans:
            key = (plan.terms, plan.method)
            if key in seen:
                raise ValueError(f"installment plan {plan.terms} x {plan.method} is defined twice")
            seen.add(key)
            priced = schedule(plan.method, REFERENCE_PRINCIPAL_MINOR, plan.terms, plan.period_rate)
            if priced.annualized_rate_bps > self.annual_rate_ceiling_bps:
                raise ValueError(
                    f"installment plan {plan.terms} x {plan.method} at {plan.period_rate_bps} bps a month has an "
                    f"annualized rate of {priced.annualized_rate_bps} bps (IRR), above the ceiling of "
                    f"{self.annual_rate_ceiling_bps} bps"
                )
        subsidised = self.merchant_subsidised_plans
        for index, plan in enumerate(subsidised):
            for other in subsidised[index + 1 :]:
                if plan.overlaps(other):
                    raise ValueError(
                        f"merchant_subsidised_plans: two {plan.terms} x {plan.method} plans overlap for merchant "
                        f"{sorted(set(plan.merchants) & set(other.merchants))[0]!r} (their valid dates meet)"
                    )
        return self

    def display_name(self, partner_id: str | None) -> str:
        return self.display_names.get(partner_id or "", self.name)

    def plan(self, terms: int, method: str) -> InstallmentPlan | None:
        for plan in self.installment_plans:
            if plan.terms == terms and plan.method == method:
                return plan
        return None

    def subsidised_plan(self, merchant_id: str, terms: int, method: str, on: date) -> MerchantSubsidisedPlan | None:
        """The merchant's interest-free plan for ``terms`` x ``method`` on business date ``on``."""
        for plan in self.merchant_subsidised_plans:
            if plan.terms == terms and plan.method == method and plan.offered(merchant_id, on):
                return plan
        return None


def default_products() -> dict[str, CreditProduct]:
    return {
        "standard": CreditProduct(
            name="Credit Pay",
            installment_plans=[
                InstallmentPlan(terms=3, method=Method.FLAT_FEE, period_rate_bps=Decimal(60)),
                InstallmentPlan(terms=6, method=Method.FLAT_FEE, period_rate_bps=Decimal(60)),
                InstallmentPlan(terms=6, method=Method.ANNUITY, period_rate_bps=Decimal(100)),
                InstallmentPlan(terms=12, method=Method.EQUAL_PRINCIPAL, period_rate_bps=Decimal(100)),
                InstallmentPlan(terms=24, method=Method.ANNUITY, period_rate_bps=Decimal(100)),
            ],
        )
    }


class CreditPaySettings(ModuleSettings):
    products: dict[str, CreditProduct] = Field(default_factory=default_products, min_length=1)
    # Where the money partners remit for the repayments they collected arrives (remittance.py): a
    # bank asset, one per currency (``<remittance_account>:<currency>``).
    remittance_account: str = Field(default="credit_pay:remittances_received", min_length=1, max_length=100)
    # Where each merchant's settlements are paid outside the bank, by merchant id: with the payouts
    # module on, every settlement posted is also instructed as a payout (settlement.py).
    merchant_bank_accounts: dict[str, BankAccount] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _codes(self) -> CreditPaySettings:
        for code in self.products:
            if not re.match(CODE_PATTERN, code):
                raise ValueError(f"product code {code!r} must be lower-case letters, digits and _ (max 32)")
        for merchant_id in self.merchant_bank_accounts:
            if not re.match(ID_PATTERN, merchant_id):
                raise ValueError(f"merchant_bank_accounts: {merchant_id!r} is not a merchant id")
        return self

    def product(self, code: str) -> CreditProduct | None:
        return self.products.get(code)
