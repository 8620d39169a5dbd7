"""The compute module's container: the kernel fills in the ``Dependency`` slots per tenant."""

from __future__ import annotations

from dependency_injector import containers, providers

from infra.compute.registry import available_jobs


class ComputeContainer(containers.DeclarativeContainer):
    tenant = providers.Dependency()
    settings = providers.Dependency()

    # The tenant's jobs, listed afresh on each call (plugins may be added in tests).
    jobs = providers.Callable(available_jobs, tenant=tenant)
