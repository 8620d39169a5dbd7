"""One partition's work, wherever it runs (this process or a Dask worker).

:func:`execute_partition` opens the tenant's unit of work, locks the partition row, runs the job's
``run_partition`` and marks the partition done *in that same transaction*. So the work and its
done-marker commit together or not at all: a process killed in the middle leaves the partition
pending with nothing of its work written, and a partition already done is never run again.

Two runners of the same run cannot run one partition twice: on PostgreSQL the row is read with
``SELECT ... FOR UPDATE SKIP LOCKED`` (a partition another runner is working on is skipped, one
it has finished is seen as done); on SQLite every unit of work begins with ``BEGIN IMMEDIATE``,
so the second runner waits for the first one's commit and then sees the partition done.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import Clock
from core.heap import frozen_heap
from core.logging import get_logger, mask_text
from core.tenancy import ModuleRuntime, Tenant, UnitOfWork
from infra.compute.errors import InvalidJob
from infra.compute.models import ComputePartition, PartitionState
from infra.compute.registry import find_job

if TYPE_CHECKING:
    from core.app import SceneOS

log = get_logger("sceneos.compute")

MAX_ERROR_CHARS = 500


# --- what a job's functions receive --------------------------------------------------------------


@dataclass(frozen=True)
class PlanContext:
    """Given to ``JobSpec.partitions`` once, when a run is created, to list its partition keys.

    ``uow`` is the transaction that stores the run and its keys: read what decides the split
    (e.g. the range of account ids) here, do not write.
    """

    tenant: Tenant
    uow: UnitOfWork
    job_name: str
    business_date: date

    @property
    def session(self) -> Session:
        return self.uow.session

    @property
    def clock(self) -> Clock:
        return self.uow.clock

    def module(self, name: str) -> ModuleRuntime:
        return self.tenant.module(name)


@dataclass(frozen=True)
class PartitionContext:
    """Given to ``JobSpec.run_partition``: one partition, inside the unit of work that marks it done.

    Write through ``uow`` (``uow.session``) only and never commit: the compute layer commits the
    work together with the partition's done-marker. Return a small JSON object (counts, amounts),
    or None; numeric values are summed into the run's summary.
    """

    tenant: Tenant
    uow: UnitOfWork
    job_name: str
    business_date: date
    key: str
    attempt: int
    run_id: int

    @property
    def session(self) -> Session:
        return self.uow.session

    @property
    def clock(self) -> Clock:
        return self.uow.clock

    def module(self, name: str) -> ModuleRuntime:
        return self.tenant.module(name)

    def idempotency_key(self, *parts: object) -> str:
        """A deterministic id for something this partition writes, e.g. a ledger ``entry_id``.

        ``"<job>:<date>:<partition>:<parts...>"``: the same on every attempt, so an idempotent
        service (the ledger) answers a replay instead of moving money twice, a second line of
        defence behind the done-marker.
        """
        return ":".join([self.job_name, self.business_date.isoformat(), self.key, *(str(p) for p in parts)])


# --- what travels between the runner and wherever partitions run ---------------------------------


@dataclass(frozen=True)
class PartitionTask:
    """One partition to run: plain values only, so it pickles to a Dask worker."""

    tenant_id: str
    run_id: int
    partition_id: int
    job_name: str
    business_date: date
    key: str


OutcomeStatus = Literal["done", "failed", "skipped"]


@dataclass(frozen=True)
class PartitionOutcome:
    """What became of one partition. ``skipped``: already done, or being run by another runner."""

    partition_id: int
    key: str
    status: OutcomeStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    elapsed_seconds: float = 0.0
    # "host:pid" of the process that ran it (the runner's own, or a Dask worker's).
    worker: str = ""


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def error_line(exc: BaseException) -> str:
    """An exception as one masked line of at most :data:`MAX_ERROR_CHARS` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    text = mask_text(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def checked_result(result: Mapping[str, Any] | None, *, job_name: str, max_chars: int) -> dict[str, Any] | None:
    """The partition's result as stored: a JSON object of at most ``max_chars`` characters."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise InvalidJob(f"job {job_name!r}: run_partition returned {type(result).__name__}; return a dict or None")
    try:
        text = json.dumps(dict(result), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"job {job_name!r}: the partition result is not JSON: {exc}") from None
    if len(text) > max_chars:
        raise InvalidJob(f"job {job_name!r}: the partition result has {len(text)} characters (at most {max_chars}); "
                         "return a summary, not data")
    return json.loads(text)  # type: ignore[no-any-return]


def _lock_partition(session: Session, partition_id: int, *, skip_locked: bool) -> ComputePartition | None:
    # SQLAlchemy renders nothing for FOR UPDATE on SQLite, where BEGIN IMMEDIATE already holds the
    # database's write lock for the whole transaction.
    query = (
        select(ComputePartition)
        .where(ComputePartition.id == partition_id)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one_or_none()


def execute_partition(app: SceneOS, task: PartitionTask) -> PartitionOutcome:
    """Run one partition in its own unit of work and mark it done in the same transaction.

    A failure of the job's code rolls its work back and records the error (masked, one line) in a
    second transaction; it is reported as a ``failed`` outcome, not raised. Errors of the
    infrastructure (the database is gone) propagate.
    """
    tenant = app.tenant(task.tenant_id)
    settings = tenant.module("compute").settings
    started = time.perf_counter()
    worker = this_process()
    try:
        job = find_job(tenant, task.job_name)
        # The application's own heap stays out of the collector's walks while the partition keeps
        # its rows alive (core/heap.py: a third of credit pay's end of day without it).
        with frozen_heap(), tenant.unit_of_work() as uow:
            row = _lock_partition(uow.session, task.partition_id, skip_locked=True)
            if row is None or row.status == PartitionState.DONE or row.run_id != task.run_id:
                # Being run by another runner (locked), or finished already: not ours to do.
                return PartitionOutcome(task.partition_id, task.key, "skipped", worker=worker,
                                        attempts=row.attempts if row is not None else 0)
            attempt = row.attempts + 1
            context = PartitionContext(tenant=tenant, uow=uow, job_name=task.job_name,
                                       business_date=task.business_date, key=task.key,
                                       attempt=attempt, run_id=task.run_id)
            result = checked_result(job.spec.run_partition(context), job_name=task.job_name,
                                    max_chars=settings.max_result_chars)
            row.status = PartitionState.DONE
            row.attempts = attempt
            row.result = result
            row.error = None
            row.finished_at = uow.clock.now()
        return PartitionOutcome(task.partition_id, task.key, "done", result=result, attempts=attempt,
                                elapsed_seconds=time.perf_counter() - started, worker=worker)
    except Exception as exc:  # the job's failure is recorded on the partition, not raised
        error = error_line(exc)
        log.warning("partition failed", tenant_id=task.tenant_id, job=task.job_name,
                    business_date=task.business_date.isoformat(), partition=task.key, error=error)
        attempts = record_failure(app, task, error)
        return PartitionOutcome(task.partition_id, task.key, "failed", error=error, attempts=attempts,
                                elapsed_seconds=time.perf_counter() - started, worker=worker)


def record_failure(app: SceneOS, task: PartitionTask, error: str) -> int:
    """Mark a partition failed with ``error`` unless it is done meanwhile; returns its attempts."""
    tenant = app.tenant(task.tenant_id)
    with tenant.unit_of_work() as uow:
        row = _lock_partition(uow.session, task.partition_id, skip_locked=False)
        if row is None or row.status == PartitionState.DONE:
            return row.attempts if row is not None else 0
        row.status = PartitionState.FAILED
        row.attempts += 1
        row.error = error[:MAX_ERROR_CHARS]
        row.finished_at = uow.clock.now()
        return row.attempts
