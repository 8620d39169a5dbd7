"""The risk module's container: the kernel fills in the ``Dependency`` slots per tenant."""

from __future__ import annotations

from dependency_injector import containers, providers

from middle.risk.engine import RiskEngine
from middle.risk.service import RiskService


class RiskContainer(containers.DeclarativeContainer):
    tenant = providers.Dependency()
    settings = providers.Dependency()
    hooks = providers.Dependency()

    # Compiled once per tenant (forced at startup, so a bad rule stops startup, not a decision).
    engine = providers.ThreadSafeSingleton(RiskEngine, tenant=tenant, settings=settings, hooks=hooks)

    # Called per unit of work: ``container.service(uow=uow)``.
    service = providers.Factory(RiskService, settings=settings, hooks=hooks, engine=engine)
