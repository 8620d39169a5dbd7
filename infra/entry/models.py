"""Tables of the super entry. Every row belongs to one tenant (bank)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned


class EntryPartner(TenantOwned, Base):
    """A partner created through the admin API/CLI (configured partners live in configuration)."""

    __tablename__ = "entry_partners"
    __table_args__ = (UniqueConstraint("tenant_id", "partner_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    rate_limit: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_events: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EntryCredential(TenantOwned, Base):
    """A signing key of a database partner. The secret is encrypted with the master key."""

    __tablename__ = "entry_credentials"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    partner_id: Mapped[str] = mapped_column(String(64), index=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class EntryWebhookSecret(TenantOwned, Base):
    """A webhook signing secret of a database partner; during a rotation several are active."""

    __tablename__ = "entry_webhook_secrets"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(64), index=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class EntryNonce(TenantOwned, Base):
    """A nonce seen with a valid signature, kept until its timestamp leaves the skew window."""

    __tablename__ = "entry_nonces"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class EntryIdempotencyKey(TenantOwned, Base):
    """One partner's idempotency key: the request's fingerprint and, once done, its response."""

    __tablename__ = "entry_idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "partner_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # in_progress | done
    response_status: Mapped[int | None]
    response_headers: Mapped[list[Any] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The route template that answered, so a replay is counted and logged under it.
    route: Mapped[str | None] = mapped_column(String(255))
    # The body is encrypted when the route said ``Cache-Control: no-store`` (it carries a secret).
    response_sealed: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime]
    locked_until: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class EntryEndUser(TenantOwned, Base):
    """A partner's user (its own id) mapped to the bank's customer."""

    __tablename__ = "entry_end_users"
    __table_args__ = (UniqueConstraint("tenant_id", "partner_id", "user_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    user_ref: Mapped[str] = mapped_column(String(128))
    customer_no: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EntryConsent(TenantOwned, Base):
    """A user's consent, given through a partner, for some purposes (scopes), until revoked or expired."""

    __tablename__ = "entry_consents"
    __table_args__ = (Index("ix_entry_consents_user", "tenant_id", "partner_id", "user_ref"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    user_ref: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    evidence: Mapped[str | None] = mapped_column(String(500))
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class EntryWebhookDelivery(TenantOwned, Base):
    """One event for one partner: its state, retries and the exact body sent every time."""

    __tablename__ = "entry_webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "partner_id"),
        Index("ix_entry_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(120))
    partner_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class EntryWebhookAttempt(TenantOwned, Base):
    """The delivery log: one row per POST tried."""

    __tablename__ = "entry_webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("entry_webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int]
