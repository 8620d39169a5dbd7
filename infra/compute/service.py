"""Running a job for a tenant and a business date: the run's lifecycle and its books.

A *run* is (tenant, job, business date), unique. Creating it asks the job for its partition keys
once and stores them with it; from then on the run is worked through those rows:

1. an already completed run is left alone ("already completed");
2. the runner *claims* the run (a lease, see below), so a second runner is told who is at it;
3. the before-steps (``sceneos_compute_before_job``) run once per run, in a unit of work that
   also records them as done;
4. every partition not yet done (pending, or failed on an earlier attempt) goes to the executor,
   which runs each in its own unit of work that also marks it done (``partitions.py``);
5. when every partition is done, the after-steps (``sceneos_compute_after_job``) run in the unit
   of work that marks the run ``completed`` with the summed results; otherwise the run is
   ``failed`` with its failing partitions listed, and running it again retries only those.

The claim is advisory: it tells an operator (and a second ``sceneos compute run``) that the run
is being worked on. Exactly-once does not depend on it; it comes from each partition's
done-marker committing with its work under a row lock. The claim's lease is measured on the
wall clock (:class:`~core.clock.SystemClock`), not the tenant's clock: it measures whether a
process is alive, which a simulated clock cannot tell. Every other timestamp is the tenant's.
A claim is stale, and another runner takes it over, when its lease has expired or when it was
taken by a process on this host that no longer exists (a killed runner).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import SystemClock
from core.logging import get_logger
from core.tenancy import Tenant
from infra.compute.errors import ComputeError, InvalidJob, RunInProgress
from infra.compute.executors import Executor, InProcessExecutor
from infra.compute.models import ComputeJobRun, ComputePartition, PartitionState, RunState
from infra.compute.partitions import (
    PartitionContext,
    PartitionOutcome,
    PartitionTask,
    PlanContext,
    error_line,
)
from infra.compute.registry import RegisteredJob, available_jobs, find_job
from infra.compute.settings import ComputeSettings

if TYPE_CHECKING:
    from core.app import SceneOS

log = get_logger("sceneos.compute")

MAX_KEY_CHARS = 200
MAX_FAILURES_LISTED = 50


# --- what the runner reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionFailure:
    key: str
    error: str
    attempts: int


@dataclass(frozen=True)
class RunProgress:
    """Given to the ``progress`` callback: once before the first partition (``outcome`` None), then
    after each one. ``done`` counts partitions done by earlier attempts too."""

    run_id: int
    job_name: str
    total: int
    done: int
    failed: int
    outcome: PartitionOutcome | None = None


@dataclass(frozen=True)
class RunReport:
    """What one call of :meth:`JobRunner.run` did."""

    run_id: int
    tenant_id: str
    job_name: str
    business_date: date
    status: str
    partitions_total: int
    partitions_done: int
    partitions_failed: int
    # Partitions run by this call, and partitions found done by an earlier (killed, failed) attempt.
    ran: int = 0
    resumed_done: int = 0
    already_completed: bool = False
    failures: tuple[PartitionFailure, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    executor: str = ""
    elapsed_seconds: float = 0.0

    @property
    def completed(self) -> bool:
        return self.status == RunState.COMPLETED

    @property
    def message(self) -> str:
        what = f"{self.job_name} for {self.tenant_id} on {self.business_date.isoformat()}"
        if self.already_completed:
            return f"{what}: already completed ({self.partitions_total} partitions); nothing to do"
        counts = f"{self.partitions_done}/{self.partitions_total} partitions done"
        if self.resumed_done:
            counts += f" ({self.resumed_done} by an earlier attempt)"
        if self.completed:
            return f"{what}: completed, {counts}"
        if self.error:
            return f"{what}: {self.status}, {counts}: {self.error}"
        return f"{what}: {self.status}, {counts}"


@dataclass(frozen=True)
class RunStatus:
    """One run as ``sceneos compute status`` shows it."""

    run_id: int
    tenant_id: str
    job_name: str
    business_date: date
    status: str
    partitions_total: int
    partitions_done: int
    partitions_failed: int
    starts: int
    executor: str | None
    claimed_by: str | None
    # A run marked running whose claim is stale: its runner was killed; run it again to resume.
    interrupted: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    summary: dict[str, Any] | None
    failures: tuple[PartitionFailure, ...] = ()

    @property
    def shown_status(self) -> str:
        return "interrupted" if self.interrupted else self.status


# --- the claim -----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def claim_is_stale(claimed_by: str | None, lease_expires_at: datetime | None, now: datetime) -> bool:
    """True when nobody holds the claim, its lease expired, or its holder on this host is gone."""
    if not claimed_by:
        return True
    if lease_expires_at is None or lease_expires_at <= now:
        return True
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    # Only a process on this host can be checked; elsewhere the lease decides.
    return host == socket.gethostname() and pid_text.isdigit() and not _pid_alive(int(pid_text))


# --- results -------------------------------------------------------------------------------------


def summarize(results: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Sums of the numeric values of partition results, by key, plus the number of partitions."""
    totals: dict[str, Any] = {}
    count = 0
    for result in results:
        count += 1
        for key, value in (result or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return {"partitions": count, **dict(sorted(totals.items()))}


# --- the runner ----------------------------------------------------------------------------------


ProgressCallback = Callable[[RunProgress], None]


class JobRunner:
    """Runs jobs of an application's tenants and reports on their runs.

    ``JobRunner(app).run("bank_a", "ledger.expire_pending", date(2026, 3, 31))`` runs (or resumes,
    or does nothing for) one run; ``executor=DaskExecutor(scheduler="tcp://...")`` spreads its
    partitions over a Dask cluster; ``progress`` is called as partitions finish.
    """

    def __init__(self, app: SceneOS) -> None:
        self.app = app
        self._wall_clock = SystemClock()

    # --- listing ---------------------------------------------------------------------------------

    def jobs(self, tenant_id: str) -> list[RegisteredJob]:
        return list(available_jobs(self.app.tenant(tenant_id)).values())

    # --- running ---------------------------------------------------------------------------------

    def run(
        self,
        tenant_id: str,
        job_name: str,
        business_date: date,
        *,
        executor: Executor | None = None,
        progress: ProgressCallback | None = None,
    ) -> RunReport:
        """Run ``job_name`` for ``tenant_id`` and ``business_date``: create, resume or skip its run.

        Returns a :class:`RunReport`; a failing partition or step makes the report ``failed``
        (not an exception). Raises :class:`UnknownJob`, :class:`RunInProgress` (another live
        runner holds the run) or :class:`InvalidJob` (the job's partition plan breaks a rule).
        """
        started = time.perf_counter()
        tenant = self.app.tenant(tenant_id)
        settings = self._settings(tenant)
        job = find_job(tenant, job_name)
        executor = executor or InProcessExecutor()
        run_id = self._get_or_create_run(tenant, job, business_date, settings)
        token = self._claim(tenant, run_id, settings, executor.name)
        if token is None:
            return self._report(tenant, run_id, already_completed=True, executor=executor.name,
                                elapsed=time.perf_counter() - started)
        ran = 0
        try:
            before_error = self._before_steps(tenant, run_id, job_name, business_date)
            if before_error is not None:
                return self._report(tenant, run_id, executor=executor.name, elapsed=time.perf_counter() - started)
            tasks, done_before = self._remaining(tenant, run_id, job_name, business_date)
            total = len(tasks) + done_before
            done_now = failed_now = 0
            if progress:
                progress(RunProgress(run_id, job_name, total, done_before, 0))
            last_beat = time.monotonic()
            try:
                for outcome in executor.execute(self.app, tasks):
                    ran += 0 if outcome.status == "skipped" else 1
                    done_now += 1 if outcome.status == "done" else 0
                    failed_now += 1 if outcome.status == "failed" else 0
                    if time.monotonic() - last_beat > settings.lease_seconds / 3:
                        self._heartbeat(tenant, run_id, token, settings)
                        last_beat = time.monotonic()
                    if progress:
                        progress(RunProgress(run_id, job_name, total, done_before + done_now, failed_now, outcome))
            except Exception as exc:  # the executor (cluster unreachable...) or the callback broke off
                self._mark_failed(tenant, run_id, f"stopped after {ran} partitions: {error_line(exc)}")
                raise
            self._finish(tenant, run_id, job_name, business_date)
        finally:
            self._release(tenant, run_id, token)
        return self._report(tenant, run_id, ran=ran, resumed_done=done_before, executor=executor.name,
                            elapsed=time.perf_counter() - started)

    def _settings(self, tenant: Tenant) -> ComputeSettings:
        settings = tenant.module("compute").settings
        assert isinstance(settings, ComputeSettings)
        return settings

    def _get_or_create_run(self, tenant: Tenant, job: RegisteredJob, business_date: date,
                           settings: ComputeSettings) -> int:
        """The run's id; on first use, plan its partitions and store them with it, atomically."""
        with tenant.unit_of_work() as uow:
            existing = self._find_run(uow.session, job.name, business_date)
            if existing is not None:
                return existing.id
            keys = self._plan(PlanContext(tenant=tenant, uow=uow, job_name=job.name, business_date=business_date),
                              job, settings)
            now = uow.clock.now()
            try:
                with uow.session.begin_nested():
                    run = ComputeJobRun(job_name=job.name, business_date=business_date, status=RunState.PENDING,
                                        partitions_total=len(keys), starts=0, created_at=now)
                    uow.session.add(run)
                    uow.session.flush()
                    if keys:
                        # Bulk insert bypasses the flush-time tenant stamp: tenant_id is given here.
                        uow.session.execute(insert(ComputePartition), [
                            {"tenant_id": tenant.id, "run_id": run.id, "position": position, "key": key,
                             "status": PartitionState.PENDING, "attempts": 0}
                            for position, key in enumerate(keys)
                        ])
            except IntegrityError:
                # Another runner created the same run a moment ago (PostgreSQL): use theirs.
                existing = self._find_run(uow.session, job.name, business_date)
                if existing is None:
                    raise
                return existing.id
            log.info("run created", tenant_id=tenant.id, job=job.name, business_date=business_date.isoformat(),
                     partitions=len(keys))
            return run.id

    @staticmethod
    def _find_run(session: Session, job_name: str, business_date: date) -> ComputeJobRun | None:
        query = select(ComputeJobRun).where(ComputeJobRun.job_name == job_name,
                                            ComputeJobRun.business_date == business_date)
        return session.scalars(query).one_or_none()

    @staticmethod
    def _plan(context: PlanContext, job: RegisteredJob, settings: ComputeSettings) -> list[str]:
        planned = job.spec.partitions(context)
        if isinstance(planned, str | bytes) or not isinstance(planned, Iterable):
            raise InvalidJob(f"job {job.name!r}: partitions() must return a list of strings, not {type(planned).__name__}")
        keys = list(itertools.islice(planned, settings.max_partitions + 1))  # bounded, even for a generator
        if len(keys) > settings.max_partitions:
            raise InvalidJob(f"job {job.name!r} planned more than {settings.max_partitions} partitions "
                             "(compute setting max_partitions)")
        for key in keys:
            if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
                raise InvalidJob(f"job {job.name!r}: partition key {key!r} must be a string of 1 to {MAX_KEY_CHARS} characters")
        duplicates = [key for key, count in Counter(keys).items() if count > 1]
        if duplicates:
            raise InvalidJob(f"job {job.name!r}: partition key {duplicates[0]!r} is listed twice")
        return keys

    def _claim(self, tenant: Tenant, run_id: int, settings: ComputeSettings, executor_name: str) -> str | None:
        """Take the run for this runner; None if it is completed. Raises RunInProgress if held."""
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        now = self._wall_clock.now()
        with tenant.unit_of_work() as uow:
            run = uow.session.scalars(
                select(ComputeJobRun).where(ComputeJobRun.id == run_id).with_for_update()
            ).one()
            if run.status == RunState.COMPLETED:
                return None
            if run.claimed_by and not claim_is_stale(run.claimed_by, run.lease_expires_at, now):
                expires = run.lease_expires_at.isoformat(timespec="seconds") if run.lease_expires_at else "?"
                raise RunInProgress(f"run of {run.job_name} for {run.business_date.isoformat()} is being run by "
                                    f"{run.claimed_by} (claim expires {expires}); wait or let it finish")
            if run.claimed_by:
                log.warning("taking over an interrupted run", tenant_id=tenant.id, job=run.job_name,
                            business_date=run.business_date.isoformat(), previous=run.claimed_by)
            run.claimed_by = token
            run.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
            run.status = RunState.RUNNING
            run.starts += 1
            run.executor = executor_name
            run.error = None
            run.started_at = run.started_at or uow.clock.now()
        return token

    def _heartbeat(self, tenant: Tenant, run_id: int, token: str, settings: ComputeSettings) -> None:
        lease = self._wall_clock.now() + timedelta(seconds=settings.lease_seconds)
        with tenant.unit_of_work() as uow:
            renewed = uow.session.execute(
                update(ComputeJobRun)
                .where(ComputeJobRun.id == run_id, ComputeJobRun.claimed_by == token)
                .values(lease_expires_at=lease)
                .execution_options(synchronize_session=False)
            ).rowcount
        if not renewed:
            # Another runner took over after our lease expired; partitions stay exactly-once
            # (row locks), so finishing what was submitted is safe.
            log.warning("lost the claim on a run", tenant_id=tenant.id, run_id=run_id)

    def _release(self, tenant: Tenant, run_id: int, token: str) -> None:
        with tenant.unit_of_work() as uow:
            uow.session.execute(
                update(ComputeJobRun)
                .where(ComputeJobRun.id == run_id, ComputeJobRun.claimed_by == token)
                .values(claimed_by=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

    def _before_steps(self, tenant: Tenant, run_id: int, job_name: str, business_date: date) -> str | None:
        """Run the before-steps once per run; the error line if they failed (run marked failed)."""
        try:
            with tenant.unit_of_work() as uow:
                run = uow.session.get(ComputeJobRun, run_id, with_for_update=True)
                assert run is not None
                if run.before_done_at is not None:
                    return None
                tenant.hooks.hook.sceneos_compute_before_job(tenant=tenant, job_name=job_name,
                                                             business_date=business_date, uow=uow)
                run.before_done_at = uow.clock.now()
            return None
        except Exception as exc:  # a plugin's step failed: the run fails, nothing it wrote is kept
            error = f"before-step failed: {error_line(exc)}"
            self._mark_failed(tenant, run_id, error)
            return error

    def _remaining(self, tenant: Tenant, run_id: int, job_name: str,
                   business_date: date) -> tuple[list[PartitionTask], int]:
        """Partitions still to do (pending or failed), in the job's order, and how many are done."""
        with tenant.unit_of_work() as uow:
            rows = uow.session.execute(
                select(ComputePartition.id, ComputePartition.key, ComputePartition.status)
                .where(ComputePartition.run_id == run_id)
                .order_by(ComputePartition.position)
            ).all()
        tasks = [PartitionTask(tenant_id=tenant.id, run_id=run_id, partition_id=pid, job_name=job_name,
                               business_date=business_date, key=key)
                 for pid, key, status in rows if status != PartitionState.DONE]
        return tasks, len(rows) - len(tasks)

    def _finish(self, tenant: Tenant, run_id: int, job_name: str, business_date: date) -> None:
        """Complete the run (after-steps in the same unit of work) or mark it failed."""
        try:
            with tenant.unit_of_work() as uow:
                run = uow.session.get(ComputeJobRun, run_id, with_for_update=True)
                assert run is not None
                counts = self._counts(uow.session, [run_id]).get(run_id, Counter())
                failed, done = counts[PartitionState.FAILED], counts[PartitionState.DONE]
                if done == run.partitions_total:
                    summary = summarize(uow.session.scalars(
                        select(ComputePartition.result).where(ComputePartition.run_id == run_id)
                    ))
                    tenant.hooks.hook.sceneos_compute_after_job(tenant=tenant, job_name=job_name,
                                                                business_date=business_date,
                                                                summary=dict(summary), uow=uow)
                    run.status = RunState.COMPLETED
                    run.summary = summary
                    run.error = None
                    run.finished_at = uow.clock.now()
                    log.info("run completed", tenant_id=tenant.id, job=job_name,
                             business_date=business_date.isoformat(), **summary)
                    return
                if failed:
                    run.status = RunState.FAILED
                    run.error = f"{failed} of {run.partitions_total} partitions failed"
                else:
                    # Partitions left pending were being run by another runner (skipped here).
                    run.error = f"{run.partitions_total - done} partitions not run: held by another runner"
                run.finished_at = uow.clock.now()
        except Exception as exc:  # an after-step failed: the run is not completed
            self._mark_failed(tenant, run_id, f"after-step failed: {error_line(exc)}")

    def _mark_failed(self, tenant: Tenant, run_id: int, error: str) -> None:
        with tenant.unit_of_work() as uow:
            run = uow.session.get(ComputeJobRun, run_id, with_for_update=True)
            assert run is not None
            run.status = RunState.FAILED
            run.error = error[:1000]
            run.finished_at = uow.clock.now()
        log.warning("run failed", tenant_id=tenant.id, run_id=run_id, error=error)

    # --- reporting -------------------------------------------------------------------------------

    @staticmethod
    def _counts(session: Session, run_ids: Sequence[int]) -> dict[int, Counter[str]]:
        counts: dict[int, Counter[str]] = {}
        if not run_ids:
            return counts
        rows = session.execute(
            select(ComputePartition.run_id, ComputePartition.status, func.count())
            .where(ComputePartition.run_id.in_(run_ids))
            .group_by(ComputePartition.run_id, ComputePartition.status)
        )
        for run_id, status, count in rows:
            counts.setdefault(run_id, Counter())[status] = count
        return counts

    @staticmethod
    def _failures(session: Session, run_ids: Sequence[int]) -> dict[int, list[PartitionFailure]]:
        found: dict[int, list[PartitionFailure]] = {}
        if not run_ids:
            return found
        rows = session.execute(
            select(ComputePartition.run_id, ComputePartition.key, ComputePartition.error, ComputePartition.attempts)
            .where(ComputePartition.run_id.in_(run_ids), ComputePartition.status == PartitionState.FAILED)
            .order_by(ComputePartition.run_id, ComputePartition.position)
        )
        for run_id, key, error, attempts in rows:
            listed = found.setdefault(run_id, [])
            if len(listed) < MAX_FAILURES_LISTED:
                listed.append(PartitionFailure(key=key, error=error or "", attempts=attempts))
        return found

    def _report(self, tenant: Tenant, run_id: int, *, ran: int = 0, resumed_done: int = 0,
                already_completed: bool = False, executor: str = "", elapsed: float = 0.0) -> RunReport:
        with tenant.unit_of_work() as uow:
            run = uow.session.get(ComputeJobRun, run_id)
            assert run is not None
            counts = self._counts(uow.session, [run_id]).get(run_id, Counter())
            failures = self._failures(uow.session, [run_id]).get(run_id, [])
            summary = run.summary
            if summary is None:
                summary = summarize(uow.session.scalars(
                    select(ComputePartition.result).where(ComputePartition.run_id == run_id,
                                                          ComputePartition.status == PartitionState.DONE)
                ))
        return RunReport(
            run_id=run.id, tenant_id=tenant.id, job_name=run.job_name, business_date=run.business_date,
            status=run.status, partitions_total=run.partitions_total,
            partitions_done=counts[PartitionState.DONE], partitions_failed=counts[PartitionState.FAILED],
            ran=ran, resumed_done=resumed_done, already_completed=already_completed, failures=tuple(failures),
            summary=dict(summary), error=run.error, executor=executor, elapsed_seconds=elapsed,
        )

    @contextmanager
    def _reading_session(self, tenant_id: str | None) -> Iterator[Session]:
        """One tenant's unit of work, or a system one (every tenant's rows) when ``tenant_id`` is None."""
        if tenant_id is None:
            with self.app.system_unit_of_work() as session:
                yield session
        else:
            with self.app.tenant(tenant_id).unit_of_work() as uow:
                yield uow.session

    def status(self, tenant_id: str | None = None, *, job_name: str | None = None,
               business_date: date | None = None, limit: int = 100) -> list[RunStatus]:
        """Runs, newest first: of one tenant, or of every tenant (a system unit of work)."""
        if not 1 <= limit <= 10_000:
            raise ComputeError("limit must be between 1 and 10000")
        query = select(ComputeJobRun).order_by(ComputeJobRun.created_at.desc(), ComputeJobRun.id.desc()).limit(limit)
        if job_name is not None:
            query = query.where(ComputeJobRun.job_name == job_name)
        if business_date is not None:
            query = query.where(ComputeJobRun.business_date == business_date)
        now = self._wall_clock.now()
        with self._reading_session(tenant_id) as session:
            runs = session.scalars(query).all()
            ids = [run.id for run in runs]
            counts = self._counts(session, ids)
            failures = self._failures(session, ids)
        return [
            RunStatus(
                run_id=run.id, tenant_id=run.tenant_id, job_name=run.job_name, business_date=run.business_date,
                status=run.status, partitions_total=run.partitions_total,
                partitions_done=counts.get(run.id, Counter())[PartitionState.DONE],
                partitions_failed=counts.get(run.id, Counter())[PartitionState.FAILED],
                starts=run.starts, executor=run.executor, claimed_by=run.claimed_by,
                interrupted=run.status == RunState.RUNNING
                and claim_is_stale(run.claimed_by, run.lease_expires_at, now),
                created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
                error=run.error, summary=run.summary, failures=tuple(failures.get(run.id, [])),
            )
            for run in runs
        ]


__all__ = [
    "JobRunner",
    "PartitionContext",
    "PartitionFailure",
    "PlanContext",
    "RegisteredJob",
    "RunProgress",
    "RunReport",
    "RunStatus",
    "available_jobs",
]
