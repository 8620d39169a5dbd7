"""Anti-fraud: velocity in sliding windows per customer, device and merchant (tenant clock), and
per-tenant blacklists seeded from configuration and managed through the service."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from core.errors import ConfigError, ValidationFailed
from core.testing.harness import make_app
from infra.compute.service import JobRunner
from middle.risk.models import RiskVelocityEvent
from tests.risk.support import BOTH, activate, decide, register, risk_config, risk_tenant, with_risk

WINDOWS = {"velocity_windows": {"m10": 600, "h1": 3600, "h24": 86400}, "velocity_retention_days": 2}


def velocity_of(app, decision_no: str) -> dict:
    return with_risk(app, lambda risk: risk.get_decision(decision_no)).facts["velocity"]


@BOTH
def test_velocity_counts_prior_attempts_per_dimension_in_sliding_windows(make_sceneos, sim_clock) -> None:
    app = make_sceneos(risk_config(WINDOWS))
    alice, bob = register(app, sequence=1), register(app, sequence=2)
    pay = {"merchant_id": "coach_station"}
    decide(app, "payment", customer_no=alice, amount_minor=1_000, device_id="d1", **pay)
    sim_clock.advance(minutes=15)
    decide(app, "payment", customer_no=alice, amount_minor=2_000, device_id="d2", **pay)
    sim_clock.advance(minutes=5)
    decide(app, "payment", customer_no=bob, amount_minor=4_000, device_id="d1", **pay)
    decide(app, "purchase", customer_no=alice, amount_minor=8_000, device_id="d1", merchant_id="coach_station")
    last = decide(app, "payment", customer_no=alice, amount_minor=16_000, device_id="d1", **pay)
    velocity = velocity_of(app, last.decision_no)
    assert velocity["customer"] == {"m10": {"count": 1, "amount_minor": 2_000}, "h1": {"count": 2, "amount_minor": 3_000},
                                    "h24": {"count": 2, "amount_minor": 3_000}}
    assert velocity["device"]["m10"] == {"count": 1, "amount_minor": 4_000}  # bob's, 0 minutes ago
    assert velocity["device"]["h1"] == {"count": 2, "amount_minor": 5_000}
    assert velocity["merchant"]["h1"] == {"count": 3, "amount_minor": 7_000}  # payments only, not the purchase
    sim_clock.advance(hours=2)
    later = decide(app, "payment", amount_minor=100, device_id="d9", **pay)
    velocity = velocity_of(app, later.decision_no)
    assert velocity["merchant"]["h1"]["count"] == 0 and velocity["merchant"]["h24"]["count"] == 4
    assert velocity["customer"]["h24"]["count"] == 0 and velocity["device"]["h24"]["count"] == 0  # no key, no count


def test_velocity_limits_and_other_tenants_activity(make_sceneos) -> None:
    limit = {**WINDOWS, "velocity_limits": [{"name": "device", "flow": "activation", "dimension": "device",
                                             "window": "h24", "max_count": 2, "action": "decline",
                                             "reason_code": "device_velocity"}]}
    app = make_sceneos({"tenants": {"bank_a": risk_tenant(risk=limit), "bank_b": risk_tenant(risk=limit)}})
    people = [register(app, "bank_a", sequence=i) for i in (1, 2, 3)]
    outcomes = [activate(app, person, "bank_a", device_id="shared").outcome for person in people]
    assert outcomes == ["approve", "approve", "decline"]
    # Bank B sees none of Bank A's attempts.
    assert activate(app, register(app, "bank_b", sequence=1), "bank_b", device_id="shared").outcome == "approve"


def test_old_velocity_events_are_purged_by_the_batch_job(make_sceneos, sim_clock) -> None:
    app = make_sceneos(risk_config(WINDOWS))
    customer = register(app)
    decide(app, "payment", customer_no=customer, amount_minor=100, merchant_id="m")
    sim_clock.advance(days=3)
    decide(app, "payment", customer_no=customer, amount_minor=100, merchant_id="m")
    report = JobRunner(app).run("bank", "risk.purge_velocity_events", app.tenant("bank").business_date())
    assert report.status == "completed"
    with app.tenant("bank").unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(RiskVelocityEvent)) == 1


@BOTH
def test_blacklists_are_per_tenant_normalized_and_managed(make_sceneos) -> None:
    seeded = {"blacklist": {"id_numbers": [], "phones": ["139 0000 0000"], "devices": ["emu-1"]}}
    app = make_sceneos({"tenants": {"bank_a": risk_tenant(risk=seeded), "bank_b": risk_tenant()}})
    entries = with_risk(app, lambda risk: risk.blacklist.entries(), "bank_a")
    assert [(e.kind, e.value, e.source) for e in entries] == [("device", "emu-1", "config"),
                                                              ("phone", "+8613900000000", "config")]
    person_a = register(app, "bank_a", sequence=5)
    assert activate(app, person_a, "bank_a").outcome == "approve"
    id_number = _id_of(app, "bank_a", person_a)
    entry, created = with_risk(app, lambda risk: risk.blacklist.add(
        "id_number", f" {id_number} ", reason="fraud", source="operator:e1"), "bank_a")
    assert created and entry.value == id_number
    assert with_risk(app, lambda risk: risk.blacklist.add("id_number", entry.value, reason="again",
                                                          source="operator:e2"), "bank_a")[1] is False
    declined = activate(app, person_a, "bank_a", device_id="emu-1")
    assert declined.outcome == "decline"
    assert declined.reasons == ["blacklisted_id_number", "blacklisted_device"]
    facts = with_risk(app, lambda risk: risk.get_decision(declined.decision_no), "bank_a").facts["blacklist"]
    assert facts == {"id_number": True, "phone": False, "device": True, "any": True}
    # Bank B has its own (empty) list.
    person_b = register(app, "bank_b", sequence=5)
    assert activate(app, person_b, "bank_b", device_id="emu-1").outcome == "approve"
    assert with_risk(app, lambda risk: risk.blacklist.remove("device", " emu-1 ", operator="e1"), "bank_a")
    assert not with_risk(app, lambda risk: risk.blacklist.contains("device", "emu-1"), "bank_a")
    with pytest.raises(ValidationFailed):
        with_risk(app, lambda risk: risk.blacklist.add("phone", "12345", reason="x", source="operator:e1"), "bank_a")
    with pytest.raises(ValidationFailed):
        with_risk(app, lambda risk: risk.blacklist.add("email", "x@y", reason="x", source="operator:e1"), "bank_a")


def test_a_blacklist_may_refer_instead_of_decline_and_a_bad_seed_stops_startup(make_sceneos) -> None:
    app = make_sceneos(risk_config({"blacklist_action": "review", "blacklist": {"devices": ["emu-1"]}}))
    decision = activate(app, register(app), device_id="emu-1")
    assert decision.outcome == "review" and decision.reasons == ["blacklisted_device"]
    with pytest.raises(ConfigError, match=r"tenants\.bank\.modules\.risk\.blacklist.*'12345'"):
        make_app(risk_config({"blacklist": {"phones": ["12345"]}}))


def _id_of(app, tenant_id: str, customer_no: str) -> str:
    from middle.party.models import Customer

    with app.tenant(tenant_id).unit_of_work() as uow:
        return uow.session.scalars(select(Customer.id_number).where(Customer.customer_no == customer_no)).one()


def test_the_velocity_query_reads_only_the_longest_window(make_sceneos, sim_clock) -> None:
    app = make_sceneos(risk_config(WINDOWS))
    customer = register(app, born=date(1985, 1, 1))
    decide(app, "payment", customer_no=customer, amount_minor=100, merchant_id="m")
    sim_clock.advance(timedelta(days=1, seconds=1))
    last = decide(app, "payment", customer_no=customer, amount_minor=100, merchant_id="m")
    assert velocity_of(app, last.decision_no)["customer"]["h24"] == {"count": 0, "amount_minor": 0}
