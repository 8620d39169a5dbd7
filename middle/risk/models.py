"""Tables of the risk module.

* ``risk_decisions``: one row per decision (champion and challenger alike), holding everything a
  replay needs: the request, the facts gathered from outside the flow, each step's result, the
  rules hit, the score and offer, the versions of the rule set and models, and the timings.
* ``risk_rule_sets``: every rule set a decision was taken with, content-addressed by its version
  (a hash of the rules), written once and never changed, so a record names its rules exactly.
* ``risk_velocity_events``: one row per attempt (activation, purchase, payment), indexed per
  customer, device and merchant for the sliding-window counts of the anti-fraud checks.
* ``risk_blacklist_entries``: a tenant's blacklisted ID numbers, phones and devices.
* ``risk_review_cases`` and ``risk_review_actions``: the manual review queue and its audit trail.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, TenantOwned

# Surrogate keys: BIGINT, except on SQLite where only INTEGER PRIMARY KEY auto-increments.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


class Outcome(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"
    REVIEW = "review"


class DecisionRole(StrEnum):
    CHAMPION = "champion"  # applied: its outcome is the answer
    CHALLENGER = "challenger"  # recorded beside the champion's, never applied


class BlacklistKind(StrEnum):
    ID_NUMBER = "id_number"
    PHONE = "phone"
    DEVICE = "device"


class ReviewStatus(StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    DECLINED = "declined"


class RiskDecision(TenantOwned, Base):
    """One decision of one flow. Never updated after it is written (a review is its own row)."""

    __tablename__ = "risk_decisions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "decision_no"),
        # Idempotency: one champion decision per request id and flow (NULL request ids never clash).
        UniqueConstraint("tenant_id", "flow", "role", "request_id"),
        Index("ix_risk_decisions_customer", "tenant_id", "customer_no", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    decision_no: Mapped[str] = mapped_column(String(32))
    flow: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(64))
    # The champion decision a challenger decision shadows.
    champion_decision_no: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(128))
    decision_key: Mapped[str] = mapped_column(String(128))
    customer_no: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    # The offer of an approved (or referred) activation, in minor units and basis points.
    line_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    annual_rate_bps: Mapped[int | None] = mapped_column(Integer)
    fee_rate_bps: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    rule_set_version: Mapped[str] = mapped_column(String(40))
    # {"scorecard": ..., "strategy": ..., "engine": ...}: what else the outcome depended on.
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The request and every fact gathered from outside the flow: what a replay starts from.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Each step in order: name, kind, output (external steps), verdict, reasons, hits, elapsed_us.
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rule_hits: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The facts the rules saw at the end of the flow (typed sections), for reading the record.
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    elapsed_us: Mapped[int] = mapped_column(BigInteger)
    decided_at: Mapped[datetime]


class RiskRuleSet(TenantOwned, Base):
    """The rules of one flow and variant as they were, keyed by their content hash."""

    __tablename__ = "risk_rule_sets"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(40))
    flow: Mapped[str] = mapped_column(String(32))
    variant: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class RiskVelocityEvent(TenantOwned, Base):
    """One attempt, counted by the anti-fraud velocity checks of later attempts of the same kind."""

    __tablename__ = "risk_velocity_events"
    __table_args__ = (
        Index("ix_risk_velocity_events_customer", "tenant_id", "kind", "customer_no", "occurred_at"),
        Index("ix_risk_velocity_events_device", "tenant_id", "kind", "device_id", "occurred_at"),
        Index("ix_risk_velocity_events_merchant", "tenant_id", "kind", "merchant_id", "occurred_at"),
        # The purge job deletes by age alone.
        Index("ix_risk_velocity_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    customer_no: Mapped[str | None] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(128))
    merchant_id: Mapped[str | None] = mapped_column(String(128))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    decision_no: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]


class RiskBlacklistEntry(TenantOwned, Base):
    """A blacklisted identifier of one tenant: an ID number, a phone (E.164) or a device id."""

    __tablename__ = "risk_blacklist_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(200))
    # "config", "plugin:<name>", "operator:<id>": who put it there.
    source: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class RiskReviewCase(TenantOwned, Base):
    """A decision referred to manual review; one case per decision."""

    __tablename__ = "risk_review_cases"
    __table_args__ = (
        UniqueConstraint("tenant_id", "case_no"),
        UniqueConstraint("tenant_id", "decision_no"),
        Index("ix_risk_review_cases_queue", "tenant_id", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    case_no: Mapped[str] = mapped_column(String(32))
    decision_no: Mapped[str] = mapped_column(String(32))
    flow: Mapped[str] = mapped_column(String(32))
    customer_no: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    # The line the flow proposed and the one the operator granted (at most the proposed one).
    proposed_line_minor: Mapped[int | None] = mapped_column(BigInteger)
    granted_line_minor: Mapped[int | None] = mapped_column(BigInteger)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))


class RiskReviewAction(TenantOwned, Base):
    """The audit trail of a review case: who did what, when, and why. Append-only."""

    __tablename__ = "risk_review_actions"
    __table_args__ = (Index("ix_risk_review_actions_case", "case_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("risk_review_cases.id"))
    # Lets a case and its first action be added together and written in one flush.
    case: Mapped[RiskReviewCase] = relationship(lazy="raise")
    action: Mapped[str] = mapped_column(String(16))  # opened, approved, declined, commented
    operator: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
