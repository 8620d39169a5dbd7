"""Storage kernel: one declarative base, engines for SQLite and PostgreSQL, and tenant-bound sessions.

Tenant isolation is enforced here, once, rather than by every query remembering a filter:

* every table that belongs to a bank mixes in :class:`TenantOwned` (a ``tenant_id`` column);
* a session opened for a tenant (``session.info["tenant_id"]``) adds ``tenant_id = :tenant``
  to every ORM SELECT, UPDATE and DELETE of such tables (``with_loader_criteria``, one option
  whose tenant is bound at each execution), including relationship loads and ``session.get``;
* on flush, new rows are stamped with the session's tenant and any row of another tenant being
  inserted, updated or deleted raises :class:`~core.errors.TenantIsolationError`.

Only ``system`` sessions (batch jobs that span tenants, migrations) see every row, and they must be
asked for by name. Raw ``text()`` SQL is outside the guard; the codebase uses it only in
benchmarks' baselines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, String, bindparam, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    sessionmaker,
    with_loader_criteria,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from core.errors import TenantIsolationError

TENANT_KEY = "tenant_id"
SCOPE_KEY = "sceneos_scope"

# Stable constraint names make Alembic migrations portable between SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends (SQLite stores naive values; we re-attach UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; take time from the clock")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The one declarative base of every SceneOS table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class TenantOwned:
    """Mixin for rows that belong to one bank. The guard in this module keeps them apart."""

    tenant_id: Mapped[str] = mapped_column(String(64), index=True)


# --- engines -------------------------------------------------------------------------------------


def create_db_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """An engine for SQLite (file or memory) or PostgreSQL (``postgresql+psycopg://``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if in_memory:
            # One shared connection, or each new connection would see an empty database.
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, echo=echo, **kwargs)
        _configure_sqlite(engine, wal=not in_memory)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size)
    _ping_when_idle(engine, IDLE_PING_SECONDS)
    return engine


# A pooled connection idle longer than this is checked with a round trip before it is handed out.
IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, only where it is needed. ``pool_pre_ping`` would cost a round
    trip on every checkout, that is on every unit of work; a connection in steady use is known good,
    and one that dies mid-transaction is invalidated by SQLAlchemy's disconnect handling anyway.
    A connection that sat idle (where a server restart, failover or firewall may have dropped it) is
    pinged first; raising ``DisconnectionError`` makes the pool replace it (SQLAlchemy's documented
    custom-ping pattern)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError(f"pooled connection is gone: {type(exc).__name__}") from exc


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN; take it over so BEGIN IMMEDIATE below
        # serializes writers instead of failing late with "database is locked".
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every unit of work may write; taking the write lock at BEGIN makes SQLite writers queue
        # (busy_timeout) rather than deadlock on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


# --- tenant guard --------------------------------------------------------------------------------


def tenant_of(session: Session) -> str | None:
    return session.info.get(TENANT_KEY)


@contextmanager
def tenant_session(factory: sessionmaker[Session], tenant_id: str) -> Iterator[Session]:
    """One unit of work for one tenant: commits on success, rolls back on any error."""
    with factory.begin() as session:
        session.info[TENANT_KEY] = tenant_id
        session.info[SCOPE_KEY] = "tenant"
        yield session


@contextmanager
def system_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that spans tenants, for jobs and migrations only. Asked for by name."""
    with factory.begin() as session:
        session.info[SCOPE_KEY] = "system"
        yield session


# One criteria option for every tenant, the tenant a parameter of each execution: a lambda closing
# over the tenant id made SQLAlchemy build the option and extract the closure's value on every
# statement (about a sixth of a small ORM query's client CPU, measured). A caller cannot set the
# parameter: the session's tenant is bound last.
_TENANT_BIND = "sceneos_session_tenant"
# The name is spelled out in the lambda: SQLAlchemy would track a global read there as a value.
_TENANT_CRITERIA = with_loader_criteria(
    TenantOwned, lambda cls: cls.tenant_id == bindparam("sceneos_session_tenant"), include_aliases=True
)


@event.listens_for(Session, "do_orm_execute")
def _filter_by_tenant(state: ORMExecuteState) -> None:
    tenant_id = state.session.info.get(TENANT_KEY)
    if tenant_id is None:
        return
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(_TENANT_CRITERIA)
        params = state.parameters
        if isinstance(params, list):
            state.parameters = [{**p, _TENANT_BIND: tenant_id} for p in params]
        else:
            state.parameters = {**(params or {}), _TENANT_BIND: tenant_id}


@event.listens_for(Session, "before_flush")
def _guard_writes(session: Session, _flush_context: Any, _instances: Any) -> None:
    tenant_id = session.info.get(TENANT_KEY)
    if tenant_id is None:
        return
    for obj in session.new:
        if isinstance(obj, TenantOwned):
            if obj.tenant_id is None:
                obj.tenant_id = tenant_id
            elif obj.tenant_id != tenant_id:
                raise TenantIsolationError(
                    f"cannot insert a {type(obj).__name__} of tenant {obj.tenant_id!r} "
                    f"in a session of tenant {tenant_id!r}"
                )
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, TenantOwned) and obj.tenant_id != tenant_id:
            raise TenantIsolationError(
                f"cannot change a {type(obj).__name__} of tenant {obj.tenant_id!r} "
                f"in a session of tenant {tenant_id!r}"
            )
