"""The party module's container: the kernel fills in the ``Dependency`` slots per tenant."""

from __future__ import annotations

from dependency_injector import containers, providers

from middle.party.service import PartyService


class PartyContainer(containers.DeclarativeContainer):
    settings = providers.Dependency()
    hooks = providers.Dependency()

    # Called per unit of work: ``container.service(uow=uow)``.
    service = providers.Factory(PartyService, settings=settings, hooks=hooks)
