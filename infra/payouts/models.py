"""Tables of the payouts module."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class PayoutInstruction(TenantOwned, Base):
    """One transfer out of the bank to a beneficiary's account, by the caller's ``instruction_id``
    (a retry returns the same); ``payout_no`` is its end-to-end id on the rails.

    ``status``: pending (not yet in a file), sent (in batch ``batch_no``), accepted (the bank's
    payment system confirmed it), rejected (refused by the payment system, with ``reason``),
    returned (brought back after acceptance by a pacs.004, with ``reason``)."""

    __tablename__ = "payout_instructions"
    __table_args__ = (UniqueConstraint("tenant_id", "instruction_id"), UniqueConstraint("tenant_id", "payout_no"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instruction_id: Mapped[str] = mapped_column(String(120))
    payout_no: Mapped[str] = mapped_column(String(35))
    source: Mapped[str] = mapped_column(String(40))
    # The ledger account the money is owed from (e.g. a merchant's payout account).
    debit_account: Mapped[str] = mapped_column(String(64))
    creditor_name: Mapped[str] = mapped_column(String(140))
    creditor_account: Mapped[str] = mapped_column(String(34))
    creditor_agent: Mapped[str | None] = mapped_column(String(35))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    remittance_info: Mapped[str] = mapped_column(String(140))
    status: Mapped[str] = mapped_column(String(12), index=True)
    batch_no: Mapped[str | None] = mapped_column(String(35), index=True)
    reason: Mapped[str | None] = mapped_column(String(35))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PayoutBatch(TenantOwned, Base):
    """One pain.001 file: the pending instructions of one currency when it was made, and the file."""

    __tablename__ = "payout_batches"
    __table_args__ = (UniqueConstraint("tenant_id", "batch_no"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    batch_no: Mapped[str] = mapped_column(String(35))
    business_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    count: Mapped[int]
    total_minor: Mapped[int] = mapped_column(BigInteger)
    document: Mapped[str] = mapped_column(Text)
    entry_id: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime]
