"""Tables of the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class OutboxEvent(TenantOwned, Base):
    """An event as committed with the change that raised it. Never updated but for delivery state."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_undelivered", "delivered_at", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(120))
    subject: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime]
    # Null until every subscriber has it (or has been given up on).
    delivered_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)


class OutboxDelivery(TenantOwned, Base):
    """One subscriber's receipt of one event, so a retry reaches only those that failed."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "subscriber"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id"), index=True)
    subscriber: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16))  # delivered | failing | dead
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
