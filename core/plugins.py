"""Finding plugins and building one plugin manager per tenant.

* :class:`PluginCatalog` holds every *available* plugin: those found through the ``sceneos``
  entry-point group (built-in modules and third-party packages alike, as pytest and datasette
  do) and those registered in code. Being available enables nothing.
* :func:`build_plugin_manager` makes a fresh ``pluggy.PluginManager`` for one tenant holding
  only what configuration enables for it. Managers are never global, so tests and banks never
  leak plugins into each other.
* :class:`TenantHooks` is the typed facade through which the kernel calls hooks (as tox does),
  so the kernel's use of the hook surface is visible in one file.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from core import hookspecs as core_hookspecs
from core.errors import ConfigError
from core.hookspecs import PROJECT_NAME

if TYPE_CHECKING:
    from pydantic import BaseModel

    from core.app import SceneOS
    from core.events import Event
    from core.modules import ModuleSpec
    from core.tenancy import Tenant

ENTRY_POINT_GROUP = PROJECT_NAME


@dataclass
class PluginInfo:
    """One available plugin and where it came from."""

    name: str
    plugin: Any
    origin: str
    modules: list[ModuleSpec] = field(default_factory=list)

    @property
    def hooks(self) -> list[str]:
        return sorted(
            name
            for name, value in inspect.getmembers(self.plugin)
            if name.startswith(f"{PROJECT_NAME}_") and callable(value)
        )


class PluginCatalog:
    """Every plugin that could be enabled, by name."""

    def __init__(self) -> None:
        self._plugins: dict[str, PluginInfo] = {}

    @classmethod
    def discover(cls, *, entry_points: bool = True) -> PluginCatalog:
        catalog = cls()
        if entry_points:
            catalog.load_entry_points()
        return catalog

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._plugins:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise ConfigError(
                    f"plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}",
                    source="entry point",
                ) from None
            dist = f" ({ep.dist.name} {ep.dist.version})" if ep.dist else ""
            self._add(ep.name, plugin, f"entry point {ep.value}{dist}")

    def register(self, name: str, plugin: Any, *, origin: str = "registered in code") -> None:
        """Make a plugin available under ``name`` (tests, embedding applications)."""
        if name in self._plugins and self._plugins[name].plugin is not plugin:
            raise ConfigError(f"plugin name {name!r} is already taken by {self._plugins[name].origin}")
        self._add(name, plugin, origin)

    def _add(self, name: str, plugin: Any, origin: str) -> None:
        info = PluginInfo(name=name, plugin=plugin, origin=origin)
        declare = getattr(plugin, "sceneos_register_modules", None)
        if declare is not None:
            info.modules = list(declare() or [])
        self._plugins[name] = info

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def get(self, name: str) -> PluginInfo:
        return self._plugins[name]

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def __iter__(self) -> Iterable[PluginInfo]:  # type: ignore[override]
        return iter(self._plugins[name] for name in self.names())

    def modules(self) -> dict[str, tuple[ModuleSpec, PluginInfo]]:
        """Every declared module with its provider. A name declared twice is an error."""
        found: dict[str, tuple[ModuleSpec, PluginInfo]] = {}
        for info in self:
            for spec in info.modules:
                if spec.name in found:
                    other = found[spec.name][1]
                    raise ConfigError(
                        f"module {spec.name!r} is declared by both plugin {other.name!r} and {info.name!r}"
                    )
                found[spec.name] = (spec, info)
        return found


def build_plugin_manager(
    plugins: Iterable[PluginInfo], hookspec_modules: Iterable[ModuleType]
) -> pluggy.PluginManager:
    """A fresh manager with the kernel's and the modules' hookspecs and the given plugins."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(core_hookspecs)
    for module in hookspec_modules:
        pm.add_hookspecs(module)
    for info in plugins:
        if pm.is_registered(info.plugin):
            continue
        try:
            pm.register(info.plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise ConfigError(f"plugin {info.name!r}: {exc}") from None
    try:
        # A misspelled hook name in a plugin would otherwise never be called, silently.
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if pm.is_registered(exc.plugin) else repr(exc.plugin)
        raise ConfigError(f"plugin {name!r}: {exc}") from None
    return pm


def _call_order(caller: Any) -> list[Any]:
    """A hook's plain implementations in pluggy's own call order (wrappers left out)."""
    return [impl for impl in reversed(caller.get_hookimpls()) if not (impl.hookwrapper or impl.wrapper)]


class TenantHooks:
    """Typed calls into one tenant's plugin manager. Module hooks are reached through ``.hook``."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.hook = pm.hook

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def adjust_module_settings(self, tenant: Tenant, module: str, settings: BaseModel) -> list[tuple[str, dict]]:
        """Every plugin's overrides with the plugin's name, in call order."""
        results: list[tuple[str, dict]] = []
        for impl in _call_order(self.pm.hook.sceneos_adjust_module_settings):
            # Called one by one (pluggy's own order) to know which plugin asked for what.
            kwargs = {"tenant": tenant, "module": module, "settings": settings}
            result = impl.function(**{key: kwargs[key] for key in impl.argnames})
            if result:
                results.append((impl.plugin_name, dict(result)))
        return results

    def implementations(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        """(plugin name, call) pairs of one hook in call order; ``call`` takes keyword arguments
        and passes each implementation only the ones it declares. For callers that must track
        each plugin separately (the outbox records delivery per subscriber)."""
        pairs = []
        for impl in _call_order(getattr(self.pm.hook, hook_name)):
            def call(_impl: Any = impl, **kwargs: Any) -> Any:
                return _impl.function(**{key: kwargs[key] for key in _impl.argnames})

            pairs.append((impl.plugin_name, call))
        return pairs

    def startup(self, app: SceneOS, tenant: Tenant) -> None:
        self.pm.hook.sceneos_startup(app=app, tenant=tenant)

    def shutdown(self, app: SceneOS, tenant: Tenant) -> list[tuple[str, BaseException]]:
        failures: list[tuple[str, BaseException]] = []
        for impl in _call_order(self.pm.hook.sceneos_shutdown):
            kwargs = {"app": app, "tenant": tenant}
            try:
                impl.function(**{key: kwargs[key] for key in impl.argnames})
            except Exception as exc:  # one plugin's failure must not stop the others' cleanup
                failures.append((impl.plugin_name, exc))
        return failures

    def on_event(self, event: Event, tenant: Tenant) -> list[tuple[str, BaseException]]:
        failures: list[tuple[str, BaseException]] = []
        for impl in _call_order(self.pm.hook.sceneos_on_event):
            kwargs = {"event": event, "tenant": tenant}
            try:
                impl.function(**{key: kwargs[key] for key in impl.argnames})
            except Exception as exc:  # subscribers are isolated: see the hookspec
                failures.append((impl.plugin_name, exc))
        return failures
