"""A tenant (bank) at run time: its settings, its own plugin manager, its enabled modules, and
the units of work that keep its data apart from every other bank's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock, business_date
from core.db import tenant_session
from core.errors import NotFound
from core.events import Event, EventBus
from core.money import Money, RoundingMode

if TYPE_CHECKING:
    from dependency_injector.containers import DeclarativeContainer

    from core.modules import ModuleSpec
    from core.plugins import TenantHooks
    from core.settings import ModuleSettings, Settings, TenantSettings


class UnitOfWork:
    """One transaction of one tenant: the session, the clock, and the events it raises."""

    def __init__(self, session: Session, tenant: Tenant, bus: EventBus) -> None:
        self.session = session
        self.tenant = tenant
        self._bus = bus

    @property
    def clock(self) -> Clock:
        return self.tenant.clock

    def publish(self, type: str, payload: dict[str, Any], *, subject: str | None = None) -> Event:
        """Raise a domain event; delivered only if this unit of work commits."""
        event = Event(
            type=type,
            tenant_id=self.tenant.id,
            occurred_at=self.tenant.clock.now(),
            payload=payload,
            subject=subject,
        )
        self._bus.stage(self.session, event)
        return event


@dataclass
class ModuleRuntime:
    """A module as enabled for one tenant: its final settings and its DI container."""

    spec: ModuleSpec
    tenant: Tenant
    settings: ModuleSettings
    container: DeclarativeContainer | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Tenant:
    """One bank. Everything done for it goes through :meth:`unit_of_work`."""

    id: str
    settings: TenantSettings
    hooks: TenantHooks
    clock: Clock
    global_settings: Settings
    session_factory: sessionmaker[Session] = field(repr=False)
    bus: EventBus = field(repr=False)
    modules: dict[str, ModuleRuntime] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def currency(self) -> str:
        return self.settings.currency

    @property
    def rounding(self) -> RoundingMode:
        return self.settings.rounding

    @property
    def timezone(self) -> str:
        return self.settings.timezone

    def business_date(self) -> date:
        return business_date(self.clock, self.settings.timezone)

    def money(self, amount: Any, currency: str | None = None) -> Money:
        """Money from a major-unit amount, rounded the way this bank rounds."""
        return Money.of(amount, currency or self.currency, self.rounding)

    def module(self, name: str) -> ModuleRuntime:
        try:
            return self.modules[name]
        except KeyError:
            raise NotFound(f"module {name!r} is not enabled for tenant {self.id!r}") from None

    def has_module(self, name: str) -> bool:
        return name in self.modules

    def plugin_config(self, plugin: str) -> dict[str, Any]:
        """A plugin's configuration, narrowest scope first: this tenant, then global."""
        merged = dict(self.global_settings.plugin_config.get(plugin, {}))
        merged.update(self.settings.plugin_config.get(plugin, {}))
        return merged

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """One transaction bound to this tenant; commits on success, then delivers its events."""
        with tenant_session(self.session_factory, self.id) as session:
            uow = UnitOfWork(session, self, self.bus)
            yield uow
        self.bus.after_commit(session)
