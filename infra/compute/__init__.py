"""Compute: batch jobs that run for a business date, split into partitions, resumable and idempotent.

A job is a :class:`core.modules.JobSpec` declared by a module (``ModuleSpec.jobs``) or added by a
bank plugin (``sceneos_compute_register_jobs``). :class:`JobRunner` runs one job for one tenant
and one business date: the *run* (unique per tenant, job and date) records its partition keys
once, and every partition's work commits in the same transaction that marks it done, so a run
killed midway resumes where it stopped and a completed run is never done twice. Partitions run
in-process (default) or on a Dask cluster (:class:`DaskExecutor`). See ``docs/compute.md``.
"""

from infra.compute.errors import (
    ComputeError,
    InvalidJob,
    NotShippable,
    RunInProgress,
    RunNotCompleted,
    UnknownJob,
)
from infra.compute.executors import (
    AppBlueprint,
    DaskExecutor,
    Executor,
    InProcessExecutor,
    PartitionOutcome,
    PartitionTask,
)
from infra.compute.service import (
    JobRunner,
    PartitionContext,
    PartitionFailure,
    PlanContext,
    RegisteredJob,
    RunProgress,
    RunReport,
    RunStatus,
    available_jobs,
)

__all__ = [
    "AppBlueprint",
    "ComputeError",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "InvalidJob",
    "JobRunner",
    "NotShippable",
    "PartitionContext",
    "PartitionFailure",
    "PartitionOutcome",
    "PartitionTask",
    "PlanContext",
    "RegisteredJob",
    "RunInProgress",
    "RunNotCompleted",
    "RunProgress",
    "RunReport",
    "RunStatus",
    "UnknownJob",
    "available_jobs",
]
