"""Champion/challenger: a configured share of decisions also runs the challenger's rules; the
challenger's decision is recorded, never applied; assignment is a deterministic hash of the key."""

from __future__ import annotations

from datetime import date

from middle.risk.engine import challenger_bucket
from tests.risk.support import BOTH, activate, decide, register, risk_config, rule, with_risk

STRICTER_AGE = {
    "rules": [rule("too_young", "applicant.age < 21", reason_code="age_below_minimum")],
    "challengers": [{"name": "older", "flow": "activation", "share_percent": 100, "drop_rules": ["too_young"],
                     "rules": [rule("too_young_v2", "applicant.age < 30", reason_code="age_below_minimum", version=2)]}],
}


def test_assignment_is_deterministic_and_close_to_the_share() -> None:
    keys = [f"cus_{i:05d}" for i in range(20_000)]
    buckets = [challenger_bucket("bank", "activation", "older", key) for key in keys]
    assert buckets == [challenger_bucket("bank", "activation", "older", key) for key in keys]
    share = sum(bucket < 1_000 for bucket in buckets) / len(keys)
    assert 0.09 < share < 0.11  # 10 %
    # Another challenger (or tenant) reshuffles, so one experiment's group does not bias the next.
    other = [challenger_bucket("bank", "activation", "newer", key) < 1_000 for key in keys]
    assert other != [bucket < 1_000 for bucket in buckets]


@BOTH
def test_the_challenger_decision_is_recorded_not_applied(make_sceneos, events) -> None:
    app = make_sceneos({"tenants": {"bank": {**risk_config(STRICTER_AGE)["tenants"]["bank"], "plugins": ["events"]}}},
                       plugins={"events": events})
    customer = register(app, born=date(2000, 3, 1))  # 25: approved by the champion, declined by the challenger
    decision = activate(app, customer)
    assert decision.outcome == "approve" and decision.offer is not None
    assert decision.challenger is not None
    assert (decision.challenger.variant, decision.challenger.outcome) == ("older", "decline")
    assert decision.challenger.reasons == ["age_below_minimum"]
    shadows = with_risk(app, lambda risk: risk.challenger_decisions(decision.decision_no))
    assert len(shadows) == 1
    shadow = shadows[0]
    assert (shadow.role, shadow.variant, shadow.champion_decision_no) == ("challenger", "older", decision.decision_no)
    assert shadow.rule_set_version != with_risk(app, lambda risk: risk.get_decision(decision.decision_no)).rule_set_version
    # The challenger decided from the champion's gathered facts, without reading them again.
    assert [(step["name"], step.get("reused")) for step in shadow.steps if step["external"]] == [("applicant", True)]
    assert with_risk(app, lambda risk: risk.replay(shadow.decision_no)).matches
    # Only the champion is applied: one event, one velocity attempt, not in the customer's list.
    assert [e.payload["decision_no"] for e in events.of_type("risk.decision.made")] == [decision.decision_no]
    assert [r.decision_no for r in with_risk(app, lambda risk: risk.decisions_for_customer(customer))] == [
        decision.decision_no]
    both = with_risk(app, lambda risk: risk.decisions_for_customer(customer, include_challengers=True))
    assert {r.role for r in both} == {"champion", "challenger"}


def test_a_challenger_that_gets_further_than_the_champion_reads_what_it_needs(make_sceneos) -> None:
    config = {
        "rules": [rule("too_young", "applicant.age < 30", reason_code="age_below_minimum")],
        "challengers": [{"name": "younger", "flow": "activation", "share_percent": 100, "drop_rules": ["too_young"]}],
    }
    app = make_sceneos(risk_config(config))
    decision = activate(app, register(app, born=date(2000, 3, 1)))
    assert decision.outcome == "decline" and decision.challenger.outcome == "approve"
    shadow = with_risk(app, lambda risk: risk.challenger_decisions(decision.decision_no))[0]
    assert [s["name"] for s in shadow.steps][-1] == "limit_pricing" and shadow.offer is not None
    assert with_risk(app, lambda risk: risk.replay(shadow.decision_no)).matches


def test_no_share_no_challenger_and_other_flows_are_untouched(make_sceneos) -> None:
    config = {**STRICTER_AGE, "challengers": [dict(STRICTER_AGE["challengers"][0], share_percent=0)]}
    app = make_sceneos(risk_config(config))
    customer = register(app, born=date(2000, 3, 1))
    assert activate(app, customer).challenger is None
    app = make_sceneos(risk_config(STRICTER_AGE), database_url="sqlite://")
    customer = register(app, born=date(2000, 3, 1))
    assert decide(app, "purchase", customer_no=customer, amount_minor=100, merchant_id="m").challenger is None


def test_the_share_splits_customers_by_their_key(make_sceneos) -> None:
    config = {**STRICTER_AGE, "challengers": [dict(STRICTER_AGE["challengers"][0], share_percent=50)]}
    app = make_sceneos(risk_config(config))
    customer = register(app)
    shadowed = [activate(app, customer, decision_key=f"app-{i}").challenger is not None for i in range(40)]
    assert 8 < sum(shadowed) < 32
    again = [activate(app, customer, decision_key=f"app-{i}").challenger is not None for i in range(40)]
    assert again == shadowed
