"""Tables of the party module."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class Customer(TenantOwned, Base):
    """A natural person known to one bank. One row per resident ID number per bank."""

    __tablename__ = "party_customers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "customer_no"),
        UniqueConstraint("tenant_id", "id_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_no: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    id_number: Mapped[str] = mapped_column(String(18))
    birth_date: Mapped[date] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(String(8))
    region_code: Mapped[str] = mapped_column(String(6))
    phone_e164: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime]
