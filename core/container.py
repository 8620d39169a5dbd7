"""The application's dependency-injection container.

One declarative container holds what every module shares: settings, clock, logger, database
engine and session factory, plugin catalog and event bus. Each module brings a container of its
own (``ModuleSpec.container``) declaring what it needs with ``providers.Dependency()``; the kernel
fills those in per tenant. Tests swap providers with ``container.clock.override(...)`` rather than
monkeypatching.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from core.clock import Clock, SystemClock
from core.db import create_db_engine, make_session_factory
from core.logging import get_logger
from core.plugins import PluginCatalog
from core.settings import Settings


class CoreContainer(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    config_source = providers.Object("sceneos.toml")

    clock: providers.Provider[Clock] = providers.Singleton(SystemClock)
    logger = providers.Singleton(get_logger, "sceneos")

    engine = providers.Singleton(
        create_db_engine,
        url=settings.provided.database.url,
        echo=settings.provided.database.echo,
        pool_size=settings.provided.database.pool_size,
    )
    session_factory = providers.Singleton(make_session_factory, engine)

    plugin_catalog = providers.Singleton(PluginCatalog.discover)

    # Set by the application once it knows its tenants (the bus dispatches to their hooks).
    event_bus = providers.Dependency()


def module_container_dependencies() -> tuple[str, ...]:
    """Names a module container may declare as ``providers.Dependency()``; the kernel fills them."""
    return ("runtime", "tenant", "settings", "clock", "hooks", "logger")
