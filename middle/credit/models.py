"""Tables of the credit module."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class CreditProfileRecord(TenantOwned, Base):
    """A customer's latest consented data at one bank (what partners or the bank last sent).

    Identity comes from the party registry and history from the products at each assessment, so
    only the consented part is kept here: for limit reviews and the bank's own re-scoring.
    """

    __tablename__ = "credit_profiles"
    __table_args__ = (UniqueConstraint("tenant_id", "customer_no"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_no: Mapped[str] = mapped_column(String(32))
    consented: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
