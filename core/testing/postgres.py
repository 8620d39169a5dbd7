"""A throw-away PostgreSQL database for tests.

``SCENEOS_TEST_POSTGRES_URL`` names a server (default: the local one on loopback, as the project's
machines run it). A fresh database is created per test session and dropped after. When no server
answers, PostgreSQL tests skip with the reason, except under ``CI=true`` where they fail: CI must
prove both backends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ENV_URL = "SCENEOS_TEST_POSTGRES_URL"


def server_url() -> str:
    return os.environ.get(ENV_URL) or DEFAULT_SERVER_URL


def required() -> bool:
    """Under CI, PostgreSQL tests must run."""
    return os.environ.get("CI", "").lower() == "true"


def probe(url: str) -> str | None:
    """None if the server answers, else the reason it does not."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@contextmanager
def temporary_database(url: str | None = None) -> Iterator[str]:
    """Create a fresh database on the server, yield its URL, drop it afterwards."""
    base = make_url(url or server_url())
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"sceneos_test_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate_all(url: str) -> None:
    """Empty every table but the migration record, so the next test starts clean but migrated."""
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = connection.execute(
            text("select tablename from pg_tables where schemaname = current_schema() "
                 "and tablename <> 'sceneos_alembic_version'")
        ).scalars().all()
        if tables:
            connection.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
