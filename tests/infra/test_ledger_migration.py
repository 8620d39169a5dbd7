"""The ledger's Alembic revision creates exactly the tables its models define."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import inspect

from core.db import Base, create_db_engine
from infra.ledger import LEDGER_TABLES

revision = importlib.import_module("infra.ledger.migrations.0001_ledger")
rollups = importlib.import_module("infra.ledger.migrations.0002_rollups")


def _only_ledger(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", None)
    return table_name in LEDGER_TABLES


def _context(conn: Any) -> MigrationContext:
    return MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_object": _only_ledger,
            "target_metadata": Base.metadata,
        },
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        yield request.getfixturevalue("empty_postgres_url")


def test_revision_identity():
    assert revision.revision == "ledger_0001"
    assert revision.down_revision is None
    assert revision.branch_labels == ("ledger",)
    assert revision.depends_on is None
    assert (rollups.revision, rollups.down_revision, rollups.branch_labels) == ("ledger_0002", "ledger_0001", None)


def test_migration_matches_the_models(empty_database_url):
    engine = create_db_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            ctx = _context(conn)
            # Sanity: on an empty database the comparison sees every ledger table as missing.
            missing = {
                diff[1].name for diff in compare_metadata(ctx, Base.metadata) if diff[0] == "add_table"
            }
            assert missing == set(LEDGER_TABLES)

            with Operations.context(ctx):
                revision.upgrade()
                rollups.upgrade()
            assert compare_metadata(ctx, Base.metadata) == []

        inspector = inspect(engine)
        assert set(LEDGER_TABLES) <= set(inspector.get_table_names())
        for table in LEDGER_TABLES:
            model = Base.metadata.tables[table]
            columns = {c["name"]: c for c in inspector.get_columns(table)}
            assert set(columns) == {c.name for c in model.columns}, table
            for column in model.columns:
                assert columns[column.name]["nullable"] == column.nullable, (table, column.name)
            assert inspector.get_pk_constraint(table)["name"] == f"pk_{table}"
        uniques = {u["name"] for u in inspector.get_unique_constraints("ledger_entries")}
        assert uniques == {"uq_ledger_entries_tenant_id_entry_id"}
        # A pending entry resolves once, an entry is reversed once: partial unique indexes
        # (ordinary entries, NULL there, need no index entry).
        entry_indexes = {i["name"]: i for i in inspector.get_indexes("ledger_entries")}
        for column in ("pending_entry_pk", "reverses_entry_pk"):
            index = entry_indexes[f"uq_ledger_entries_{column}"]
            assert index["unique"] and index["column_names"] == [column]
            where = next(iter(index.get("dialect_options", {}).values()))
            assert f"{column} IS NOT NULL" in str(where), where
        # No single-column tenant_id index: every key already leads with tenant_id.
        for table in LEDGER_TABLES:
            assert all(i["column_names"] != ["tenant_id"] for i in inspector.get_indexes(table)), table
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("ledger_postings")}
        assert indexes["ix_ledger_postings_account_id"] == ["account_id", "id"]
        checks = {c["name"] for c in inspector.get_check_constraints("ledger_postings")}
        assert {"ck_ledger_postings_amount_minor_positive", "ck_ledger_postings_side"} <= checks

        with engine.begin() as conn, Operations.context(_context(conn)):
            rollups.downgrade()
            indexes = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("ledger_postings")}
            assert indexes["ix_ledger_postings_account_id"] == ["account_id", "created_at"]
            revision.downgrade()
        assert not set(LEDGER_TABLES) & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
