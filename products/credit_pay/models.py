"""Tables of the credit-pay product. Amounts live in the ledger; these rows hold what the ledger
does not: who, which product, which decision, and each purchase's state."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class CreditPayApplication(TenantOwned, Base):
    """One activation request and its decision; the caller's ``request_id`` makes it idempotent."""

    __tablename__ = "credit_pay_applications"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    customer_no: Mapped[str] = mapped_column(String(32), index=True)
    product_code: Mapped[str] = mapped_column(String(32))
    partner_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    # Indexed: a decided review case finds the application waiting on it (reviews.py).
    decision_no: Mapped[str] = mapped_column(String(40), index=True)
    account_no: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class CreditPayAccount(TenantOwned, Base):
    """A customer's credit account for one product: its line and price. One per customer and product."""

    __tablename__ = "credit_pay_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_no"),
        UniqueConstraint("tenant_id", "customer_no", "product_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_no: Mapped[str] = mapped_column(String(40))
    customer_no: Mapped[str] = mapped_column(String(32), index=True)
    product_code: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    line_minor: Mapped[int] = mapped_column(BigInteger)
    annual_rate_bps: Mapped[int] = mapped_column(BigInteger)
    fee_rate_bps: Mapped[int] = mapped_column(BigInteger)
    decision_no: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class CreditPayPurchase(TenantOwned, Base):
    """A purchase on credit, from authorization (a ledger hold on the line) to capture or cancel."""

    __tablename__ = "credit_pay_purchases"
    __table_args__ = (UniqueConstraint("tenant_id", "purchase_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    purchase_id: Mapped[str] = mapped_column(String(64))
    account_no: Mapped[str] = mapped_column(String(40), index=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    partner_id: Mapped[str | None] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # authorized, captured, cancelled, declined (an "authorized" hold past expires_at is expired).
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    decision_no: Mapped[str | None] = mapped_column(String(40))
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    business_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]


class CreditPayRefund(TenantOwned, Base):
    """A full or partial refund of a captured purchase; the caller's ``refund_id`` makes it idempotent."""

    __tablename__ = "credit_pay_refunds"
    __table_args__ = (UniqueConstraint("tenant_id", "refund_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    refund_id: Mapped[str] = mapped_column(String(64))
    purchase_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


CREDIT_PAY_TABLES = (
    CreditPayApplication.__table__,
    CreditPayAccount.__table__,
    CreditPayPurchase.__table__,
    CreditPayRefund.__table__,
)


# --- installment plans and line adjustments (products/credit_pay/installments.py, lines.py) -------


class CreditPayInstallmentPlan(TenantOwned, Base):
    """A purchase or part of a statement balance converted into installments. The caller's
    ``plan_id`` makes the conversion idempotent; ``plan_no`` is the bank's number for the plan."""

    __tablename__ = "credit_pay_installment_plans"
    __table_args__ = (UniqueConstraint("tenant_id", "plan_id"), UniqueConstraint("tenant_id", "plan_no"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_no: Mapped[str] = mapped_column(String(40))
    account_no: Mapped[str] = mapped_column(String(40), index=True)
    # "purchase" (one captured purchase) or "balance" (part of the revolving / statement balance).
    source: Mapped[str] = mapped_column(String(16))
    purchase_id: Mapped[str | None] = mapped_column(String(64), index=True)
    statement_ref: Mapped[str | None] = mapped_column(String(64))
    partner_id: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(16))
    terms: Mapped[int]
    period_rate_bps: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    principal_minor: Mapped[int] = mapped_column(BigInteger)
    total_charge_minor: Mapped[int] = mapped_column(BigInteger)
    annualized_rate_bps: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    # A merchant's interest-free plan: the merchant that paid the charges (once, at conversion) and
    # how much; the customer's installments then carry none.
    subsidised_by: Mapped[str | None] = mapped_column(String(64))
    merchant_subsidy_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Principal taken out of the plan by refunds of its purchase: a partial refund reduces the plan
    # (its unbilled installments scheduled again for the rest), one that leaves nothing closes it.
    refunded_principal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # active, completed (every installment billed on schedule), paid_off (early), cancelled,
    # refunded (its purchase refunded in full, or by at least its unbilled principal), charged_off
    # (its account was: the unbilled principal written off with the rest).
    status: Mapped[str] = mapped_column(String(16))
    business_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class CreditPayInstallment(TenantOwned, Base):
    """One scheduled installment of a plan, due on the statement of ``due_on``; what was actually
    billed (on schedule, or early by a payoff) is in the ``billed_*`` columns."""

    __tablename__ = "credit_pay_installments"
    __table_args__ = (UniqueConstraint("tenant_id", "plan_no", "term_no"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    plan_no: Mapped[str] = mapped_column(String(40))
    account_no: Mapped[str] = mapped_column(String(40), index=True)
    term_no: Mapped[int]
    due_on: Mapped[date] = mapped_column(Date, index=True)
    principal_minor: Mapped[int] = mapped_column(BigInteger)
    interest_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    # A merchant-subsidised plan: the merchant's charge for this term, earned when it is billed
    # (or when the plan closes early); 0 otherwise, and for plans converted before it was kept.
    subsidy_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # scheduled, billed, paid_off (billed early by a payoff), cancelled, refunded (never billed: its
    # purchase was refunded), charged_off (never billed: the account was charged off).
    status: Mapped[str] = mapped_column(String(16))
    billed_principal_minor: Mapped[int | None] = mapped_column(BigInteger)
    billed_interest_minor: Mapped[int | None] = mapped_column(BigInteger)
    billed_fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    billed_on: Mapped[date | None] = mapped_column(Date)
    # The statement date that billed it (bill_installments_due); None if billed by a payoff.
    reported_on: Mapped[date | None] = mapped_column(Date)


class CreditPayLineAdjustment(TenantOwned, Base):
    """One change (or scheduled review) of an account's line; the history is never updated."""

    __tablename__ = "credit_pay_line_adjustments"
    __table_args__ = (UniqueConstraint("tenant_id", "adjustment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    adjustment_id: Mapped[str] = mapped_column(String(64))
    account_no: Mapped[str] = mapped_column(String(40), index=True)
    # bank (staff, admin route or CLI), review (the scheduled review), shortfall (a forced
    # lowering's remainder taken from the ledger line once repayments made room for it).
    source: Mapped[str] = mapped_column(String(16))
    # raise, lower, unchanged (a review that kept the line), shortfall.
    kind: Mapped[str] = mapped_column(String(16))
    previous_line_minor: Mapped[int] = mapped_column(BigInteger)
    new_line_minor: Mapped[int] = mapped_column(BigInteger)
    used_minor: Mapped[int] = mapped_column(BigInteger)
    # What moved on the ledger line now (signed); a forced lowering below usage moves less.
    ledger_delta_minor: Mapped[int] = mapped_column(BigInteger)
    forced: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(200))
    business_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]


# --- account lifecycle: billing, interest, repayment, overdue (products/credit_pay/end_of_day.py) ---


class CreditPayCycle(TenantOwned, Base):
    """Where an account stands in its lifecycle: the last business date whose end of day ran for
    it, whether it revolves (bears interest), what is past due and since when, its bucket."""

    __tablename__ = "credit_pay_cycles"
    __table_args__ = (UniqueConstraint("tenant_id", "account_no"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_no: Mapped[str] = mapped_column(String(40))
    # The partner the account was opened through (events about it go to that partner).
    partner_id: Mapped[str | None] = mapped_column(String(64))
    processed_through: Mapped[date] = mapped_column(Date, index=True)
    revolving: Mapped[bool] = mapped_column(Boolean)
    # Interest accrued but not yet a whole minor unit, in millionths of a minor unit.
    interest_carry_micros: Mapped[int] = mapped_column(BigInteger)
    penalty_carry_micros: Mapped[int] = mapped_column(BigInteger)
    past_due_minor: Mapped[int] = mapped_column(BigInteger)
    overdue_since: Mapped[date | None] = mapped_column(Date)
    days_past_due: Mapped[int]
    bucket: Mapped[str] = mapped_column(String(8))
    last_statement_date: Mapped[date | None] = mapped_column(Date)
    charged_off_on: Mapped[date | None] = mapped_column(Date)
    # Interest accrued since the last statement: of the interest owed, what is not yet billed (the
    # rest bears interest itself under the product's compound_interest).
    interest_since_statement_minor: Mapped[int] = mapped_column(BigInteger)


class CreditPayStatement(TenantOwned, Base):
    """One billing-day statement of an account; its lines are the transactions it billed."""

    __tablename__ = "credit_pay_statements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "statement_no"),
        UniqueConstraint("tenant_id", "account_no", "statement_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    statement_no: Mapped[str] = mapped_column(String(48))
    account_no: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[date] = mapped_column(Date)
    statement_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    # The last day a payment counts as on time (due date plus grace days).
    grace_until: Mapped[date] = mapped_column(Date)
    previous_balance_minor: Mapped[int] = mapped_column(BigInteger)
    purchases_minor: Mapped[int] = mapped_column(BigInteger)
    installments_minor: Mapped[int] = mapped_column(BigInteger)
    # Balance moved into (negative) or back from installment plans in the period.
    converted_minor: Mapped[int] = mapped_column(BigInteger)
    interest_minor: Mapped[int] = mapped_column(BigInteger)
    penalty_minor: Mapped[int] = mapped_column(BigInteger)
    fees_minor: Mapped[int] = mapped_column(BigInteger)
    payments_minor: Mapped[int] = mapped_column(BigInteger)
    new_balance_minor: Mapped[int] = mapped_column(BigInteger)
    minimum_payment_minor: Mapped[int] = mapped_column(BigInteger)
    # Payments received after the statement date (toward this statement).
    paid_minor: Mapped[int] = mapped_column(BigInteger)
    # open, paid (in full by the due date), minimum_paid, past_due.
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class CreditPayTransaction(TenantOwned, Base):
    """Every movement of an account's balance, signed as it changes what the customer owes:
    purchase, refund, installment, interest, penalty, late_fee, payment, write_off. A statement
    bills the account's unbilled transactions (``statement_no``)."""

    __tablename__ = "credit_pay_transactions"
    __table_args__ = (UniqueConstraint("tenant_id", "entry_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_no: Mapped[str] = mapped_column(String(40), index=True)
    business_date: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(64))
    # The ledger entry that moved it (unique: a transaction is recorded once).
    entry_id: Mapped[str] = mapped_column(String(128))
    statement_no: Mapped[str | None] = mapped_column(String(48), index=True)
    created_at: Mapped[datetime]


class CreditPayRepayment(TenantOwned, Base):
    """One repayment, by the caller's ``repayment_id``, and how it was allocated."""

    __tablename__ = "credit_pay_repayments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "repayment_id"),
        # A partner's collections of a day (remittance.py): without it, recording one remittance
        # read every repayment the bank ever took.
        Index("ix_credit_pay_repayments_partner_day", "tenant_id", "partner_id", "currency", "business_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    repayment_id: Mapped[str] = mapped_column(String(64))
    account_no: Mapped[str] = mapped_column(String(40), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # The partner it came through; None: the bank's own channel.
    partner_id: Mapped[str | None] = mapped_column(String(64))
    # {"penalty": .., "fee": .., "interest": .., "principal": .., "credit": ..} in minor units; a
    # recovery after charge-off: {"recovery": .., "credit": ..} (the others 0).
    allocation: Mapped[dict[str, Any]] = mapped_column(JSON)
    business_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]


class CreditPayMerchantSettlement(TenantOwned, Base):
    """One merchant's settlement of one business day (settlement.py): what moved from its payable to
    the payouts, and the figures it was computed from. Never updated."""

    __tablename__ = "credit_pay_merchant_settlements"
    # Named by hand: the conventional name is longer than PostgreSQL's 63 characters.
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "merchant_id", "currency", "business_date", name="uq_credit_pay_merchant_settlements_day"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    business_date: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    owed_through_day_minor: Mapped[int] = mapped_column(BigInteger)
    settled_before_minor: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[str] = mapped_column(String(128))
    # The ledger entry's time: the payable's balance as of an instant counts it from then.
    posted_at: Mapped[datetime]
    created_at: Mapped[datetime]


class CreditPayRemittance(TenantOwned, Base):
    """Money a partner (or the bank's own channel) remitted for the repayments it collected
    (remittance.py), by the bank's ``remittance_id``; ``collected_minor`` is what it had collected
    on ``business_date`` when the remittance was recorded (a remittance for today sees today's
    collections so far). Never updated."""

    __tablename__ = "credit_pay_remittances"
    __table_args__ = (UniqueConstraint("tenant_id", "remittance_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    remittance_id: Mapped[str] = mapped_column(String(64))
    # None: the bank's own channel (core banking's transfer of what the bank's app collected).
    partner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    business_date: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    collected_minor: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
