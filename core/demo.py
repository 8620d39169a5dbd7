"""``sceneos demo``: the journeys of SCENARIOS.md played on embedded SQLite.

Journeys come from plugins (``sceneos_demo_journeys``), so each module shows its own journey and
the kernel knows none of them. Each brings a configuration fragment; the fragments are merged
into one multi-bank configuration, the application is built once, and the journeys play in order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from core.app import SceneOS
from core.plugins import PluginCatalog
from core.settings import settings_from_mapping


@dataclass(frozen=True)
class DemoJourney:
    order: int
    title: str
    config: dict[str, Any]
    play: Callable[[SceneOS, Console], None]
    plugins: dict[str, Any] = field(default_factory=dict)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + [item for item in value if item not in merged[key]]
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def collect_journeys(catalog: PluginCatalog) -> list[DemoJourney]:
    journeys: list[DemoJourney] = []
    for info in catalog:
        declare = getattr(info.plugin, "sceneos_demo_journeys", None)
        if declare is not None:
            journeys.extend(declare() or [])
    return sorted(journeys, key=lambda journey: journey.order)


def run_demo(database_url: str, console: Console, *, catalog: PluginCatalog | None = None) -> SceneOS:
    catalog = catalog or PluginCatalog.discover()
    journeys = collect_journeys(catalog)
    config: dict[str, Any] = {"database": {"url": database_url}, "tenants": {}}
    for journey in journeys:
        config = deep_merge(config, journey.config)
    app = SceneOS.build(settings_from_mapping(config, source="demo"), source="demo", catalog=catalog, migrate=True)
    app.start()
    try:
        table = Table(title="SceneOS demo: what each bank has enabled")
        for column in ("tenant", "name", "modules", "plugins", "partners"):
            table.add_column(column)
        for row in app.describe():
            table.add_row(row["tenant"], row["name"], ", ".join(row["modules"]) or "-",
                          ", ".join(row["plugins"]) or "-", ", ".join(row["partners"]) or "-")
        console.print(table)
        for journey in journeys:
            console.rule(journey.title)
            journey.play(app, console)
    finally:
        app.close()
    return app
