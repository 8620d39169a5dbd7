"""Tables of the compute module: one row per run (tenant, job, business date) and one per partition.

Counts of done and failed partitions are never stored on the run row: every partition's
transaction would otherwise update that one row, and parallel workers would queue behind its lock
(the hot-row problem). They are counted from ``compute_partitions`` when asked.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned

# Surrogate keys: BIGINT, except on SQLite where only INTEGER PRIMARY KEY auto-increments.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


class RunState(StrEnum):
    PENDING = "pending"  # created, partitions planned, no runner has started it
    RUNNING = "running"  # a runner holds (or held, if it was killed) the claim
    COMPLETED = "completed"  # every partition done and the after-steps ran: never run again
    FAILED = "failed"  # some partition (or a before/after step) failed; a rerun retries them


class PartitionState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class ComputeJobRun(TenantOwned, Base):
    """One run of one job for one business date of one tenant. Unique: a date runs once."""

    __tablename__ = "compute_job_runs"
    __table_args__ = (UniqueConstraint("tenant_id", "job_name", "business_date"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(String(128))
    business_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    partitions_total: Mapped[int] = mapped_column(Integer)
    # How many times a runner started working on this run (1 for a clean run, more after resumes).
    starts: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str | None] = mapped_column(String(32))
    # Who works on the run now: "host:pid:token", and until when (wall clock, see service.py).
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    # The before-steps (``sceneos_compute_before_job``) committed; not called again on resume.
    before_done_at: Mapped[datetime | None]
    # Sums of the partitions' numeric results, written when the run completes.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # One line: why the run is failed (failing partitions, or a before/after step).
    error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ComputePartition(TenantOwned, Base):
    """One partition of a run. Marked done in the same transaction as its work."""

    __tablename__ = "compute_partitions"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        Index(None, "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("compute_job_runs.id"))
    # Order in which the job listed it; partitions are run in this order.
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Masked, one line (personal data never reaches an operator's screen or a log).
    error: Mapped[str | None] = mapped_column(String(500))
    finished_at: Mapped[datetime | None]
