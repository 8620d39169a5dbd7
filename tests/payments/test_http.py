"""The cashier's routes on the bank's side and the wallet's routes through the super entry (SDK)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.sdk.errors import SceneOSAPIError
from core.testing.harness import partner_config, tenant_config
from tests.payments.conftest import OPERATORS, SETTINGS, fund_wallet

WALLET = ("wallet-key-1", "wallet-secret-0123456789abcdef")


@pytest.fixture
def app(make_sceneos):
    config = {
        "entry": {"webhook_poll_seconds": 0},
        "tenants": {"bank": tenant_config(
            modules={"party": {}, "entry": {}, "payments": SETTINGS},
            partners={"wallet": partner_config("Wallet", key_id=WALLET[0], secret=WALLET[1], scopes=["payments"])},
        )},
    }
    return make_sceneos(config)


def test_journey_over_http_cashier_and_wallet(app, http_client, partner_client, sim_clock) -> None:
    bank = http_client(app)
    base = "/v1/tenants/bank/payments"
    for employee_no, name, role, pin in OPERATORS:
        made = bank.post(f"{base}/operators", json={"employee_no": employee_no, "merchant_id": "station1",
                                                    "name": name, "role": role, "pin": pin})
        assert made.status_code == 201 and "pin" not in made.text
    assert bank.post(f"{base}/operators", json={"employee_no": "C001", "merchant_id": "station1",
                                                "name": "Wang Fang", "role": "cashier", "pin": "1234"}).status_code == 200
    assert [m["merchant_id"] for m in bank.get(f"{base}/merchants").json()] == ["station1"]

    wrong = bank.post(f"{base}/shifts", json={"employee_no": "C001", "pin": "9999", "terminal_id": "win1"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "pin_rejected"
    shift = bank.post(f"{base}/shifts", json={"employee_no": "C001", "pin": "1234", "terminal_id": "win1"}).json()

    qr = bank.post(f"{base}/shifts/{shift['shift_no']}/qr",
                   json={"request_id": "r1", "amount_minor": 2_000, "bill_no": "TK-1"})
    assert qr.status_code == 201
    qr = qr.json()
    svg = bank.get(f"{base}/payments/{qr['payment_no']}/qr.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "<svg" in svg.text

    fund_wallet(app, "cust:alice", 5_000, owner="cus_alice")
    fund_wallet(app, "cust:bob", 5_000, owner="cus_bob")
    wallet = partner_client(app, *WALLET)
    # The wallet acts for its user u-alice, linked to the bank's customer who owns cust:alice.
    wallet.put("/v1/users/u-alice", json={"customer_no": "cus_alice"})
    with pytest.raises(SceneOSAPIError) as no_consent:
        wallet.post("/v1/payments/qr/pay", json={"payload": qr["payload"], "payer_account": "cust:alice",
                                                 "request_id": "w-0"}, user_id="u-alice")
    assert (no_consent.value.status, no_consent.value.code) == (403, "consent_required")
    wallet.post("/v1/users/u-alice/consents", json={"scopes": ["payments"]})
    with pytest.raises(SceneOSAPIError) as not_hers:  # another customer's account is unknown to her
        wallet.post("/v1/payments/qr/pay", json={"payload": qr["payload"], "payer_account": "cust:bob",
                                                 "request_id": "w-0b"}, user_id="u-alice")
    assert (not_hers.value.status, not_hers.value.code) == (422, "validation_failed")
    quote = wallet.post("/v1/payments/qr/resolve", json={"payload": qr["payload"]}).data
    assert (quote["merchant_name"], quote["amount"], quote["bill_no"], quote["status"]) == (
        "Coach Station", "20.00", "TK-1", "created")
    paid = wallet.post("/v1/payments/qr/pay", json={"payload": qr["payload"], "payer_account": "cust:alice",
                                                    "request_id": "w-1"}, user_id="u-alice").data
    assert paid["status"] == "succeeded"
    with pytest.raises(SceneOSAPIError) as refused:  # the cashier's routes are not the partner's
        wallet.get(f"/v1/payments/payments/{qr['payment_no']}")
    assert (refused.value.status, refused.value.code) == (403, "forbidden")

    expired = bank.post(f"{base}/shifts/{shift['shift_no']}/qr",
                        json={"request_id": "r2", "amount_minor": 100, "bill_no": "TK-2"}).json()
    sim_clock.advance(timedelta(seconds=301))
    with pytest.raises(SceneOSAPIError) as late:
        wallet.post("/v1/payments/qr/pay", json={"payload": expired["payload"], "payer_account": "cust:alice",
                                                 "request_id": "w-2"}, user_id="u-alice")
    assert (late.value.status, late.value.code) == (422, "qr_expired")
    assert bank.get(f"{base}/payments/{expired['payment_no']}").json()["status"] == "expired"

    cash = bank.post(f"{base}/shifts/{shift['shift_no']}/cash", json={"request_id": "r3", "amount_minor": 700,
                                                                      "bill_no": "TK-3"})
    assert cash.json()["status"] == "succeeded"
    too_much = bank.post(f"{base}/payments/{qr['payment_no']}/refunds", json={
        "request_id": "rf1", "amount_minor": 2_001, "supervisor_employee_no": "S001", "supervisor_pin": "9876"})
    assert too_much.status_code == 422 and too_much.json()["code"] == "refund_exceeds_paid"
    by_cashier = bank.post(f"{base}/payments/{qr['payment_no']}/refunds", json={
        "request_id": "rf1", "amount_minor": 500, "supervisor_employee_no": "C001", "supervisor_pin": "1234"})
    assert by_cashier.status_code == 403
    refund = bank.post(f"{base}/payments/{qr['payment_no']}/refunds", json={
        "request_id": "rf1", "amount_minor": 500, "supervisor_employee_no": "S001", "supervisor_pin": "9876"})
    assert refund.status_code == 201

    statement = bank.post(f"{base}/shifts/{shift['shift_no']}/close").json()
    assert statement["sales_minor"] == 2_700 and statement["refunds_minor"] == 500 and statement["net_minor"] == 2_200
    day = app.tenant("bank").business_date().isoformat()
    by_operator = bank.get(f"{base}/operators/C001/statement", params={"day": day}).json()
    assert by_operator["shift_nos"] == [shift["shift_no"]] and by_operator["net_minor"] == 2_200


def test_merchants_are_managed_through_the_api(app, http_client) -> None:
    bank = http_client(app)
    base = "/v1/tenants/bank/payments"
    kiosk = {"merchant_id": "kiosk", "name": "News Kiosk", "city": "Hangzhou", "mcc": "5994",
             "settlement_account": "merchant:kiosk", "fee_rate": "0.0038",
             "stores": [{"store_id": "k1", "name": "Platform 1", "terminals": [{"terminal_id": "k1t", "label": "Till"}]}]}
    made = bank.put(f"{base}/merchants/kiosk", json=kiosk)
    assert made.status_code == 200 and made.json()["stores"][0]["terminals"] == [{"terminal_id": "k1t", "label": "Till"}]
    assert bank.put(f"{base}/merchants/kiosk", json={**kiosk, "mcc": "59X4"}).status_code == 422
    assert bank.put(f"{base}/merchants/other", json=kiosk).status_code == 422
    stolen = {**kiosk, "merchant_id": "thief", "stores": [{"store_id": "k2", "name": "x",
                                                           "terminals": [{"terminal_id": "win1", "label": "x"}]}]}
    assert bank.put(f"{base}/merchants/thief", json=stolen).status_code == 409
    assert [m["merchant_id"] for m in bank.get(f"{base}/merchants").json()] == ["station1", "kiosk"]
