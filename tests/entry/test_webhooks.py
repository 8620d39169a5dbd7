"""Webhooks end to end: an SDK call raises an event, the server's background sender delivers it,
signed, to a failing receiver that recovers; retries back off on the bank's clock; no duplicate effect."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from entry_support import TRAVEL, WEBHOOK_SECRET

from core.sdk import WebhookSignatureError, verify_webhook
from core.testing.harness import partner_config


class Receiver:
    """A partner's webhook endpoint on loopback: fails ``fail_first`` times, verifies signatures
    with the SDK, and applies each event once (deduplicated by event id)."""

    def __init__(self, clock, fail_first: int = 0) -> None:
        self.clock = clock
        self.fail_first = fail_first
        self.received: list[dict] = []
        self.effects: dict[str, dict] = {}
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify_webhook(body, self.headers.get("SceneOS-Signature"), WEBHOOK_SECRET,
                                   now=receiver.clock.now().timestamp())
                except WebhookSignatureError:
                    receiver.bad_signatures += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                event = json.loads(body)
                receiver.received.append({"event": event, "headers": dict(self.headers)})
                if len(receiver.received) <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.effects.setdefault(event["id"], event)  # idempotent consumer
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} webhooks, wanted {count}"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(sim_clock):
    made = []

    def build(fail_first: int = 0) -> Receiver:
        made.append(Receiver(sim_clock, fail_first))
        return made[-1]

    yield build
    for r in made:
        r.close()


def deliveries(app, live_server) -> list[dict]:
    return httpx.get(f"{live_server(app)}/v1/admin/tenants/bank_a/webhooks/deliveries").json()


def settled(app, live_server, attempts: int, timeout: float = 10.0) -> None:
    """Wait until the delivery has recorded ``attempts`` attempts: the receiver sees a POST before the
    sender has written its outcome and next due time, and moving the clock in between would race."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = deliveries(app, live_server)
        if found and found[0]["attempts"] >= attempts:
            return
        time.sleep(0.02)
    raise AssertionError(f"the delivery did not record {attempts} attempts in {timeout} s")


def test_a_failing_receiver_that_recovers_gets_the_event_once(entry_app, partner_client, live_server, receiver,
                                                               sim_clock) -> None:
    hook = receiver(fail_first=2)
    app = entry_app(webhook_url=hook.url, webhook_poll_seconds=0.05,
                    entry_settings={"webhook_backoff_base_seconds": 10, "webhook_max_attempts": 5})
    order = partner_client(app, *TRAVEL).post("/v1/orders/orders", json={"reference": "w1", "amount": "8.80"}).data

    hook.wait_for(1)  # first attempt, at once: 500
    settled(app, live_server, 1)
    first = hook.received[0]
    assert first["event"]["type"] == "orders.order.created"
    assert first["event"]["data"] == {"partner_id": "travel", "order_no": order["order_no"], "amount_minor": 880}
    assert first["headers"]["SceneOS-Event-Id"] == first["event"]["id"]
    time.sleep(0.3)
    assert len(hook.received) == 1  # not due again until the bank's clock moves

    sim_clock.advance(seconds=11)  # first retry: 5 to 10 s later
    hook.wait_for(2)
    settled(app, live_server, 2)
    sim_clock.advance(seconds=21)  # second retry: 10 to 20 s later
    hook.wait_for(3)
    settled(app, live_server, 3)  # the third answer is seen before its outcome is written
    assert {r["event"]["id"] for r in hook.received} == {first["event"]["id"]}
    assert list(hook.effects) == [first["event"]["id"]] and hook.bad_signatures == 0

    [delivery] = deliveries(app, live_server)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 3, 204)
    detail = httpx.get(f"{live_server(app)}/v1/admin/tenants/bank_a/webhooks/deliveries/{delivery['delivery_id']}").json()
    assert [a["status_code"] for a in detail["log"]] == [500, 500, 204]

    # Manual redelivery sends the same event again; the receiver's deduplication keeps one effect.
    again = httpx.post(f"{live_server(app)}/v1/admin/tenants/bank_a/webhooks/deliveries/{delivery['delivery_id']}/redeliver")
    assert again.json()["outcome"] == "delivered" and again.json()["delivery"]["attempts"] == 4
    assert len(hook.received) == 4 and len(hook.effects) == 1
    metrics = httpx.get(f"{live_server(app)}/metrics").text
    assert 'sceneos_webhook_deliveries_total{outcome="failed",partner="travel",tenant="bank_a"} 2.0' in metrics


def test_the_outbox_redelivering_an_event_adds_no_second_delivery(entry_app, partner_client, receiver) -> None:
    from core.events import Event
    from infra.entry.webhooks import record_event

    hook = receiver()
    app = entry_app(webhook_url=hook.url)
    tenant = app.tenant("bank_a")
    event = Event(type="orders.order.created", tenant_id="bank_a", occurred_at=app.clock.now(),
                  payload={"partner_id": "travel", "order_no": "x"})
    assert record_event(event, tenant) == 1
    assert record_event(event, tenant) == 0  # at-least-once upstream, once here
    other = Event(type="orders.order.created", tenant_id="bank_a", occurred_at=app.clock.now(),
                  payload={"partner_id": "reader"})  # another partner's event: not for travel
    assert record_event(other, tenant) == 0


def test_events_naming_no_partner_go_to_subscribers_of_their_type(make_sceneos, receiver, orders_module) -> None:
    from entry_support import two_banks

    from core.events import Event
    from infra.entry.runtime import entry_of
    from infra.entry.webhooks import WebhookDispatcher, record_event

    hook = receiver()
    config = two_banks(webhook_url=hook.url)
    config["tenants"]["bank_a"]["partners"]["travel"]["webhook_events"] = ["party.*"]
    config["tenants"]["bank_a"]["partners"]["mall"] = partner_config(
        "Mall", key_id="pk_mall", secret="mall-secret-0123456789abcdef", webhook_url=hook.url)
    app = make_sceneos(config, plugins={"orders": orders_module})
    tenant = app.tenant("bank_a")
    event = Event(type="party.customer.registered", tenant_id="bank_a", occurred_at=app.clock.now(),
                  payload={"customer_no": "cus_1"})
    assert record_event(event, tenant) == 1  # travel subscribes to party.*; mall does not
    dispatcher = WebhookDispatcher(app, entry_of(app))
    try:
        report = dispatcher.run_once()
    finally:
        dispatcher.close()
    assert (report.attempted, report.delivered) == (1, 1)
    assert hook.received[0]["event"]["type"] == "party.customer.registered"


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_finished_deliveries_are_purged_after_the_retention_period(make_sceneos, orders_module, receiver,
                                                                    sim_clock) -> None:
    from datetime import UTC, date, datetime

    from entry_support import two_banks
    from sqlalchemy import func, select

    from core.events import Event
    from infra.compute import JobRunner
    from infra.entry.models import EntryWebhookAttempt, EntryWebhookDelivery
    from infra.entry.runtime import entry_of
    from infra.entry.webhooks import WebhookDispatcher, record_event
    from infra.outbox.models import OutboxEvent

    hook = receiver()
    app = make_sceneos(two_banks(webhook_url=hook.url, entry_settings={"webhook_retention_days": 30}),
                       plugins={"orders": orders_module})
    tenant = app.tenant("bank_a")

    def event(order_no: str) -> Event:
        return Event(type="orders.order.created", tenant_id="bank_a", occurred_at=app.clock.now(),
                     payload={"partner_id": "travel", "order_no": order_no})

    # 1 January: one delivery sent; one whose event the outbox still holds for another subscriber.
    sent, held = event("sent"), event("held")
    with tenant.unit_of_work() as uow:
        uow.session.add(OutboxEvent(id=held.id, tenant_id="bank_a", type=held.type, subject=None,
                                    payload=held.payload, occurred_at=held.occurred_at, delivered_at=None,
                                    next_attempt_at=held.occurred_at, attempts=1))
    assert record_event(sent, tenant) == 1 and record_event(held, tenant) == 1
    dispatcher = WebhookDispatcher(app, entry_of(app))
    try:
        assert dispatcher.run_once().delivered == 2
        # 20 February: one more, which the receiver never gets (still pending).
        sim_clock.set(datetime(2026, 2, 20, 4, tzinfo=UTC))
        hook.server.shutdown()
        assert record_event(event("later"), tenant) == 1
    finally:
        dispatcher.close()

    def counts() -> tuple[int, int]:
        with tenant.unit_of_work() as uow:
            return (uow.session.execute(select(func.count()).select_from(EntryWebhookDelivery)).scalar_one(),
                    uow.session.execute(select(func.count()).select_from(EntryWebhookAttempt)).scalar_one())

    assert counts() == (3, 2)
    sim_clock.set(datetime(2026, 3, 1, 4, tzinfo=UTC))
    runner = JobRunner(app)
    assert runner.run("bank_a", "entry.webhook_purge", date(2026, 1, 31)).summary["webhook_deliveries_purged"] == 0
    report = runner.run("bank_a", "entry.webhook_purge", date(2026, 2, 1))
    assert report.completed and report.summary["webhook_deliveries_purged"] == 1
    assert counts() == (2, 1)
    with tenant.unit_of_work() as uow:
        left = {d.event_id for d in uow.session.scalars(select(EntryWebhookDelivery))}
    assert sent.id not in left and held.id in left
