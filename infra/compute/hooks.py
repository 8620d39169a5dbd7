"""Hookspecs of the compute module: where a bank adds its own batch jobs and steps around jobs.

Hooks run per tenant (each bank has its own plugin manager), so a bank's plugin adds jobs and
steps for that bank only. Implementations may accept fewer arguments than a spec names.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from core.hookspecs import hookspec

if TYPE_CHECKING:
    from core.modules import JobSpec
    from core.tenancy import Tenant, UnitOfWork


# -------------------------------------------------------------------------------------------------
# Declaration
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_compute_register_jobs(tenant: Tenant) -> list[JobSpec]:  # type: ignore[empty-body]
    """Add batch jobs of a bank plugin beside the jobs modules declare in ``ModuleSpec.jobs``.

    Called whenever the compute layer lists a tenant's jobs: when a job is run or looked up, by
    ``sceneos compute jobs``, and in each Dask worker that runs one of the job's partitions (the
    worker rebuilds the application, so the plugin must be importable there). It may be called
    many times; return the same jobs every time and do no work here.

    :param tenant: the bank whose jobs are listed.
    :return: a list of :class:`core.modules.JobSpec` (collected from every plugin). Names are
        ``"<owner>.<job>"`` (e.g. ``"bank_a.month_end_fees"``); a name already taken by a
        module's job or another plugin's is an error when the jobs are listed.
    """


# -------------------------------------------------------------------------------------------------
# Running a job: steps around the partitions
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_compute_before_job(tenant: Tenant, job_name: str, business_date: date, uow: UnitOfWork) -> None:
    """A step before any partition of a run of ``job_name`` (any job; check the name).

    Called once per run, in its own unit of work ``uow`` that also records the step as done, so
    it commits exactly once with what it writes: a run resumed after a kill does not call it
    again, and if it raises, nothing it wrote is kept, the run is ``failed`` with the error, no
    partition runs, and the next run of the same date calls it again. Not called for a run that
    is already completed.

    :param tenant: the bank the job runs for.
    :param job_name: the job, e.g. ``"ledger.expire_pending"``.
    :param business_date: the business date of the run.
    :param uow: the unit of work to write in (``uow.session``); it commits after every plugin ran.
    :return: nothing (ignored). Every plugin is called (collected).
    """


@hookspec
def sceneos_compute_after_job(
    tenant: Tenant, job_name: str, business_date: date, summary: dict[str, Any], uow: UnitOfWork
) -> None:
    """A step after every partition of a run of ``job_name`` is done (any job; check the name).

    Called once per run, in the unit of work ``uow`` that marks the run ``completed``: if it
    raises, nothing it wrote is kept, the run is ``failed`` with the error, and the next run of
    the same date calls it again (without redoing any partition). Not called while partitions
    are failed or pending.

    :param tenant: the bank the job ran for.
    :param job_name: the job, e.g. ``"ledger.expire_pending"``.
    :param business_date: the business date of the run.
    :param summary: sums of the numeric values the partitions returned (e.g. ``{"entries":
        1000, "amount_minor": 52000}``) plus ``"partitions"``; the same after a resumed run as
        after a clean one. Read-only.
    :param uow: the unit of work to write in; it commits with the run's completion.
    :return: nothing (ignored). Every plugin is called (collected).
    """
