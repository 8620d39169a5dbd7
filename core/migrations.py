"""Schema migrations with Alembic. Every module ships its revisions in its own folder (a branch
with its own label); the kernel runs them all with ``upgrade heads``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

ALEMBIC_DIR = Path(__file__).parent / "alembic"


def alembic_config(version_locations: Iterable[Path]) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    locations = [str(path) for path in version_locations]
    # Alembic splits this option on the path separator.
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", __import__("os").pathsep.join(locations))
    return cfg


def upgrade(engine: Engine, version_locations: Iterable[Path], target: str = "heads") -> None:
    cfg = alembic_config(version_locations)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, target)


def current_heads(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": "sceneos_alembic_version"})
        return set(context.get_current_heads())


def expected_heads(version_locations: Iterable[Path]) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(version_locations)).get_heads())


def is_up_to_date(engine: Engine, version_locations: Iterable[Path]) -> bool:
    return current_heads(engine) == expected_heads(version_locations)


def new_revision(
    engine: Engine,
    version_locations: Iterable[Path],
    *,
    module: str,
    module_dir: Path,
    message: str,
    first: bool,
) -> None:
    """Autogenerate a revision for one module's branch from the models versus ``engine``'s schema."""
    cfg = alembic_config(version_locations)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        if first:
            command.revision(cfg, message=message, autogenerate=True, head="base",
                             branch_label=module, version_path=str(module_dir), rev_id=f"{module}_0001")
        else:
            command.revision(cfg, message=message, autogenerate=True, head=f"{module}@head")
