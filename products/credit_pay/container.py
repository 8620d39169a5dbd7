"""The credit-pay module's container: the kernel fills in the ``Dependency`` slots per tenant."""

from __future__ import annotations

from dependency_injector import containers, providers

from products.credit_pay.service import CreditPayService


class CreditPayContainer(containers.DeclarativeContainer):
    settings = providers.Dependency()
    hooks = providers.Dependency()

    # Called per unit of work: ``container.service(uow=uow)`` (``partner_id=`` for a partner's call).
    service = providers.Factory(CreditPayService, settings=settings, hooks=hooks)
