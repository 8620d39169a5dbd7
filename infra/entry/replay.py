"""Replay protection: a nonce is accepted once per key while its signature could still be valid.

A nonce is remembered until its request's timestamp leaves the clock-skew window; after that the
timestamp check alone refuses it. Stores: ``database`` (default: every worker shares it; written in
the unit of work that also reserves the idempotency key), ``memory`` (one process) and ``redis``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.logging import get_logger
from infra.entry.models import EntryNonce

if TYPE_CHECKING:
    from core.tenancy import UnitOfWork

log = get_logger("sceneos.entry.replay")
MEMORY_MAX_NONCES = 1_000_000


class ReplayStore(Protocol):
    def remember(self, uow: UnitOfWork, key_id: str, nonce: str, expires_at: datetime) -> bool:
        """True the first time (key id, nonce) is seen before ``expires_at``, False for a replay."""

    def prune(self, uow: UnitOfWork) -> int:
        """Forget expired nonces; returns how many."""


_INSERTS: dict[tuple[str, str], Any] = {}


def insert_ignoring_conflict(uow: UnitOfWork, model: type, values: dict) -> tuple | None:
    """INSERT ... ON CONFLICT DO NOTHING on either backend: the new row's primary key, or None.

    A Core statement on the table, stamped with the unit of work's tenant here (the ORM's tenant
    guard sees ORM statements only), built once per table and dialect: this is the hot path of
    every partner request. RETURNING tells whether the row went in (drivers differ on rowcount).
    """
    table = model.__table__  # type: ignore[attr-defined]
    dialect = uow.session.get_bind().dialect.name
    statement = _INSERTS.get((dialect, table.name))
    if statement is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = _INSERTS[(dialect, table.name)] = (
            insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
        )
    row = uow.session.execute(statement, {**values, "tenant_id": uow.tenant.id}).first()
    return tuple(row) if row is not None else None


class DatabaseReplayStore:
    def remember(self, uow: UnitOfWork, key_id: str, nonce: str, expires_at: datetime) -> bool:
        inserted = insert_ignoring_conflict(uow, EntryNonce, {"key_id": key_id, "nonce": nonce, "expires_at": expires_at})
        return inserted is not None

    def prune(self, uow: UnitOfWork) -> int:
        result = uow.session.execute(delete(EntryNonce).where(EntryNonce.expires_at < uow.clock.now())
                                     .execution_options(synchronize_session=False))
        return result.rowcount or 0


class MemoryReplayStore:
    """One process only (``workers = 1``). Bounded: beyond the bound the oldest are forgotten."""

    def __init__(self, max_nonces: int = MEMORY_MAX_NONCES) -> None:
        self._seen: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        self._lock = threading.Lock()
        self.max_nonces = max_nonces

    def remember(self, uow: UnitOfWork, key_id: str, nonce: str, expires_at: datetime) -> bool:
        now = uow.clock.now()
        with self._lock:
            while self._seen:
                oldest_key, oldest_expiry = next(iter(self._seen.items()))
                if oldest_expiry > now and len(self._seen) < self.max_nonces:
                    break
                if oldest_expiry > now:
                    log.warning("replay store full: forgetting a live nonce", max_nonces=self.max_nonces)
                del self._seen[oldest_key]
            seen = self._seen.get((key_id, nonce))
            if seen is not None and seen > now:
                return False
            self._seen[(key_id, nonce)] = expires_at
            return True

    def prune(self, uow: UnitOfWork) -> int:
        return 0  # remember() drops expired nonces as it goes


class RedisReplayStore:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def remember(self, uow: UnitOfWork, key_id: str, nonce: str, expires_at: datetime) -> bool:
        ttl = max(1, int((expires_at - uow.clock.now()).total_seconds()))
        return bool(self.client.set(f"sceneos:entry:nonce:{uow.tenant.id}:{key_id}:{nonce}", b"1", nx=True, ex=ttl))

    def prune(self, uow: UnitOfWork) -> int:
        return 0  # Redis expires the keys itself


def make_replay_store(kind: str, redis_url: str | None) -> ReplayStore:
    if kind == "memory":
        return MemoryReplayStore()
    if kind == "redis":
        from core.errors import ConfigError

        if not redis_url:
            raise ConfigError("replay_store = 'redis' needs entry.redis_url", key="entry.redis_url")
        return RedisReplayStore(redis_url)
    return DatabaseReplayStore()
