"""End users and consents, through the SDK: a consent-guarded product route refuses without one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from entry_support import TRAVEL, WALLET

from core.sdk import ConflictError, NotFoundError, PermissionDenied, ValidationError


@pytest.fixture
def app(entry_app):
    return entry_app(entry_settings={"consent_default_days": 30})


def test_users_map_to_customers_and_consent_gates_credit_decisions(app, partner_client, sim_clock) -> None:
    bank = partner_client(app, *TRAVEL)
    linked = bank.put("/v1/users/u-1001", json={"customer_no": "cus_abc"}).data
    assert linked["user_id"] == "u-1001" and linked["customer_no"] == "cus_abc" and linked["consents"] == []
    assert bank.put("/v1/users/u-1001", json={"customer_no": "cus_abc"}).data["customer_no"] == "cus_abc"
    with pytest.raises(ConflictError):
        bank.put("/v1/users/u-1001", json={"customer_no": "cus_other"})

    with pytest.raises(PermissionDenied) as refused:
        bank.post("/v1/orders/orders/o1/credit-check", user_id="u-1001")
    assert refused.value.code == "consent_required" and refused.value.errors[0]["message"] == "credit_decision"

    marketing = bank.post("/v1/users/u-1001/consents", json={"scopes": ["marketing"]}).data
    with pytest.raises(PermissionDenied):  # a consent for another purpose does not count
        bank.post("/v1/orders/orders/o1/credit-check", user_id="u-1001")
    consent = bank.post("/v1/users/u-1001/consents", json={
        "scopes": ["credit_decision", "data_sharing"], "evidence": "app v3.2 consent screen"}).data
    assert consent["active"] and consent["expires_at"].startswith("2026-01-31")
    checked = bank.post("/v1/orders/orders/o1/credit-check", user_id="u-1001").data
    assert checked == {"order_no": "o1", "user_id": "u-1001", "customer_no": "cus_abc",
                       "consent_id": consent["consent_id"]}

    revoked = bank.post(f"/v1/users/u-1001/consents/{consent['consent_id']}/revoke").data
    assert revoked["revoked_at"] and not revoked["active"]
    with pytest.raises(PermissionDenied):
        bank.post("/v1/orders/orders/o1/credit-check", user_id="u-1001")
    listed = bank.get("/v1/users/u-1001/consents").data
    assert {(c["consent_id"], c["active"]) for c in listed} == {
        (marketing["consent_id"], True), (consent["consent_id"], False)}


def test_consents_expire_on_the_banks_clock(app, partner_client, sim_clock) -> None:
    bank = partner_client(app, *TRAVEL)
    expires = (sim_clock.now() + timedelta(days=2)).isoformat()
    bank.post("/v1/users/u-2/consents", json={"scopes": ["credit_decision"], "expires_at": expires})
    assert bank.post("/v1/orders/orders/o2/credit-check", user_id="u-2").status_code == 200
    sim_clock.advance(days=2, seconds=1)
    with pytest.raises(PermissionDenied):
        bank.post("/v1/orders/orders/o2/credit-check", user_id="u-2")


def test_a_guarded_call_names_its_user_and_users_are_per_partner(app, partner_client) -> None:
    from core.sdk import ValidationError as Invalid

    bank = partner_client(app, *TRAVEL)
    with pytest.raises(Invalid) as missing:
        bank.post("/v1/orders/orders/o3/credit-check")
    assert missing.value.code == "end_user_required"
    bank.post("/v1/users/u-3/consents", json={"scopes": ["credit_decision"]})
    wallet = partner_client(app, *WALLET)
    with pytest.raises(NotFoundError):  # bank_b's partner cannot see bank_a's partner's user
        wallet.get("/v1/users/u-3")
    with pytest.raises(ValidationError):
        bank.post("/v1/users/u-3/consents", json={"scopes": ["Not A Scope"]})
    with pytest.raises(ValidationError):
        bank.post("/v1/users/u-3/consents", json={"scopes": ["marketing"], "expires_at": "2020-01-01T00:00:00Z"})
