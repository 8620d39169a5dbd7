"""Signed requests through the SDK against a real uvicorn server: every 401, scopes, tenants."""

from __future__ import annotations

from datetime import date

import httpx
import pytest
from entry_support import READER, SHOP, SLEEPY, TRAVEL, TRAVEL_NEW, WALLET

from core.sdk import AuthenticationError, NotFoundError, PermissionDenied, sign_request
from core.testing.factories import mobile, resident_id

ORDER = {"reference": "a1", "amount": "126.50"}


def signed_headers(app, key, method, path, body=b"", *, nonce="n" * 24, timestamp=None, query=""):
    timestamp = int(app.clock.now().timestamp()) if timestamp is None else timestamp
    return sign_request(key_id=key[0], secret=key[1], method=method, raw_path=path, raw_query=query, body=body,
                        timestamp=timestamp, nonce=nonce)


@pytest.fixture
def app(entry_app):
    return entry_app()


@pytest.fixture
def url(app, live_server):
    return live_server(app)


def problem_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert set(body) >= {"type", "title", "status", "code", "detail", "instance", "request_id"}
    return body


def test_a_signed_call_reaches_the_route_with_the_partners_tenant(app, partner_client) -> None:
    bank = partner_client(app, *TRAVEL)
    me = bank.get("/v1/me")
    assert me.data == {"partner_id": "travel", "tenant_id": "bank_a", "display_name": "Fly Now Pay Later",
                       "scopes": ["orders", "party"], "key_id": "pk_travel_1"}
    created = bank.post("/v1/orders/orders", json=ORDER)
    assert created.status_code == 201 and created.data["amount_minor"] == 12650
    assert created.request_id and created.headers["ratelimit-limit"] == "50"
    assert bank.get(f"/v1/orders/orders/{created.data['order_no']}").data == created.data


def test_both_keys_work_during_a_rotation(app, partner_client) -> None:
    assert partner_client(app, *TRAVEL).get("/v1/me").data["key_id"] == TRAVEL[0]
    assert partner_client(app, *TRAVEL_NEW).get("/v1/me").data["key_id"] == TRAVEL_NEW[0]


def test_a_missing_signature_is_401_problem_json(url) -> None:
    response = httpx.get(f"{url}/v1/orders/orders/x", headers={"X-Request-ID": "partner-req-1"})
    assert response.status_code == 401
    problem = problem_of(response)
    assert problem["code"] == "authentication_required" and problem["request_id"] == "partner-req-1"


@pytest.mark.parametrize("header", [
    "Bearer abc",
    "SceneOS-HMAC-SHA256 KeyId=pk_travel_1",
    "SceneOS-HMAC-SHA256 KeyId=pk_travel_1, Timestamp=12, Nonce=short, Signature=" + "0" * 64,
    "SceneOS-HMAC-SHA256 KeyId=pk_travel_1, Timestamp=soon, Nonce=" + "n" * 20 + ", Signature=" + "0" * 64,
    "SceneOS-HMAC-SHA256 KeyId=pk_travel_1, Timestamp=12, Nonce=" + "n" * 20 + ", Signature=XYZ",
    "SceneOS-HMAC-SHA256 KeyId=pk_travel_1, KeyId=pk_travel_1, Timestamp=1, Nonce=" + "n" * 20 + ", Signature=" + "0" * 64,
])
def test_a_malformed_signature_is_401(url, header: str) -> None:
    response = httpx.get(f"{url}/v1/me", headers={"Authorization": header})
    assert response.status_code == 401 and problem_of(response)["code"] == "authentication_malformed"


def test_an_expired_or_future_signature_is_401(app, partner_client) -> None:
    now = app.clock.now().timestamp()
    for skew in (-301, +301):
        bank = partner_client(app, *TRAVEL, clock=lambda skew=skew: now + skew, max_retries=0)
        with pytest.raises(AuthenticationError) as refused:
            bank.get("/v1/me")
        assert refused.value.code == "signature_expired"
    assert partner_client(app, *TRAVEL, clock=lambda: now - 299).get("/v1/me").status_code == 200


def test_a_replayed_request_is_401_and_does_nothing(app, url, orders_module) -> None:
    body = b'{"reference":"replay","amount":"1.00"}'
    headers = signed_headers(app, TRAVEL, "POST", "/v1/orders/orders", body) | {
        "Idempotency-Key": "k-replay", "Content-Type": "application/json"}
    first = httpx.post(f"{url}/v1/orders/orders", content=body, headers=headers)
    assert first.status_code == 201
    again = httpx.post(f"{url}/v1/orders/orders", content=body, headers=headers)
    assert again.status_code == 401 and problem_of(again)["code"] == "signature_replayed"
    assert orders_module.executions["replay"] == 1


@pytest.mark.parametrize(("key", "why"), [
    ((TRAVEL[0], "not-the-secret-at-all-0123456789"), "wrong secret"),
    (("pk_nobody_1", TRAVEL[1]), "unknown key"),
    (SLEEPY, "disabled partner"),
])
def test_a_wrong_signature_unknown_key_or_disabled_partner_is_the_same_401(app, partner_client, key, why) -> None:
    with pytest.raises(AuthenticationError) as refused:
        partner_client(app, *key).get("/v1/me")
    assert refused.value.code == "signature_invalid", why
    assert refused.value.request_id


def test_a_tampered_request_is_401(app, url) -> None:
    headers = signed_headers(app, TRAVEL, "GET", "/v1/orders/orders/a", query="x=1")
    assert httpx.get(f"{url}/v1/orders/orders/a?x=1", headers=headers | {"X-Request-ID": "t"}).status_code == 404
    for path, query in [("/v1/orders/orders/b", "x=1"), ("/v1/orders/orders/a", "x=2")]:
        tampered = httpx.get(f"{url}{path}?{query}", headers=signed_headers(
            app, TRAVEL, "GET", "/v1/orders/orders/a", query="x=1", nonce="m" * 24))
        assert problem_of(tampered)["code"] == "signature_invalid"
    body_changed = httpx.post(f"{url}/v1/orders/orders", content=b'{"reference":"x","amount":"9.99"}', headers=(
        signed_headers(app, TRAVEL, "POST", "/v1/orders/orders", b'{"reference":"x","amount":"1.00"}', nonce="o" * 24)
        | {"Idempotency-Key": "k1"}))
    assert problem_of(body_changed)["code"] == "signature_invalid"


def test_scopes_refuse_with_403(app, partner_client) -> None:
    reader = partner_client(app, *READER)
    with pytest.raises(PermissionDenied) as refused:
        reader.post("/v1/orders/orders", json=ORDER)
    assert refused.value.code == "scope_denied"
    with pytest.raises(NotFoundError):
        reader.get("/v1/orders/orders/none")  # read is in scope: the order just does not exist
    shop = partner_client(app, *SHOP)
    assert shop.post("/v1/orders/orders", json=ORDER).status_code == 201  # one operation, by name
    with pytest.raises(PermissionDenied):
        shop.get("/v1/orders/orders/none")
    with pytest.raises(PermissionDenied):
        shop.post("/v1/party/customers", json={"name": "X", "id_number": "x" * 18, "phone": "1"})


def test_a_module_the_partners_bank_does_not_enable_is_404_like_an_unknown_route(app, partner_client) -> None:
    wallet = partner_client(app, *WALLET)  # bank_b: no orders module, though the scope names it
    with pytest.raises(NotFoundError) as disabled:
        wallet.get("/v1/orders/orders/x")
    with pytest.raises(NotFoundError) as unknown:
        wallet.get("/v1/nothing/here")
    assert disabled.value.problem["title"] == unknown.value.problem["title"] == "Not Found"


def test_another_banks_customer_is_404_and_not_403(app, partner_client) -> None:
    wallet = partner_client(app, *WALLET)
    customer = wallet.post("/v1/party/customers", json={
        "name": "Qian Qi", "id_number": resident_id(date(1988, 8, 8)), "phone": mobile(88)}).data
    assert wallet.get(f"/v1/party/customers/{customer['customer_no']}").data == customer
    travel = partner_client(app, *TRAVEL)
    with pytest.raises(NotFoundError) as hidden:
        travel.get(f"/v1/party/customers/{customer['customer_no']}")
    with pytest.raises(NotFoundError) as absent:
        travel.get("/v1/party/customers/cus_doesnotexist0000")
    assert hidden.value.problem["detail"].replace(customer["customer_no"], "X") == \
        absent.value.problem["detail"].replace("cus_doesnotexist0000", "X")


def test_a_partner_signature_does_not_open_the_banks_routes(entry_app, live_server) -> None:
    app = entry_app(admin_api_keys=["admin-key-0123456789abcdef"])
    url = live_server(app)
    path = "/v1/tenants/bank_a/party/customers/cus_x"
    refused = httpx.get(f"{url}{path}", headers=signed_headers(app, TRAVEL, "GET", path))
    assert refused.status_code == 401 and problem_of(refused)["code"] == "admin_key_required"


def test_validation_errors_are_422_with_fields(app, partner_client) -> None:
    from core.sdk import ValidationError

    with pytest.raises(ValidationError) as invalid:
        partner_client(app, *TRAVEL).post("/v1/orders/orders", json={"reference": "", "amount": "1.005"})
    assert invalid.value.code == "validation_failed"
    assert {e["field"] for e in invalid.value.errors} == {"reference", "amount"}


def test_an_unhandled_error_is_500_without_a_trace(app, partner_client) -> None:
    from core.sdk import ServerError

    with pytest.raises(ServerError) as failed:
        partner_client(app, *TRAVEL).post("/v1/orders/orders/explode")
    assert failed.value.code == "internal_error" and "boom" not in str(failed.value.problem)
    assert "Traceback" not in str(failed.value.problem)


def test_a_module_wildcard_scope_grants_the_whole_module_and_nothing_else() -> None:
    from infra.entry.partners import Partner

    partner = Partner("bank_a", "p", "P", None, ("party:*",), True, None, None, (), "configuration")
    assert partner.allows("party", "POST", "register_customer") and partner.allows("party", "GET", "customer")
    assert not partner.allows("orders", "GET", "order")
