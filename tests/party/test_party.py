"""The party module end to end: service rules, idempotency, the bank plugin, HTTP and CLI."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Conflict, Rejected, ValidationFailed
from core.testing.factories import mobile, resident_id, with_check_digit
from core.testing.harness import tenant_config
from middle.party.service import CustomerDraft


def service(app, tenant_id="bank"):
    runtime = app.tenant(tenant_id).module("party")
    return runtime


def register(app, draft, tenant_id="bank"):
    runtime = app.tenant(tenant_id).module("party")
    with runtime.tenant.unit_of_work() as uow:
        return runtime.container.service(uow=uow).register(draft)


def draft(birth=date(1990, 3, 4), phone_seq=1, name="Zhang San", **kw) -> CustomerDraft:
    return CustomerDraft(name=name, id_number=resident_id(birth, **kw), phone=mobile(phone_seq))


def test_register_reads_facts_from_the_id_number_and_masks_identifiers(sceneos_app) -> None:
    result = register(sceneos_app, draft(female=True))
    customer = result.customer
    assert result.created
    assert customer.birth_date == date(1990, 3, 4)
    assert customer.gender == "female"
    assert customer.region_code == "110105"
    assert customer.id_number_masked == "110105********" + resident_id(date(1990, 3, 4), female=True)[-4:]
    assert customer.phone_masked == "+86138****0001"
    assert customer.created_at == sceneos_app.clock.now()


def test_registering_again_is_idempotent_and_a_different_person_conflicts(sceneos_app) -> None:
    first = register(sceneos_app, draft())
    again = register(sceneos_app, draft())
    assert not again.created and again.customer == first.customer
    with pytest.raises(Conflict) as conflict:
        register(sceneos_app, draft(name="Li Si"))
    assert conflict.value.details[0]["code"] == "exists_with_different_name"
    with pytest.raises(Conflict):
        register(sceneos_app, draft(phone_seq=2))


@pytest.mark.parametrize(
    ("id_number", "code"),
    [
        ("110105199003040011", "id_number_checksum"),
        ("11010519900304001", "id_number_length"),
        (with_check_digit("11010519901340001"), "id_number_component"),
        (with_check_digit("00000019900304001"), "id_number_component"),
    ],
)
def test_invalid_id_numbers_are_refused_with_a_field_error(sceneos_app, id_number: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        register(sceneos_app, CustomerDraft(name="X", id_number=id_number, phone=mobile(1)))
    assert {"field": "id_number", "code": code} == {k: error.value.details[0][k] for k in ("field", "code")}


def test_invalid_phones_are_refused(sceneos_app) -> None:
    for phone, code in [("12345", "phone_invalid"), ("01088886666", "phone_not_mobile"), ("not a phone", "phone_format")]:
        with pytest.raises(ValidationFailed) as error:
            register(sceneos_app, CustomerDraft(name="X", id_number=resident_id(date(1990, 1, 1)), phone=phone))
        assert error.value.details[0]["code"] == code, phone


def test_age_limits_follow_the_simulated_clock(make_sceneos, sim_clock) -> None:
    app = make_sceneos()
    today = app.tenant("bank").business_date()
    nearly_18 = date(today.year - 18, today.month, today.day) + timedelta(days=1)
    with pytest.raises(ValidationFailed, match="at least 18"):
        register(app, draft(birth=nearly_18))
    sim_clock.advance(days=1)
    assert register(app, draft(birth=nearly_18)).created


def test_bank_plugin_blacklist_refuses_with_its_reason(make_sceneos) -> None:
    app = make_sceneos({"tenants": {"bank": tenant_config(
        plugins=["example_bank"],
        plugin_config={"example_bank": {"blacklisted_phones": ["+8613800000001"]}},
    )}})
    with pytest.raises(Rejected) as refused:
        register(app, draft(phone_seq=1))
    assert refused.value.details == [{"code": "blacklisted_phone", "message": "the phone number is on the bank's blacklist"}]
    assert register(app, draft(phone_seq=2)).created


def test_region_policy(make_sceneos) -> None:
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=[]) | {"modules": {"party": {"allowed_provinces": ["44"]}}}}})
    with pytest.raises(ValidationFailed, match="region"):
        register(app, draft())
    assert register(app, draft(region_code="440305")).created


@given(birth=st.dates(min_value=date(1930, 1, 1), max_value=date(2007, 12, 31)), seq=st.integers(0, 498),
       female=st.booleans())
def test_any_generated_resident_id_round_trips(sceneos_app, birth: date, seq: int, female: bool) -> None:
    number = resident_id(birth, sequence=seq, female=female)
    result = register(sceneos_app, CustomerDraft(name="P", id_number=number, phone=mobile(seq)))
    assert result.customer.birth_date == birth
    assert result.customer.gender == ("female" if female else "male")


# --- HTTP ----------------------------------------------------------------------------------------


def test_http_register_lookup_and_problem_json(sceneos_app, http_client) -> None:
    client = http_client(sceneos_app)
    body = {"name": "Wang Wu", "id_number": resident_id(date(1985, 6, 7)), "phone": "138 0000 0007"}
    created = client.post("/v1/tenants/bank/party/customers", json=body, headers={"X-Request-ID": "req-1"})
    assert created.status_code == 201, created.text
    assert created.headers["X-Request-ID"] == "req-1"
    customer = created.json()
    assert customer["phone_masked"] == "+86138****0007"
    assert "id_number" not in customer

    replay = client.post("/v1/tenants/bank/party/customers", json=body)
    assert replay.status_code == 200 and replay.json() == customer

    fetched = client.get(f"/v1/tenants/bank/party/customers/{customer['customer_no']}")
    assert fetched.json() == customer
    looked_up = client.post("/v1/tenants/bank/party/customers/lookup", json={"id_number": body["id_number"]})
    assert looked_up.json()["customer_no"] == customer["customer_no"]

    bad = client.post("/v1/tenants/bank/party/customers", json=body | {"id_number": "110105198506070000"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    problem = bad.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"][0]["field"] == "id_number"
    assert problem["request_id"]

    missing_field = client.post("/v1/tenants/bank/party/customers", json={"name": "x"})
    assert missing_field.status_code == 422
    assert {e["field"] for e in missing_field.json()["errors"]} == {"id_number", "phone"}

    assert client.get("/v1/tenants/bank/party/customers/cus_nope").json()["code"] == "not_found"


def test_http_module_disabled_or_unknown_tenant_is_404(make_sceneos, http_client) -> None:
    app = make_sceneos({"tenants": {"bank": tenant_config(), "bare": tenant_config("Bare", modules=[])}})
    client = http_client(app)
    assert client.get("/v1/tenants/bare/party/customers/cus_x").status_code == 404
    unknown = client.get("/v1/tenants/nobody/party/customers/cus_x")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_health_and_openapi(sceneos_app, http_client) -> None:
    client = http_client(sceneos_app)
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["schema_current"] is True and health["tenants"] == ["bank"]
    spec = client.get("/openapi.json").json()
    assert "/v1/tenants/{tenant_id}/party/customers" in spec["paths"]


def test_request_logs_carry_request_and_tenant_ids_and_no_raw_identifiers(make_sceneos, http_client) -> None:
    import io
    import json

    import structlog

    from core.logging import configure_logging

    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        app = make_sceneos({"tenants": {"bank": tenant_config(plugins=["example_bank"])}})
        client = http_client(app)
        id_number = resident_id(date(1980, 1, 1))
        response = client.post("/v1/tenants/bank/party/customers", headers={"X-Request-ID": "req-42"},
                               json={"name": "Log Test", "id_number": id_number, "phone": "13912345678"})
        assert response.status_code == 201
    finally:
        structlog.reset_defaults()
        configure_logging("console", "WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    plugin_line = next(line for line in lines if line["event"] == "new customer")
    assert plugin_line["request_id"] == "req-42" and plugin_line["tenant_id"] == "bank"
    access = next(line for line in lines if line["event"] == "request")
    assert access["request_id"] == "req-42" and access["status"] == 201
    assert id_number not in stream.getvalue() and "13912345678" not in stream.getvalue()
