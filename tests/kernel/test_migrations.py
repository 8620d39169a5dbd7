"""Migrations: every module's branch applies on both backends and matches the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core.db import Base

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@BOTH
def test_migrations_match_the_models(make_sceneos) -> None:
    app = make_sceneos()
    assert app.schema_is_current()
    with app.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_name": lambda name, kind, _parent: not (kind == "table" and name == "sceneos_alembic_version"),
        })
        diff = compare_metadata(context, Base.metadata)
    # Only tables whose module declares migrations are expected; all models must be covered.
    assert diff == [], diff


@BOTH
def test_upgrade_is_idempotent(make_sceneos) -> None:
    app = make_sceneos()
    app.migrate()
    app.migrate()
    assert "party_customers" in inspect(app.engine).get_table_names()
    assert app.schema_is_current()
