"""The payments module's container: ``container.service(uow=uow)`` per unit of work."""

from __future__ import annotations

from dependency_injector import containers, providers

from products.payments.service import PaymentsService


class PaymentsContainer(containers.DeclarativeContainer):
    settings = providers.Dependency()

    service = providers.Factory(PaymentsService, settings=settings)
