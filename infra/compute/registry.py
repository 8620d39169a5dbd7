"""Which jobs a tenant has: those of its enabled modules plus those its plugins add by hook."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.modules import JobSpec
from core.tenancy import Tenant
from infra.compute.errors import InvalidJob, UnknownJob

JOB_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}\.[a-z][a-z0-9_.]{0,80}$")


@dataclass(frozen=True)
class RegisteredJob:
    """A job available to one tenant and where it comes from (``module party`` or a plugin hook)."""

    spec: JobSpec
    origin: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description


def available_jobs(tenant: Tenant) -> dict[str, RegisteredJob]:
    """Every job of ``tenant`` by name: module jobs (``ModuleSpec.jobs``) and hook-added jobs.

    Module jobs are named ``"<module>.<job>"``; hook-added jobs ``"<owner>.<job>"``. A name taken
    twice, or a malformed one, raises :class:`InvalidJob` naming both origins.
    """
    found: dict[str, RegisteredJob] = {}

    def add(spec: object, origin: str) -> None:
        if not isinstance(spec, JobSpec):
            raise InvalidJob(f"{origin} declared {spec!r}, which is not a core.modules.JobSpec")
        if not JOB_NAME_PATTERN.match(spec.name):
            raise InvalidJob(f"{origin} declared job {spec.name!r}: names are '<owner>.<job>', lower-case")
        if spec.name in found:
            raise InvalidJob(f"job {spec.name!r} is declared by both {found[spec.name].origin} and {origin}")
        found[spec.name] = RegisteredJob(spec=spec, origin=origin)

    for module_name, runtime in tenant.modules.items():
        for spec in runtime.spec.jobs:
            if isinstance(spec, JobSpec) and not spec.name.startswith(f"{module_name}."):
                raise InvalidJob(f"module {module_name!r} declared job {spec.name!r}: its name must start with '{module_name}.'")
            add(spec, f"module {module_name}")
    for declared in tenant.hooks.hook.sceneos_compute_register_jobs(tenant=tenant):
        for spec in declared or ():
            add(spec, "a sceneos_compute_register_jobs hook")
    return dict(sorted(found.items()))


def find_job(tenant: Tenant, name: str) -> RegisteredJob:
    jobs = available_jobs(tenant)
    try:
        return jobs[name]
    except KeyError:
        listed = ", ".join(jobs) or "none"
        raise UnknownJob(f"tenant {tenant.id!r} has no job {name!r} (available: {listed})") from None
