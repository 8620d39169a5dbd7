"""The entry's dependency-injection container, one per tenant that enables it."""

from __future__ import annotations

from dependency_injector import containers, providers

from infra.entry.consent import EndUsers


class EntryContainer(containers.DeclarativeContainer):
    settings = providers.Dependency()
    # ``container.end_users(uow=uow, partner_id=...)``: a partner's end users and consents.
    end_users = providers.Factory(EndUsers, consent_default_days=settings.provided.consent_default_days)
