"""Idempotency keys, with Stripe's semantics.

The first response to a partner's ``Idempotency-Key`` (errors included) is stored with a
fingerprint of the request (method, path, query, end user, body). A retry with the same key and
the same request gets that response again, marked ``Idempotent-Replayed: true``, and the work is
not done again; the same key with a different request is ``422 idempotency_key_reused``; while the
first request is still running, another one is ``409 idempotency_in_progress`` (the SDK waits and
retries). A request that died without answering holds its key for ``idempotency_lease_seconds``.
Keys expire after ``idempotency_ttl_seconds``.

The reservation is a row inserted with ``ON CONFLICT DO NOTHING``: of two concurrent requests with
one key, exactly one inserts it, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, bindparam, delete, select, text, update

from infra.entry.errors import IdempotencyInProgress, IdempotencyKeyReused
from infra.entry.models import EntryIdempotencyKey
from infra.entry.replay import insert_ignoring_conflict

if TYPE_CHECKING:
    from core.tenancy import Tenant, UnitOfWork
    from infra.entry.crypto import SecretCipher

# Response headers worth replaying; the rest (request id, rate limits, length) belong to each answer.
STORED_HEADERS = frozenset({"content-type", "location", "content-language", "cache-control"})


def fingerprint(method: str, canonical_path: str, canonical_query: str, end_user: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper(), canonical_path, canonical_query, end_user):
        digest.update(part.encode("utf-8") + b"\n")
    digest.update(hashlib.sha256(body).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    route: str | None = None  # the route template that answered (metrics and logs of replays)


@dataclass(frozen=True)
class Reservation:
    row_id: int


_TABLE = EntryIdempotencyKey.__table__
_COMPLETE = update(_TABLE).where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.tenant_id == bindparam("row_tenant"))


# PostgreSQL admission in one autocommit statement: the nonce, and (only if the nonce is new) the
# key's reservation. One round trip instead of four (BEGIN, two INSERTs, COMMIT) on every partner
# POST. Driver-level SQL outside the ORM's tenant guard: :tenant is bound from the Tenant object
# the entry authenticated the partner into (IdempotencyStore.reserve_with_nonce), never from input.
_PG_ADMIT = text("""
    WITH n AS (
        INSERT INTO entry_nonces (tenant_id, key_id, nonce, expires_at)
        VALUES (:tenant, :key_id, :nonce, :nonce_expires_at)
        ON CONFLICT DO NOTHING RETURNING 1
    ), k AS (
        INSERT INTO entry_idempotency_keys
            (tenant_id, partner_id, key, fingerprint, status, response_sealed, created_at, locked_until, expires_at)
        SELECT :tenant, :partner_id, :key, :fingerprint, 'in_progress', false, :now, :locked_until, :expires_at
        WHERE EXISTS (SELECT 1 FROM n)
        ON CONFLICT DO NOTHING RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM n), (SELECT id FROM k)""")


def _no_store(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "cache-control" and "no-store" in value.lower() for name, value in headers)


class IdempotencyStore:
    """Stores first answers. An answer marked ``Cache-Control: no-store`` (it carries a secret, such as
    a one-time payment code) is kept encrypted with the entry's cipher, so the database never holds
    it in clear, and is still replayed to a retry of the same request."""

    def __init__(self, cipher: SecretCipher) -> None:
        self.cipher = cipher

    def reserve(
        self,
        uow: UnitOfWork,
        partner_id: str,
        key: str,
        request_fingerprint: str,
        *,
        ttl: timedelta,
        lease: timedelta,
    ) -> Reservation | StoredResponse:
        """Reserve ``key`` for this request, or give the stored response, or refuse (409/422)."""
        now = uow.clock.now()
        values = {"partner_id": partner_id, "key": key, "fingerprint": request_fingerprint, "status": "in_progress",
                  "created_at": now, "locked_until": now + lease, "expires_at": now + ttl}
        inserted = insert_ignoring_conflict(uow, EntryIdempotencyKey, values)
        if inserted is not None:
            return Reservation(inserted[0])
        row = uow.session.scalars(select(EntryIdempotencyKey).where(
            EntryIdempotencyKey.partner_id == partner_id, EntryIdempotencyKey.key == key)).one()
        if row.expires_at <= now:
            # An expired key is a new key: take the row over (conditionally, against a racing taker).
            if self._take_over(uow, row, {**values}, EntryIdempotencyKey.expires_at == row.expires_at):
                return Reservation(row.id)
            raise IdempotencyInProgress("a request with this idempotency key is being processed; retry shortly")
        if row.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(
                "this idempotency key was used with a different request; use a new key for a new request",
                details=[{"field": "Idempotency-Key", "code": "idempotency_key_reused",
                          "message": "differs from the first request made with this key"}],
            )
        if row.status == "done":
            assert row.response_status is not None and row.response_body is not None
            body = self.cipher.unseal(row.response_body) if row.response_sealed else row.response_body
            return StoredResponse(row.response_status, [tuple(h) for h in row.response_headers or []], body, row.route)
        if row.locked_until <= now and self._take_over(
            uow, row, {"locked_until": now + lease}, EntryIdempotencyKey.locked_until == row.locked_until
        ):
            return Reservation(row.id)
        raise IdempotencyInProgress("a request with this idempotency key is being processed; retry shortly")

    @staticmethod
    def reserve_with_nonce(
        engine: Engine,
        tenant: Tenant,
        *,
        key_id: str,
        nonce: str,
        nonce_expires_at: datetime,
        partner_id: str,
        key: str,
        request_fingerprint: str,
        now: datetime,
        ttl: timedelta,
        lease: timedelta,
    ) -> tuple[bool, Reservation | None]:
        """PostgreSQL: record the nonce and reserve ``key`` in one statement (``_PG_ADMIT``).

        ``(False, None)``: the nonce was seen (nothing written). ``(True, reservation)``: both
        written. ``(True, None)``: the nonce is recorded but the key exists; :meth:`reserve` in a
        unit of work then says what it holds (a stored answer, 409 or 422)."""
        params = {
            "tenant": tenant.id, "key_id": key_id, "nonce": nonce, "nonce_expires_at": nonce_expires_at,
            "partner_id": partner_id, "key": key, "fingerprint": request_fingerprint, "now": now,
            "locked_until": now + lease, "expires_at": now + ttl,
        }
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            fresh, row_id = connection.execute(_PG_ADMIT, params).one()
        return bool(fresh), Reservation(row_id) if row_id is not None else None

    @staticmethod
    def _take_over(uow: UnitOfWork, row: EntryIdempotencyKey, values: dict, condition: object) -> bool:
        values = {k: v for k, v in values.items() if k not in ("partner_id", "key", "created_at")}
        result = uow.session.execute(
            update(EntryIdempotencyKey).where(EntryIdempotencyKey.id == row.id, condition)  # type: ignore[arg-type]
            .values(**values).execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def complete(self, tenant: Tenant, reservation: Reservation, response: StoredResponse) -> None:
        headers = [[name, value] for name, value in response.headers if name.lower() in STORED_HEADERS]
        sealed = _no_store(response.headers)
        body = self.cipher.seal(response.body) if sealed else response.body
        with tenant.unit_of_work() as uow:
            # Core, on the hot path: the tenant is in the WHERE clause explicitly.
            uow.session.execute(_COMPLETE, {
                "row_id": reservation.row_id, "row_tenant": tenant.id, "status": "done",
                "response_status": response.status, "response_headers": headers, "response_body": body,
                "route": response.route, "response_sealed": sealed,
            })

    def prune(self, uow: UnitOfWork, now: datetime) -> int:
        result = uow.session.execute(delete(EntryIdempotencyKey).where(EntryIdempotencyKey.expires_at < now)
                                     .execution_options(synchronize_session=False))
        return result.rowcount or 0
