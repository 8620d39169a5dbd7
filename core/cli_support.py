"""What every CLI command shares: opening the application from a config file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.app import SceneOS
from core.logging import configure_logging
from core.settings import load_settings, resolve_config_path


def build_app(config: str | None, *, migrate: bool | None = None) -> SceneOS:
    settings = load_settings(config)
    configure_logging(settings.logging.mode, settings.logging.level)
    path, _ = resolve_config_path(config)
    return SceneOS.build(settings, source=str(path) if path else "defaults", migrate=migrate)


def http_app_for_worker() -> Any:
    """Factory uvicorn calls in each worker of ``sceneos serve --workers N`` (config from
    ``$SCENEOS_CONFIG``; the parent process has already migrated)."""
    return build_app(None, migrate=False).start().http()


@contextmanager
def open_app(config: str | None) -> Iterator[SceneOS]:
    app = build_app(config)
    try:
        yield app.start()
    finally:
        app.close()
