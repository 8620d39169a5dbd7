"""Credit pay over HTTP: the bank's mount, and a partner through the super entry (signed requests,
scopes, the user's consent), each seeing only its own users and purchases."""

from __future__ import annotations

import pytest
from test_credit_pay_service import GOOD_CONSENT, register

from core.sdk import NotFoundError, PermissionDenied
from core.testing.harness import partner_config, tenant_config

TRAVEL = ("pk_travel_1", "travel-secret-0123456789abcdef")
MALL = ("pk_mall_1", "mall-secret-0123456789abcdef0123")
PLANS = [
    {"terms": 3, "method": "flat_fee", "period_rate_bps": 60},
    {"terms": 6, "method": "flat_fee", "period_rate_bps": 60},
    {"terms": 6, "method": "annuity", "period_rate_bps": 100},
    {"terms": 12, "method": "equal_principal", "period_rate_bps": 100},
    {"terms": 24, "method": "annuity", "period_rate_bps": 100},
]


def app_config() -> dict:
    modules = {
        "party": {},
        "credit": {},
        "risk": {},
        "entry": {},
        "credit_pay": {
            "products": {
                "standard": {
                    "name": "Credit Pay",
                    "display_names": {"travel": "TripPay"},
                    "installment_plans": PLANS,
                }
            }
        },
    }
    return {
        "entry": {"webhook_poll_seconds": 0},
        "tenants": {
            "bank": tenant_config(
                modules=modules,
                partners={
                    "travel": partner_config(
                        "Travel app", key_id=TRAVEL[0], secret=TRAVEL[1], scopes=["credit_pay"]
                    ),
                    "mall": partner_config("Mall", key_id=MALL[0], secret=MALL[1], scopes=["credit_pay"]),
                },
            )
        },
    }


def test_the_bank_mount_activates_buys_refunds_and_trials(make_sceneos, http_client) -> None:
    app = make_sceneos(app_config())
    customer = register(app)
    client = http_client(app)
    base = "/v1/tenants/bank/credit_pay"
    body = {"request_id": "act-1", "customer_no": customer, "consented": GOOD_CONSENT}
    created = client.post(f"{base}/activations", json=body)
    assert created.status_code == 201, created.text
    account = created.json()["account"]
    assert created.json()["outcome"] == "approve" and account["display_name"] == "Credit Pay"
    assert client.post(f"{base}/activations", json=body).status_code == 200
    no = account["account_no"]
    buy = {"purchase_id": "flight-1", "account_no": no, "merchant_id": "air", "amount_minor": 186_000}
    assert client.post(f"{base}/purchases", json=buy).json()["status"] == "authorized"
    assert client.post(f"{base}/purchases/flight-1/capture").json()["status"] == "captured"
    refund = client.post(
        f"{base}/purchases/flight-1/refunds", json={"refund_id": "r-1", "amount_minor": 186_000}
    )
    assert refund.status_code == 201
    assert client.get(f"{base}/accounts/{no}").json()["available_minor"] == account["line_minor"]
    assert [p["purchase_id"] for p in client.get(f"{base}/accounts/{no}/purchases").json()] == ["flight-1"]
    trial = client.post(f"{base}/products/standard/trials", json={"amount_minor": 186_000, "terms": 6}).json()
    assert {plan["method"] for plan in trial["plans"]} == {"flat_fee", "annuity"}
    assert all(sum(i["principal_minor"] for i in plan["installments"]) == 186_000 for plan in trial["plans"])
    problem = client.post(f"{base}/purchases/flight-1/cancel")
    assert problem.status_code == 409 and problem.json()["code"] == "conflict"
    missing = client.post(f"{base}/activations", json={"request_id": "act-2", "consented": {}})
    assert missing.status_code == 422


def test_a_partner_acts_for_its_consenting_user_and_sees_only_its_own(make_sceneos, partner_client) -> None:
    app = make_sceneos(app_config())
    customer = register(app)
    travel = partner_client(app, *TRAVEL)
    travel.put("/v1/users/u-1", json={"customer_no": customer})
    body = {"request_id": "act-1", "consented": GOOD_CONSENT}
    with pytest.raises(PermissionDenied) as refused:
        travel.post("/v1/credit_pay/activations", json=body, user_id="u-1")
    assert refused.value.code == "consent_required"
    travel.post("/v1/users/u-1/consents", json={"scopes": ["credit_decision"]})
    result = travel.post("/v1/credit_pay/activations", json=body, user_id="u-1").data
    assert result["outcome"] == "approve" and result["account"]["display_name"] == "TripPay"
    no = result["account"]["account_no"]
    buy = {"purchase_id": "flight-1", "account_no": no, "merchant_id": "air", "amount_minor": 186_000}
    assert travel.post("/v1/credit_pay/purchases", json=buy, user_id="u-1").data["status"] == "authorized"
    assert travel.get(f"/v1/credit_pay/accounts/{no}", user_id="u-1").data["held_minor"] == 186_000

    # Another partner's user (not linked to this customer) cannot see the account or the purchase.
    mall = partner_client(app, *MALL)
    mall.put("/v1/users/m-9", json={"customer_no": register(app, sequence=2)})
    mall.post("/v1/users/m-9/consents", json={"scopes": ["credit_decision"]})
    with pytest.raises(NotFoundError):
        mall.get(f"/v1/credit_pay/accounts/{no}", user_id="m-9")
    with pytest.raises(NotFoundError):
        mall.post("/v1/credit_pay/purchases/flight-1/capture")
    with pytest.raises(NotFoundError):  # buying on someone else's account: as if it did not exist
        mall.post("/v1/credit_pay/purchases", json={**buy, "purchase_id": "mall-1"}, user_id="m-9")
    assert travel.get(f"/v1/credit_pay/accounts/{no}", user_id="u-1").data["held_minor"] == 186_000
    assert travel.post("/v1/credit_pay/purchases/flight-1/cancel").data["status"] == "cancelled"
    trial = mall.post("/v1/credit_pay/products/standard/trials", json={"amount_minor": 120_000}).data
    assert {plan["terms"] for plan in trial["plans"]} == {3, 6, 12, 24}
