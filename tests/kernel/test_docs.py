"""Documentation stays true to the code: every hook is documented (as datasette checks)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from core import hookspecs as core_hookspecs
from core.plugins import PluginCatalog

ROOT = Path(__file__).parents[2]


def all_hookspecs() -> list[tuple[str, object]]:
    modules = [core_hookspecs] + [
        spec.hookspecs for spec, _ in PluginCatalog.discover().modules().values() if spec.hookspecs is not None
    ]
    return [
        (name, function)
        for module in modules
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("sceneos_")
    ]


@pytest.mark.parametrize(("name", "function"), all_hookspecs(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_hookspec_has_a_docstring_and_a_docs_entry(name: str, function: object) -> None:
    doc = inspect.getdoc(function) or ""
    assert "Called" in doc, f"{name}: the docstring must say when it is called"
    assert ":return:" in doc, f"{name}: the docstring must say what it may return"
    assert f"### `{name}`" in (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8"), f"{name} missing from docs/plugins.md"


def test_readme_opens_with_the_quick_start_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1]
    assert quick_start.index("scripts/serve") < quick_start.index("scripts/test") < 600
