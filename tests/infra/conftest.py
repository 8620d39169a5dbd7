"""Fixtures of the ledger tests: one database per backend (SQLite file, PostgreSQL).

PostgreSQL: the server at ``SCENEOS_TEST_POSTGRES_URL`` (default: the local trust-auth server),
through ``core.testing.postgres``; the session creates a fresh database ``sceneos_test_<hex>`` and
drops it at the end. If the server cannot be reached, PostgreSQL tests skip with the reason,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import infra.ledger  # noqa: F401  (registers the ledger tables on core.db.Base.metadata)
from core.clock import SimulatedClock
from core.db import Base, create_db_engine, make_session_factory, tenant_session
from core.testing import postgres
from infra.ledger import LEDGER_TABLES, Ledger


def _postgres_server_url() -> str:
    url = make_url(postgres.server_url())
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A fresh ``sceneos_test_<hex>`` database on the test server (``SCENEOS_TEST_POSTGRES_URL``,
    default the local server), dropped afterwards. Skips when the server does not answer, fails
    instead under ``CI=true``."""
    server = _postgres_server_url()
    reason = postgres.probe(server)
    if reason is not None:
        message = (
            f"PostgreSQL not reachable at {make_url(server).render_as_string(hide_password=True)}: {reason}"
        )
        if postgres.required():
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    with postgres.temporary_database(server) as url:
        yield url


@pytest.fixture(scope="session")
def ledger_postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session, with the ledger tables."""
    with temporary_postgres_database() as url:
        engine = create_db_engine(url)
        Base.metadata.create_all(engine, tables=[Base.metadata.tables[t] for t in LEDGER_TABLES])
        engine.dispose()
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """URL of a brand-new, empty PostgreSQL database (dropped after the test)."""
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def ledger_postgres_engine(ledger_postgres_url: str) -> Iterator[Engine]:
    engine = create_db_engine(ledger_postgres_url)
    yield engine
    engine.dispose()


@dataclass
class LedgerDB:
    """A database with the ledger tables, and helpers to open units of work on it."""

    backend: str
    url: str
    engine: Engine
    factory: sessionmaker[Session]
    clock: SimulatedClock = field(default_factory=SimulatedClock)

    @contextmanager
    def session(self, tenant: str = "bank_a") -> Iterator[Session]:
        with tenant_session(self.factory, tenant) as session:
            yield session

    @contextmanager
    def ledger(self, tenant: str = "bank_a") -> Iterator[Ledger]:
        """One unit of work for ``tenant``: commits on success, rolls back on an error."""
        with tenant_session(self.factory, tenant) as session:
            yield Ledger(session, self.clock)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def _truncate_ledger(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerDB]:
    """An empty ledger database: a temp-file SQLite, or the session's PostgreSQL database
    (tables truncated before each test)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        engine = create_db_engine(url)
        Base.metadata.create_all(engine, tables=[Base.metadata.tables[t] for t in LEDGER_TABLES])
        yield LedgerDB("sqlite", url, engine, make_session_factory(engine))
        engine.dispose()
    else:
        engine = request.getfixturevalue("ledger_postgres_engine")
        _truncate_ledger(engine)
        yield LedgerDB(
            "postgres", request.getfixturevalue("ledger_postgres_url"), engine, make_session_factory(engine)
        )


CHART = (
    # code, currency, type, owner_type, owner_id, constraint
    ("bank:settlement", "CNY", "asset", "bank", "", "none"),
    ("bank:income", "CNY", "income", "bank", "", "none"),
    ("bank:equity", "CNY", "equity", "bank", "", "none"),
    ("merchant:7", "CNY", "liability", "merchant", "7", "none"),
    ("cust:42", "CNY", "liability", "customer", "42", "debits_must_not_exceed_credits"),
    ("cust:43", "CNY", "liability", "customer", "43", "debits_must_not_exceed_credits"),
    ("loan:42", "CNY", "asset", "customer", "42", "credits_must_not_exceed_debits"),
    ("bank:settlement:usd", "USD", "asset", "bank", "", "none"),
    ("cust:42:usd", "USD", "liability", "customer", "42", "debits_must_not_exceed_credits"),
)


@pytest.fixture
def chart(ledger_db: LedgerDB) -> LedgerDB:
    """``ledger_db`` with the test chart of accounts opened for tenant ``bank_a``."""
    with ledger_db.ledger() as ledger:
        for code, currency, type_, owner_type, owner_id, constraint in CHART:
            ledger.open_account(code, currency, type_, owner_type, owner_id, constraint)
    return ledger_db
