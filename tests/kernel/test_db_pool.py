"""The PostgreSQL pool: no ping round trip per unit of work, yet an idle connection the server
dropped is replaced before anyone uses it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

import core.db
from core.db import create_db_engine


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_dropped_idle_connection_is_replaced_on_checkout(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.db, "IDLE_PING_SECONDS", 0.0)
    engine = create_db_engine(postgres_url, pool_size=1)
    killer = create_db_engine(postgres_url, pool_size=1)
    try:
        first = backend_pid(engine)
        with killer.connect() as connection:  # what a server restart or a firewall does to it
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        assert backend_pid(engine) != first
    finally:
        engine.dispose()
        killer.dispose()

