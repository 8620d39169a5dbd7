"""Tables of the credit-pay product. Amounts live in the ledger; these rows hold what the ledger
does not: who, which product, which decision, and each purchase's state."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, String, UniqueConstraint
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
    decision_no: Mapped[str] = mapped_column(String(40))
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
