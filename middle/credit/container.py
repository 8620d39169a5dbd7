"""The credit module's container: the kernel fills in the ``Dependency`` slots per tenant."""

from __future__ import annotations

from dependency_injector import containers, providers

from middle.credit.scorecard import load_scorecard
from middle.credit.service import CreditService


class CreditContainer(containers.DeclarativeContainer):
    settings = providers.Dependency()
    hooks = providers.Dependency()

    # Loaded and checked once per tenant (a bad file stops startup, not a decision).
    scorecard = providers.Singleton(load_scorecard, settings.provided.scorecard)

    # Called per unit of work: ``container.service(uow=uow)``.
    service = providers.Factory(CreditService, settings=settings, hooks=hooks, scorecard=scorecard)
