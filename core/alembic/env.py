"""Alembic environment shared by every module: each module's revisions are a branch of their own,
found through ``version_locations``. Run through ``sceneos db upgrade`` (or on startup on SQLite)."""

from __future__ import annotations

from alembic import context

from core.db import Base

config = context.config
target_metadata = Base.metadata
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - SceneOS always hands over a connection
    raise RuntimeError("run migrations through `sceneos db upgrade`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    version_table="sceneos_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
