"""Idempotency keys through the SDK against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from entry_support import TRAVEL, WALLET

from core.sdk import ConflictError, IdempotencyKeyReused, ValidationError

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@BOTH
def test_a_retry_with_the_same_key_replays_the_first_answer_without_doing_it_again(
    entry_app, partner_client, orders_module
) -> None:
    app = entry_app()
    bank = partner_client(app, *TRAVEL)
    first = bank.post("/v1/orders/orders", json={"reference": "r1", "amount": "10.00"}, idempotency_key="key-1")
    again = bank.post("/v1/orders/orders", json={"reference": "r1", "amount": "10.00"}, idempotency_key="key-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.data == first.data and again.replayed and not first.replayed
    assert again.request_id != first.request_id
    assert orders_module.executions["r1"] == 1
    # A new key is a new operation.
    other = bank.post("/v1/orders/orders", json={"reference": "r1", "amount": "10.00"}, idempotency_key="key-2")
    assert other.data["execution"] == 2


@BOTH
def test_the_same_key_with_another_body_is_422(entry_app, partner_client, orders_module) -> None:
    app = entry_app()
    bank = partner_client(app, *TRAVEL)
    bank.post("/v1/orders/orders", json={"reference": "r2", "amount": "10.00"}, idempotency_key="key-x")
    with pytest.raises(IdempotencyKeyReused) as reused:
        bank.post("/v1/orders/orders", json={"reference": "r2", "amount": "99.00"}, idempotency_key="key-x")
    assert reused.value.status == 422 and reused.value.errors[0]["field"] == "Idempotency-Key"
    assert orders_module.executions["r2"] == 1


def test_keys_belong_to_one_partner(entry_app, partner_client, orders_module) -> None:
    app = entry_app()
    body = {"reference": "r3", "amount": "1.00"}
    partner_client(app, *TRAVEL).post("/v1/orders/orders", json=body, idempotency_key="shared")
    from core.sdk import NotFoundError

    with pytest.raises(NotFoundError):  # bank_b's wallet: another partner, its own key space
        partner_client(app, *WALLET).post("/v1/orders/orders", json=body, idempotency_key="shared")


def test_errors_are_stored_and_replayed_too(entry_app, partner_client, orders_module) -> None:
    app = entry_app()
    bank = partner_client(app, *TRAVEL)
    for _ in range(2):
        with pytest.raises(ValidationError) as invalid:
            bank.post("/v1/orders/orders", json={"reference": "", "amount": "1"}, idempotency_key="bad-1")
        assert invalid.value.code == "validation_failed"
    assert invalid.value.headers.get("idempotent-replayed") == "true"
    from core.sdk import ServerError

    for _ in range(2):
        with pytest.raises(ServerError):
            bank.post("/v1/orders/orders/explode", idempotency_key="boom-1")
    assert orders_module.executions["explode"] == 1


def test_a_post_without_a_key_is_400_and_the_sdk_always_sends_one(entry_app, live_server, partner_client) -> None:
    app = entry_app()
    url = live_server(app)
    from core.sdk import sign_request

    body = b'{"reference":"nokey","amount":"1.00"}'
    headers = sign_request(key_id=TRAVEL[0], secret=TRAVEL[1], method="POST", raw_path="/v1/orders/orders",
                           body=body, timestamp=int(app.clock.now().timestamp()), nonce="q" * 20)
    response = httpx.post(f"{url}/v1/orders/orders", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_required"
    sent = partner_client(app, *TRAVEL).post("/v1/orders/orders", json={"reference": "k", "amount": "1.00"})
    assert sent.raw.request.headers["Idempotency-Key"]


@BOTH
def test_two_concurrent_requests_with_one_key_do_the_work_once(entry_app, partner_client, orders_module) -> None:
    app = entry_app()
    body = {"reference": "race", "amount": "5.00", "slow_ms": 600}

    async def race(max_retries: int) -> list:
        async with partner_client(app, *TRAVEL, asynchronous=True, max_retries=max_retries) as bank:
            calls = [bank.post("/v1/orders/orders", json=body, idempotency_key=f"race-{max_retries}")
                     for _ in range(2)]
            return await asyncio.gather(*calls, return_exceptions=True)

    # Without retries: one does the work, the other is told it is in progress.
    outcomes = asyncio.run(race(0))
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(answered) == 1 and answered[0].status_code == 201
    assert len(refused) == 1 and isinstance(refused[0], ConflictError)
    assert refused[0].code == "idempotency_in_progress" and refused[0].headers["retry-after"] == "1"
    # With the SDK's retries the second caller waits and gets the same answer.
    both = asyncio.run(race(5))
    assert [o.status_code for o in both] == [201, 201] and both[0].data == both[1].data
    assert sorted(o.replayed for o in both) == [False, True]
    assert orders_module.executions["race"] == 2  # once per key, never twice for one key


def test_keys_expire_after_the_configured_time(entry_app, partner_client, orders_module, sim_clock) -> None:
    app = entry_app(entry_settings={"idempotency_ttl_seconds": 3600})
    bank = partner_client(app, *TRAVEL)
    body = {"reference": "ttl", "amount": "1.00"}
    bank.post("/v1/orders/orders", json=body, idempotency_key="ttl-key")
    sim_clock.advance(minutes=59)
    assert bank.post("/v1/orders/orders", json=body, idempotency_key="ttl-key").replayed
    sim_clock.advance(minutes=2)
    fresh = bank.post("/v1/orders/orders", json=body, idempotency_key="ttl-key")
    assert not fresh.replayed and fresh.data["execution"] == 2
    assert sim_clock.now() - timedelta(hours=1) < sim_clock.now()


@BOTH
def test_an_answer_marked_no_store_is_kept_encrypted_and_still_replayed(entry_app, partner_client,
                                                                          orders_module) -> None:
    from sqlalchemy import select

    from infra.entry.models import EntryIdempotencyKey

    app = entry_app()
    bank = partner_client(app, *TRAVEL)
    first = bank.post("/v1/orders/orders/o1/one-time-code", json={}, idempotency_key="code-1")
    again = bank.post("/v1/orders/orders/o1/one-time-code", json={}, idempotency_key="code-1")
    assert again.replayed and again.data == first.data == {"order_no": "o1", "code": "SECRET000001"}
    assert again.headers["cache-control"] == "no-store" and orders_module.executions["code"] == 1
    with app.tenants["bank_a"].unit_of_work() as uow:
        row = uow.session.scalars(select(EntryIdempotencyKey).where(EntryIdempotencyKey.key == "code-1")).one()
        assert row.response_sealed and b"SECRET" not in row.response_body


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_admits_a_post_in_one_statement_and_a_seen_nonce_writes_nothing(entry_app) -> None:
    """The one-statement admission (nonce, then the key only if the nonce is new) on PostgreSQL."""
    from sqlalchemy import func, select

    from infra.entry.models import EntryIdempotencyKey, EntryNonce
    from infra.entry.runtime import entry_of

    app = entry_app()
    entry, tenant = entry_of(app), app.tenant("bank_a")
    now = app.clock.now()

    def admit(nonce: str, key: str):
        return entry.idempotency.reserve_with_nonce(
            app.engine, tenant, key_id="pk_travel", nonce=nonce, nonce_expires_at=now + timedelta(minutes=5),
            partner_id="travel", key=key, request_fingerprint="f" * 64, now=now,
            ttl=timedelta(days=1), lease=timedelta(minutes=1))

    fresh, reservation = admit("n1", "k1")
    assert fresh and reservation is not None
    assert admit("n1", "k2") == (False, None)  # a replayed nonce: nothing written, not even the key
    assert admit("n2", "k1") == (True, None)  # a new nonce, a key in use: reserve() decides
    with tenant.unit_of_work() as uow:
        assert uow.session.scalars(select(EntryIdempotencyKey.key)).all() == ["k1"]
        assert uow.session.scalar(select(func.count()).select_from(EntryNonce)) == 2
        row = uow.session.scalars(select(EntryIdempotencyKey)).one()
        assert (row.id, row.tenant_id, row.status) == (reservation.row_id, "bank_a", "in_progress")
    with app.tenant("bank_b").unit_of_work() as uow:  # the other bank sees none of it
        assert uow.session.scalar(select(func.count()).select_from(EntryIdempotencyKey)) == 0
