"""Errors of the compute layer. Each is one line for the CLI (``error: ...``, exit 2)."""

from __future__ import annotations

from core.errors import Conflict, NotFound, SceneOSError


class ComputeError(SceneOSError):
    code = "compute_error"


class UnknownJob(NotFound):
    code = "unknown_job"


class InvalidJob(ComputeError):
    """A job declaration or its partition plan breaks a rule (name, keys, result)."""

    code = "invalid_job"


class RunInProgress(Conflict):
    """Another live runner holds the claim on the same run."""

    code = "run_in_progress"


class NotShippable(ComputeError):
    """Something a Dask worker needs to rebuild the application cannot be sent to it."""

    code = "not_shippable"


class RunNotCompleted(ComputeError):
    """A run ended failed: the CLI's exit status for it (the report lists the failures)."""

    code = "run_not_completed"
