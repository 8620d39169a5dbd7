"""Build an application for a test or a demo in one call."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from core.app import SceneOS
from core.clock import Clock, SimulatedClock
from core.plugins import PluginCatalog
from core.settings import settings_from_mapping

DEFAULT_TENANT = {
    "name": "Test Bank",
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "modules": {"party": {}},
}


# A fixed master key, so tests on PostgreSQL can store partner secrets (never use it in production).
TEST_MASTER_KEY = "sceneos-test-master-key-not-for-production"


def make_catalog(plugins: Mapping[str, Any] | None = None, *, entry_points: bool = True) -> PluginCatalog:
    """The installed plugins (entry points) plus ``plugins`` registered in code by name."""
    catalog = PluginCatalog.discover(entry_points=entry_points)
    for name, plugin in (plugins or {}).items():
        catalog.register(name, plugin, origin="registered by test")
    return catalog


def make_app(
    config: Mapping[str, Any] | None = None,
    *,
    database_url: str = "sqlite://",
    clock: Clock | None = None,
    plugins: Mapping[str, Any] | None = None,
    start: bool = True,
) -> SceneOS:
    """An application from a config dict (no file, no environment), migrated and started.

    ``config`` defaults to one tenant ``bank`` with the party module; ``entry.master_key``
    defaults to :data:`TEST_MASTER_KEY`. ``database_url`` defaults to
    an in-memory SQLite database; ``clock`` to a :class:`SimulatedClock` at 2026-01-01 UTC;
    ``plugins`` are registered in code, to be enabled by name in ``config``.
    """
    data: dict[str, Any] = copy.deepcopy(dict(config) if config is not None else {"tenants": {"bank": DEFAULT_TENANT}})
    data.setdefault("database", {})
    data["database"].setdefault("url", database_url)
    data.setdefault("entry", {})
    data["entry"].setdefault("master_key", TEST_MASTER_KEY)
    settings = settings_from_mapping(data)
    app = SceneOS.build(
        settings,
        source="<test config>",
        clock=clock or SimulatedClock(datetime.fromisoformat("2026-01-01T00:00:00+00:00")),
        catalog=make_catalog(plugins),
        migrate=True,
    )
    return app.start() if start else app


def tenant_config(
    name: str = "Test Bank", *, modules: Iterable[str] | Mapping[str, dict[str, Any]] = ("party",), **extra: Any
) -> dict[str, Any]:
    """A tenant section for a config dict: ``modules`` names modules (default settings) or maps
    module names to their settings."""
    module_settings = dict(modules) if isinstance(modules, Mapping) else {module: {} for module in modules}
    return {"name": name, "currency": "CNY", "timezone": "Asia/Shanghai", "modules": module_settings, **extra}


def partner_config(
    name: str = "Test partner",
    *,
    key_id: str,
    secret: str,
    scopes: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A partner section (``tenants.<id>.partners.<partner>``) with one signing key."""
    return {"name": name, "scopes": list(scopes), "credentials": [{"key_id": key_id, "secret": secret}], **extra}
