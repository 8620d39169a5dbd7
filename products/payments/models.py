"""Tables of the payments module. Amounts are integer minor units; times are UTC from the clock."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, Index, String, Text, UniqueConstraint
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
    # Where the daily settlement pays the net (None: the module's settlement_clearing_account).
    payout_account: Mapped[str | None] = mapped_column(String(64))
    # The merchant's system, told of its payments' events; the secret only encrypted (entry's cipher).
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list[str] | None] = mapped_column(JSON)


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
    # How a paid payment was funded: "account" (payer_account) or a funding source's name
    # (core.funding), whose hold is funding_ref; the paying customer; the payment code scanned.
    funding_source: Mapped[str | None] = mapped_column(String(32))
    funding_ref: Mapped[str | None] = mapped_column(String(64))
    customer_no: Mapped[str | None] = mapped_column(String(32))
    code_ref: Mapped[str | None] = mapped_column(String(40))


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


class PaymentCode(TenantOwned, Base):
    """A one-time payment code the bank issued to a customer (customer-presented mode).

    Only a SHA-256 hash of the code is kept (``code_hash``); ``code_ref`` is its public name. The
    issuing request's id makes issuance idempotent: a retry replaces the code (only the newest
    works). ``status``: active, used (``payment_no``), or superseded; expiry is read from
    ``expires_at``.
    """

    __tablename__ = "payments_codes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code_hash"),
        UniqueConstraint("tenant_id", "code_ref"),
        UniqueConstraint("tenant_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    code_ref: Mapped[str] = mapped_column(String(40))
    code_hash: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    customer_no: Mapped[str] = mapped_column(String(32))
    partner_id: Mapped[str | None] = mapped_column(String(64))
    funding_source: Mapped[str] = mapped_column(String(32))
    payer_account: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    payment_no: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Settlement(TenantOwned, Base):
    """A merchant's settlement for one business day, posted once to the ledger (``entry_id``)."""

    __tablename__ = "payments_settlements"
    __table_args__ = (UniqueConstraint("tenant_id", "merchant_id", "business_date"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    business_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    payment_count: Mapped[int]
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    refund_count: Mapped[int]
    refunds_minor: Mapped[int] = mapped_column(BigInteger)
    fees_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    payout_account: Mapped[str] = mapped_column(String(64))
    entry_id: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime]


# --- reconciliation against the acquiring channel's statement file (products/payments/reconciliation.py)


class ReconRun(TenantOwned, Base):
    """One channel statement file received for a business date, and its reconciliation.

    The same file (SHA-256 of its bytes) for the same day is the same run; a corrected file is a new
    run. ``status``: received (lines stored, not yet matched) or reconciled. Counts per exception
    kind are in ``summary``.
    """

    __tablename__ = "payments_recon_runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "run_no"),
        UniqueConstraint("tenant_id", "business_date", "file_digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_no: Mapped[str] = mapped_column(String(40))
    business_date: Mapped[date] = mapped_column(Date)
    file_digest: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(200))
    file_format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12))
    line_count: Mapped[int]
    received_by: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    reconciled_at: Mapped[datetime | None]
    our_count: Mapped[int | None]
    matched_count: Mapped[int | None]
    exception_count: Mapped[int | None]
    summary: Mapped[dict[str, int] | None] = mapped_column(JSON)
    # When the job payments.recon_purge deleted the run's lines (recon_line_retention_days).
    lines_purged_at: Mapped[datetime | None]


class ReconLine(TenantOwned, Base):
    """One record of a channel statement file, as parsed (amounts in minor units, status normalized)."""

    __tablename__ = "payments_recon_lines"
    __table_args__ = (Index("ix_payments_recon_lines_ref", "run_id", "payment_ref"),)

    # Lines are only ever read by run (the primary key leads with run_id): a tenant_id index would
    # only slow the bulk insert of a million lines.
    tenant_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    line_no: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    channel_ref: Mapped[str] = mapped_column(String(64))
    payment_ref: Mapped[str | None] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))
    booked_at: Mapped[datetime | None]
    # A second line naming a payment already named by an earlier line of the file.
    duplicate: Mapped[bool]


class ReconException(TenantOwned, Base):
    """A difference between our payments and the channel's file, open until resolved once."""

    __tablename__ = "payments_recon_exceptions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "exception_no"),
        Index("ix_payments_recon_exceptions_run", "run_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    exception_no: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(24))
    # The payment the difference is about; for a refund, the refunded payment (and ``refund_no``).
    payment_no: Mapped[str | None] = mapped_column(String(40))
    refund_no: Mapped[str | None] = mapped_column(String(40))
    line_no: Mapped[int | None]
    channel_ref: Mapped[str | None] = mapped_column(String(64))
    our_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    our_currency: Mapped[str | None] = mapped_column(String(3))
    our_status: Mapped[str | None] = mapped_column(String(12))
    channel_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    channel_currency: Mapped[str | None] = mapped_column(String(3))
    channel_status: Mapped[str | None] = mapped_column(String(12))
    # What the channel settled less what we booked (succeeded amounts), in the one currency; NULL
    # when the currencies differ (nothing can be written off).
    difference_minor: Mapped[int | None] = mapped_column(BigInteger)
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    resolution_note: Mapped[str | None] = mapped_column(String(500))
    ledger_entry_id: Mapped[str | None] = mapped_column(String(120))
    fixed_by_run_no: Mapped[str | None] = mapped_column(String(40))


class ReconAudit(TenantOwned, Base):
    """Who did what to a reconciliation run or exception, and when (the clock's time). Append-only."""

    __tablename__ = "payments_recon_audit"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(index=True)
    exception_no: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    ledger_entry_id: Mapped[str | None] = mapped_column(String(120))
    at: Mapped[datetime]
