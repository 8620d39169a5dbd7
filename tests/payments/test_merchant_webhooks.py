"""The merchant's system is told of its payments: succeeded, refunded, failed, expired, as signed
webhooks through the outbox and the super entry's sender (same signing, retries and log as
partners'). The secret is stored encrypted and never shown."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from core.cli import _mask_secret_keys
from core.sdk import WebhookSignatureError, verify_webhook
from infra.entry.models import EntryWebhookDelivery
from infra.entry.runtime import entry_of
from infra.entry.webhooks import WebhookDispatcher
from products.payments.models import Merchant
from products.payments.service import OperatorDraft
from products.payments.settings import MerchantConfig
from tests.payments.conftest import (
    OPERATORS,
    STATION,
    approve,
    bank_config,
    fund_wallet,
    service_call,
    sign_in,
)

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
SECRET = "whsec_station1_0123456789abcdef"


class Receiver:
    """The merchant's endpoint on loopback: verifies each signature with the SDK, fails the first
    ``fail_first`` deliveries, and keeps what it got."""

    def __init__(self, clock, fail_first: int = 0) -> None:
        self.received: list[dict] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify_webhook(
                        body, self.headers.get("SceneOS-Signature"), SECRET, now=clock.now().timestamp()
                    )
                except WebhookSignatureError:
                    receiver.bad_signatures += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.received.append({"event": json.loads(body), "headers": dict(self.headers)})
                self.send_response(500 if len(receiver.received) <= fail_first else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/payments-hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def types(self) -> list[str]:
        return [r["event"]["type"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(sim_clock):
    made: list[Receiver] = []

    def build(fail_first: int = 0) -> Receiver:
        made.append(Receiver(sim_clock, fail_first))
        return made[-1]

    yield build
    for r in made:
        r.close()


def hooked_station(make_sceneos, url: str):
    station = {**STATION, "webhook_url": url, "webhook_secret": SECRET}
    config = bank_config(merchants=[station])
    config["entry"] = {"webhook_poll_seconds": 0}
    app = make_sceneos(config)
    for employee_no, name, role, pin in OPERATORS:
        service_call(
            app,
            lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
                OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)
            ),
        )
    return app


def send_due(app):
    dispatcher = WebhookDispatcher(app, entry_of(app))
    try:
        return dispatcher.run_once()
    finally:
        dispatcher.close()


@BOTH
def test_the_merchant_gets_signed_webhooks_of_its_payments(make_sceneos, receiver, sim_clock) -> None:
    hook = receiver()
    app = hooked_station(make_sceneos, hook.url)
    fund_wallet(app, "cust:alice", 500, owner="cus_alice")
    shift = sign_in(app, "C001", "1234", "win1")
    paid_qr = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 300, "TK-1", "r-1"))
    service_call(app, lambda svc: svc.pay(paid_qr.payload, "cust:alice", "w-1"))
    broke_qr = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 900, "TK-2", "r-2"))
    service_call(app, lambda svc: svc.pay(broke_qr.payload, "cust:alice", "w-2"))  # too little: failed
    service_call(app, lambda svc: svc.refund(paid_qr.payment_no, 100, approve(app), "rf-1"))
    late_qr = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 50, "TK-3", "r-3"))
    sim_clock.advance(timedelta(seconds=301))
    service_call(app, lambda svc: svc.expire_due())

    report = send_due(app)
    assert (report.attempted, report.delivered) == (4, 4) and hook.bad_signatures == 0
    by_type = {r["event"]["type"]: r for r in hook.received}
    assert sorted(by_type) == [
        "payments.payment.expired",
        "payments.payment.failed",
        "payments.payment.succeeded",
        "payments.refund.succeeded",
    ]
    succeeded = by_type["payments.payment.succeeded"]
    assert succeeded["event"]["data"]["payment_no"] == paid_qr.payment_no
    assert succeeded["event"]["data"]["amount_minor"] == 300
    assert succeeded["headers"]["SceneOS-Event-Id"] == succeeded["event"]["id"]
    assert (
        by_type["payments.payment.failed"]["event"]["data"]["failure_code"]
        == "insufficient_available_balance"
    )
    assert by_type["payments.refund.succeeded"]["event"]["data"]["amount_minor"] == 100
    assert by_type["payments.payment.expired"]["event"]["data"]["payment_no"] == late_qr.payment_no
    # Each is recorded in the entry's delivery log under the merchant's recipient id.
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        rows = uow.session.scalars(select(EntryWebhookDelivery)).all()
        assert {r.partner_id for r in rows} == {"payments:merchant:station1"}
        assert {r.status for r in rows} == {"delivered"}
    assert send_due(app).attempted == 0  # nothing twice


def test_a_failing_merchant_endpoint_is_retried_with_backoff(make_sceneos, receiver, sim_clock) -> None:
    hook = receiver(fail_first=1)
    app = hooked_station(make_sceneos, hook.url)
    shift = sign_in(app, "C001", "1234", "win1")
    service_call(app, lambda svc: svc.record_cash(shift.shift_no, 1_000, "TK-1", "c-1"))
    assert (send_due(app).failed, len(hook.received)) == (1, 1)
    assert send_due(app).attempted == 0  # not due again until the backoff passes
    sim_clock.advance(seconds=11)
    assert send_due(app).delivered == 1
    assert hook.received[0]["event"]["id"] == hook.received[1]["event"]["id"]


def test_the_secret_is_stored_encrypted_and_never_shown(make_sceneos, receiver, http_client) -> None:
    hook = receiver()
    app = hooked_station(make_sceneos, hook.url)
    with app.tenant("bank").unit_of_work() as uow:
        row = uow.session.scalars(select(Merchant)).one()
        assert row.webhook_secret_encrypted and SECRET not in row.webhook_secret_encrypted
    listed = http_client(app).get("/v1/tenants/bank/payments/merchants")
    assert SECRET not in listed.text and listed.json()[0]["webhook_secret_set"] is True
    assert listed.json()[0]["webhook_url"] == hook.url
    # What `sceneos config check` prints.
    settings = app.tenant("bank").module("payments").settings.model_dump(mode="json")
    assert SECRET not in json.dumps(_mask_secret_keys(settings))
    assert SECRET not in repr(MerchantConfig(**{**STATION, "webhook_secret": SECRET}))


def test_another_merchants_events_and_unsubscribed_types_are_not_sent(make_sceneos, receiver) -> None:
    hook = receiver()
    app = hooked_station(make_sceneos, hook.url)
    kiosk = MerchantConfig(
        merchant_id="kiosk",
        name="Kiosk",
        city="Hangzhou",
        mcc="5994",
        settlement_account="merchant:kiosk",
        stores=[{"store_id": "k", "name": "K", "terminals": [{"terminal_id": "k1", "label": "K1"}]}],
    )
    service_call(app, lambda svc: svc.put_merchant(kiosk))
    service_call(
        app,
        lambda svc: svc.add_operator(
            OperatorDraft(employee_no="K001", merchant_id="kiosk", name="K", role="cashier", pin="1111")
        ),
    )
    kiosk_shift = sign_in(app, "K001", "1111", "k1")
    service_call(app, lambda svc: svc.record_cash(kiosk_shift.shift_no, 500, "K-1", "k-1"))
    shift = sign_in(app, "C001", "1234", "win1")
    service_call(
        app, lambda svc: svc.create_qr(shift.shift_no, 500, "TK-1", "r-1")
    )  # "created": not subscribed
    assert send_due(app).attempted == 0 and hook.received == []


@BOTH
def test_a_merchant_of_another_bank_with_the_same_id_is_never_routed_its_events(
    make_sceneos, receiver
) -> None:
    """Routing reads merchants with a Core statement (core.statements): bank_b's station1
    has no webhook, so bank_b's sales reach nobody, though bank_a's station1 has one."""
    from core.testing.harness import tenant_config
    from tests.payments.conftest import SETTINGS

    hook = receiver()
    hooked = {**STATION, "webhook_url": hook.url, "webhook_secret": SECRET}
    config = {
        "tenants": {
            "bank_a": tenant_config(modules={"party": {}, "payments": {**SETTINGS, "merchants": [hooked]}}),
            "bank_b": tenant_config(modules={"party": {}, "payments": {**SETTINGS, "merchants": [STATION]}}),
        }
    }
    config["entry"] = {"webhook_poll_seconds": 0}
    app = make_sceneos(config)
    service_call(
        app,
        lambda svc: svc.add_operator(
            OperatorDraft(employee_no="C001", merchant_id="station1", name="B", role="cashier", pin="1234")
        ),
        "bank_b",
    )
    shift = service_call(
        app, lambda svc: svc.sign_in(svc.verify_pin("C001", "1234").raise_if_failed(), "win1"), "bank_b"
    )
    service_call(app, lambda svc: svc.record_cash(shift.shift_no, 500, "B-1", "b-1"), "bank_b")  # succeeded
    for tenant_id in ("bank_a", "bank_b"):
        with app.tenant(tenant_id).unit_of_work() as uow:
            assert uow.session.scalars(select(EntryWebhookDelivery)).all() == []
    assert send_due(app).attempted == 0 and hook.received == []
