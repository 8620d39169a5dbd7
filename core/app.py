"""The SceneOS application: settings + plugins + modules + tenants, assembled and checked.

``SceneOS.build(settings)`` does everything that can fail because of configuration before anything
runs, so a bad file stops startup with one line: unknown plugins, unknown modules, a module enabled
without a module it depends on, module settings of the wrong shape (also after plugins adjust
them), module containers missing a dependency.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dependency_injector import providers
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.clock import Clock
from core.container import CoreContainer
from core.db import is_sqlite, system_session
from core.errors import ConfigError, NotFound
from core.events import Event, InProcessEventBus
from core.logging import get_logger
from core.migrations import is_up_to_date, upgrade
from core.modules import ModuleSpec, order_by_dependencies
from core.plugins import PluginCatalog, PluginInfo, TenantHooks, build_plugin_manager
from core.settings import (
    ModuleSettings,
    Settings,
    TenantSettings,
    describe_validation_error,
    load_settings,
    settings_from_mapping,
)
from core.sqlite_wal import WalCheckpointer
from core.tenancy import ModuleRuntime, Tenant

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

log = get_logger("sceneos.app")


class SceneOS:
    """A built application. Create with :meth:`build`, :meth:`from_file` or :meth:`from_mapping`."""

    def __init__(self, container: CoreContainer, source: str) -> None:
        self.container = container
        self.source = source
        self.settings: Settings = container.settings()
        self.catalog: PluginCatalog = container.plugin_catalog()
        self.modules: dict[str, tuple[ModuleSpec, PluginInfo]] = self.catalog.modules()
        self.tenants: dict[str, Tenant] = {}
        self._started = False
        self.wal_checkpointer: WalCheckpointer | None = None
        self.hooks = TenantHooks(self._application_plugin_manager())
        bus = self.hooks.hook.sceneos_make_event_bus(app=self) or InProcessEventBus(self.dispatch_event)
        container.event_bus.override(providers.Object(bus))

    def _application_plugin_manager(self) -> Any:
        """Plugins that act for the whole application: global ones and default infrastructure."""
        names = [name for name in self.settings.plugins if name in self.catalog]
        names += [info.name for spec, info in self.modules.values() if spec.default_enabled]
        hookspec_modules = [spec.hookspecs for spec, _ in self.modules.values() if spec.hookspecs is not None]
        return build_plugin_manager([self.catalog.get(name) for name in dict.fromkeys(names)], hookspec_modules)

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        source: str = "sceneos.toml",
        clock: Clock | None = None,
        catalog: PluginCatalog | None = None,
        migrate: bool | None = None,
    ) -> SceneOS:
        container = CoreContainer(settings=settings)
        container.config_source.override(providers.Object(source))
        if clock is not None:
            container.clock.override(providers.Object(clock))
        if catalog is not None:
            container.plugin_catalog.override(providers.Object(catalog))
        app = cls(container, source)
        with app.naming_source():
            app._validate_plugins_and_modules()
            for tenant_id, tenant_settings in settings.tenants.items():
                app.tenants[tenant_id] = app._build_tenant(tenant_id, tenant_settings)
        should_migrate = migrate if migrate is not None else settings.database.auto_migrate
        if should_migrate is None:
            should_migrate = is_sqlite(app.engine)
        if should_migrate:
            app.migrate()
        return app

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs: Any) -> SceneOS:
        from core.settings import resolve_config_path

        settings = load_settings(path)
        resolved, _ = resolve_config_path(path)
        return cls.build(settings, source=str(resolved) if resolved else "defaults", **kwargs)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **kwargs: Any) -> SceneOS:
        return cls.build(settings_from_mapping(data), source="<config>", **kwargs)

    def _error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(problem, key=key, source=self.source)

    @contextmanager
    def naming_source(self) -> Iterator[None]:
        """Configuration errors raised by modules and plugins while the application is built, started
        or served name the key they found wrong; this adds the file, so every one reads
        ``file: key: problem``."""
        try:
            yield
        except ConfigError as exc:
            if exc.source:
                raise
            raise ConfigError(exc.problem, key=exc.key, source=self.source) from None

    def _validate_plugins_and_modules(self) -> None:
        known_plugins = self.catalog.names()
        for index, name in enumerate(self.settings.plugins):
            if name not in self.catalog:
                raise self._error(f"plugins[{index}]", f"unknown plugin {name!r} (available: {', '.join(known_plugins)})")
        for tenant_id, tenant in self.settings.tenants.items():
            for index, name in enumerate(tenant.plugins):
                if name not in self.catalog:
                    raise self._error(
                        f"tenants.{tenant_id}.plugins[{index}]",
                        f"unknown plugin {name!r} (available: {', '.join(known_plugins)})",
                    )
            for name in tenant.modules:
                if name not in self.modules:
                    raise self._error(
                        f"tenants.{tenant_id}.modules.{name}",
                        f"unknown module {name!r} (available: {', '.join(sorted(self.modules))})",
                    )
            enabled = self.enabled_modules(tenant)
            for name in enabled:
                for dependency in self.modules[name][0].depends_on:
                    if dependency not in enabled:
                        raise self._error(
                            f"tenants.{tenant_id}.modules.{name}",
                            f"module {name!r} needs module {dependency!r}, which tenant {tenant_id!r} does not enable",
                        )

    def enabled_modules(self, tenant_settings: TenantSettings) -> list[str]:
        """Modules the tenant enables, plus infrastructure modules it does not switch off."""
        configured = tenant_settings.enabled_modules()
        defaults = [
            name for name, (spec, _) in sorted(self.modules.items())
            if spec.default_enabled and name not in tenant_settings.modules
        ]
        return defaults + configured

    def _build_tenant(self, tenant_id: str, tenant_settings: TenantSettings) -> Tenant:
        enabled = order_by_dependencies({n: s for n, (s, _) in self.modules.items()}, self.enabled_modules(tenant_settings))
        plugin_names = list(dict.fromkeys(itertools.chain(self.settings.plugins, tenant_settings.plugins)))
        providers_of_modules = [self.modules[name][1].name for name in enabled]
        infos = [self.catalog.get(name) for name in dict.fromkeys(plugin_names + providers_of_modules)]
        hookspec_modules = [spec.hookspecs for spec, _ in self.modules.values() if spec.hookspecs is not None]
        try:
            pm = build_plugin_manager(infos, hookspec_modules)
        except ConfigError as exc:
            raise self._error(f"tenants.{tenant_id}.plugins", exc.message) from None
        tenant = Tenant(
            id=tenant_id,
            settings=tenant_settings,
            hooks=TenantHooks(pm),
            clock=self.clock,
            global_settings=self.settings,
            session_factory=self.session_factory,
            bus=self.container.event_bus(),
        )
        for name in enabled:
            spec = self.modules[name][0]
            settings = self._module_settings(tenant, spec, tenant_settings.modules.get(name, {}))
            runtime = ModuleRuntime(spec=spec, tenant=tenant, settings=settings)
            runtime.container = self._module_container(runtime)
            tenant.modules[name] = runtime
        return tenant

    def _module_settings(self, tenant: Tenant, spec: ModuleSpec, raw: dict[str, Any]) -> ModuleSettings:
        key = f"tenants.{tenant.id}.modules.{spec.name}"
        try:
            settings = spec.settings_model.model_validate(raw)
        except ValidationError as exc:
            raise describe_validation_error(exc, source=self.source, prefix=key) from None
        for plugin_name, overrides in tenant.hooks.adjust_module_settings(tenant, spec.name, settings):
            try:
                settings = spec.settings_model.model_validate({**settings.model_dump(), **overrides})
            except ValidationError as exc:
                error = describe_validation_error(exc, source=f"plugin {plugin_name}", prefix=key)
                raise error from None
        return settings

    def _module_container(self, runtime: ModuleRuntime) -> Any:
        container_cls = runtime.spec.container
        if container_cls is None:
            return None
        available = {
            "runtime": runtime,
            "tenant": runtime.tenant,
            "settings": runtime.settings,
            "clock": self.clock,
            "hooks": runtime.tenant.hooks,
            "logger": get_logger(f"sceneos.{runtime.name}"),
        }
        wanted = {name: value for name, value in available.items() if name in container_cls.providers}
        container = container_cls(**wanted)
        try:
            container.check_dependencies()
        except Exception as exc:  # dependency-injector raises a plain Error listing what is unset
            raise self._error(f"modules.{runtime.name}", f"module container is incomplete: {exc}") from None
        return container

    # --- shared services --------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self.container.clock()

    @property
    def engine(self) -> Engine:
        return self.container.engine()

    @property
    def session_factory(self) -> Any:
        return self.container.session_factory()

    def tenant(self, tenant_id: str) -> Tenant:
        try:
            return self.tenants[tenant_id]
        except KeyError:
            raise NotFound(f"unknown tenant {tenant_id!r}") from None

    @contextmanager
    def system_unit_of_work(self) -> Iterator[Session]:
        """A session that sees every tenant: for cross-tenant jobs and operators only."""
        with system_session(self.session_factory) as session:
            yield session

    def version_locations(self) -> list[Path]:
        return [spec.migrations for spec, _ in self.modules.values() if spec.migrations is not None]

    def migrate(self) -> None:
        """Bring the schema to every module's newest revision (all declared modules, enabled or not)."""
        upgrade(self.engine, self.version_locations())

    def schema_is_current(self) -> bool:
        return is_up_to_date(self.engine, self.version_locations())

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> SceneOS:
        if not self._started:
            if WalCheckpointer.applies_to(self.engine):
                self.wal_checkpointer = WalCheckpointer(self.engine)
                self.wal_checkpointer.start()
            with self.naming_source():
                for tenant in self.tenants.values():
                    tenant.hooks.startup(self, tenant)
            self._started = True
        return self

    def close(self) -> None:
        if self._started:
            for tenant in self.tenants.values():
                for plugin, exc in tenant.hooks.shutdown(self, tenant):
                    log.error("plugin shutdown failed", plugin=plugin, tenant_id=tenant.id, error=str(exc))
            self._started = False
        if self.wal_checkpointer is not None:
            self.wal_checkpointer.stop()
            self.wal_checkpointer = None
        self.engine.dispose()

    def __enter__(self) -> SceneOS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dispatch_event(self, event: Event) -> list[tuple[str, BaseException]]:
        """Deliver one event to its tenant's subscribers in process; logs and returns the failures."""
        tenant = self.tenants.get(event.tenant_id)
        failures = tenant.hooks.on_event(event, tenant) if tenant is not None else []
        for plugin, exc in failures:
            log.error("event subscriber failed", plugin=plugin, tenant_id=event.tenant_id,
                      event_type=event.type, event_id=event.id, error=f"{type(exc).__name__}: {exc}")
        return failures

    def http(self) -> FastAPI:
        from core.http import create_http_app

        with self.naming_source():
            return create_http_app(self)

    def describe(self) -> list[dict[str, Any]]:
        """What each tenant has enabled, for the CLI and the demo."""
        rows = []
        for tenant in self.tenants.values():
            rows.append(
                {
                    "tenant": tenant.id,
                    "name": tenant.name,
                    "currency": tenant.currency,
                    "modules": list(tenant.modules),
                    "plugins": tenant.hooks.plugin_names(),
                    "partners": list(tenant.settings.partners),
                }
            )
        return rows


def enabled_module_names(app: SceneOS) -> Sequence[str]:
    return sorted({name for tenant in app.tenants.values() for name in tenant.modules})
