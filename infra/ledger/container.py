"""The ledger module's container: ``container.ledger(session=uow.session)`` per unit of work."""

from __future__ import annotations

from dependency_injector import containers, providers

from infra.ledger.service import Ledger


class LedgerContainer(containers.DeclarativeContainer):
    clock = providers.Dependency()

    ledger = providers.Factory(Ledger, clock=clock)
