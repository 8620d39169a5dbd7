"""Journey 6: Bank A's plugin adds a local blacklist rule (and a stricter limit strategy) for
Bank A only; Bank B's decisions are unchanged."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from core.hookspecs import hookimpl
from middle.risk.blacklist import BlacklistEntrySpec
from middle.risk.rules import Rule
from tests.risk.support import BOTH, activate, decide, register, risk_tenant, with_risk


class BankALocalBlacklist:
    """Bank A's plugin: a local blacklist (a rule on the ID's region and a seeded device list) and a
    stricter limit strategy than the credit module's default."""

    @hookimpl
    def sceneos_risk_rules(self, tenant: Any, flow: str) -> list[Rule]:
        regions = tenant.plugin_config("bank_a_risk").get("blacklisted_regions", [])
        return [Rule(name="bank_a.local_blacklist", flow=flow, stage="pre_screen", action="decline",
                     expression=f"applicant.region_code in {list(regions)!r}".replace("'", '"'),
                     reason_code="local_blacklist", priority=900, version="2026.1")]

    @hookimpl
    def sceneos_risk_blacklist_entries(self) -> list[BlacklistEntrySpec]:
        return [BlacklistEntrySpec(kind="device", value="rooted-emulator-01", reason="bank A fraud ring")]

    @hookimpl
    def sceneos_credit_limit_strategy(self, band: Any) -> int:
        return min(band.max_line_minor, 200_000)


def banks() -> dict[str, Any]:
    return {"tenants": {
        "bank_a": risk_tenant("Bank A", plugins=["bank_a_risk"],
                              plugin_config={"bank_a_risk": {"blacklisted_regions": ["440305"]}}),
        "bank_b": risk_tenant("Bank B"),
    }}


def comparable(decision: Any) -> dict[str, Any]:
    return {"outcome": decision.outcome, "reasons": decision.reasons,
            "offer": asdict(decision.offer) if decision.offer else None}


@BOTH
def test_bank_a_plugin_changes_bank_a_only(make_sceneos) -> None:
    with_plugin = make_sceneos(banks(), plugins={"bank_a_risk": BankALocalBlacklist()})
    # The same people at both banks: one from the blacklisted district, one from Beijing.
    shenzhen = {tenant: register(with_plugin, tenant, region_code="440305", sequence=7) for tenant in ("bank_a", "bank_b")}
    beijing = {tenant: register(with_plugin, tenant, sequence=8) for tenant in ("bank_a", "bank_b")}

    declined = activate(with_plugin, shenzhen["bank_a"], "bank_a")
    assert declined.outcome == "decline" and declined.reasons == ["local_blacklist"]
    stricter = activate(with_plugin, beijing["bank_a"], "bank_a")
    assert stricter.outcome == "approve" and stricter.offer.line_minor == 200_000
    assert stricter.offer.strategy_version.startswith("limit=bank_a_risk;")
    on_device = activate(with_plugin, beijing["bank_a"], "bank_a", device_id="rooted-emulator-01")
    assert on_device.reasons == ["blacklisted_device"]

    at_b = [activate(with_plugin, shenzhen["bank_b"], "bank_b"), activate(with_plugin, beijing["bank_b"], "bank_b"),
            activate(with_plugin, beijing["bank_b"], "bank_b", device_id="rooted-emulator-01")]
    assert [d.outcome for d in at_b] == ["approve", "approve", "approve"]
    assert at_b[1].offer.line_minor > 200_000
    rules_at_b = with_risk(with_plugin, lambda risk: {r.rule.name for r in risk.engine.flow("activation").champion.rules},
                           "bank_b")
    assert "bank_a.local_blacklist" not in rules_at_b
    assert with_risk(with_plugin, lambda risk: risk.blacklist.entries(), "bank_b") == []

    # Bank B decides exactly as it does in a deployment without Bank A's plugin at all.
    alone = make_sceneos({"tenants": {"bank_b": risk_tenant("Bank B")}}, database_url="sqlite://")
    people = [register(alone, "bank_b", region_code="440305", sequence=7), register(alone, "bank_b", sequence=8)]
    without = [activate(alone, people[0], "bank_b"), activate(alone, people[1], "bank_b"),
               activate(alone, people[1], "bank_b", device_id="rooted-emulator-01")]
    assert [comparable(d) for d in at_b] == [comparable(d) for d in without]
    version = with_risk(with_plugin, lambda risk: risk.get_decision(at_b[0].decision_no).rule_set_version, "bank_b")
    assert version == with_risk(alone, lambda risk: risk.get_decision(without[0].decision_no).rule_set_version, "bank_b")

    # Bank A's rule applies in its other flows too, and only there.
    purchase = {"amount_minor": 10_000, "merchant_id": "m1"}
    assert decide(with_plugin, "purchase", "bank_a", customer_no=shenzhen["bank_a"], **purchase).reasons == [
        "local_blacklist"]
    assert decide(with_plugin, "purchase", "bank_b", customer_no=shenzhen["bank_b"], **purchase).outcome == "approve"
