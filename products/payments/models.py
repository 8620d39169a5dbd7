"""Tables of the payments module. Amounts are integer minor units; times are UTC from the clock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class Merchant(TenantOwned, Base):
    __tablename__ = "payments_merchants"
    __table_args__ = (UniqueConstraint("tenant_id", "merchant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(25))
    city: Mapped[str] = mapped_column(String(15))
    mcc: Mapped[str] = mapped_column(String(4))
    settlement_account: Mapped[str] = mapped_column(String(64))
    # Decimal as text ("0.006"): exact on both backends.
    fee_rate: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class Store(TenantOwned, Base):
    __tablename__ = "payments_stores"
    __table_args__ = (UniqueConstraint("tenant_id", "store_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(32))
    merchant_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))


class Terminal(TenantOwned, Base):
    __tablename__ = "payments_terminals"
    __table_args__ = (UniqueConstraint("tenant_id", "terminal_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    terminal_id: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[str] = mapped_column(String(32))
    merchant_id: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(25))


class Operator(TenantOwned, Base):
    """A cashier or supervisor of one merchant. Only a scrypt hash of the PIN is stored."""

    __tablename__ = "payments_operators"
    __table_args__ = (UniqueConstraint("tenant_id", "employee_no"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    employee_no: Mapped[str] = mapped_column(String(32))
    merchant_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    pin_hash: Mapped[str] = mapped_column(String(200))
    failed_attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Shift(TenantOwned, Base):
    __tablename__ = "payments_shifts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "shift_no"),
        # One open shift per operator: open_key is the employee number while open, NULL after.
        UniqueConstraint("tenant_id", "open_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    shift_no: Mapped[str] = mapped_column(String(40))
    employee_no: Mapped[str] = mapped_column(String(32), index=True)
    terminal_id: Mapped[str] = mapped_column(String(32))
    merchant_id: Mapped[str] = mapped_column(String(32))
    open_key: Mapped[str | None] = mapped_column(String(32))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class Payment(TenantOwned, Base):
    __tablename__ = "payments_payments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "payment_no"),
        UniqueConstraint("tenant_id", "request_id"),
        Index("ix_payments_payments_shift", "tenant_id", "shift_no"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    payment_no: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(64))
    tender: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12))
    merchant_id: Mapped[str] = mapped_column(String(32))
    terminal_id: Mapped[str] = mapped_column(String(32))
    shift_no: Mapped[str] = mapped_column(String(40))
    employee_no: Mapped[str] = mapped_column(String(32))
    bill_no: Mapped[str] = mapped_column(String(25))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    payload: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    payer_account: Mapped[str | None] = mapped_column(String(64))
    pay_request_id: Mapped[str | None] = mapped_column(String(64))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class Refund(TenantOwned, Base):
    __tablename__ = "payments_refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "refund_no"),
        UniqueConstraint("tenant_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    refund_no: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(64))
    payment_no: Mapped[str] = mapped_column(String(40), index=True)
    shift_no: Mapped[str] = mapped_column(String(40))
    tender: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    approved_by: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
