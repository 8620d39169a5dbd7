"""Decision records hold everything the decision was taken from, and replay to the same outcome."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from typing import Any

import cel
from hypothesis import given, settings
from hypothesis import strategies as st

from core.hookspecs import hookimpl
from middle.risk.expressions import compile_expression
from middle.risk.facts import sample_facts
from middle.risk.rules import CompiledRule, Rule, RuleSet
from middle.risk.settings import DEFAULT_WINDOWS
from tests.risk.support import (
    BOTH,
    GOOD_CONSENT,
    activate,
    decide,
    register,
    risk_config,
    risk_tenant,
    rule,
    with_risk,
)

RICH_RISK = {
    "velocity_windows": {"m10": 600, "h1": 3600, "h24": 86400},
    "blacklist": {"devices": ["dev-3"], "phones": ["13800000004"]},
    "rules": [
        rule("too_young", "applicant.age < 21", reason_code="age_below_minimum", priority=300),
        rule("staff", 'has(extra.staff) && extra.staff == true', action="approve", reason_code="staff", priority=200),
        rule("low_income", 'consented.income_band == "lt_3k"', action="review", reason_code="low_income"),
        rule("vip_flag", "extra.vip == true", action="approve", reason_code="vip", priority=10),  # errors unless given
        rule("device_burst", "velocity.device.m10.count >= 2", action="review", stage="anti_fraud",
             reason_code="device_velocity"),
        rule("cut_off", "score.value < 400", stage="post_score", reason_code="score_below_cut_off"),
        rule("thin_file", "profile.on_time_repayments == 0", action="adjust", stage="post_score",
             adjust={"line_factor_bps": 8000}),
        rule("big_ticket", "txn.amount_minor > 400000", action="review", flow="purchase", reason_code="large_purchase"),
        rule("merchant_burst", "velocity.merchant.h1.count > 3", flow="payment", stage="anti_fraud",
             reason_code="merchant_velocity"),
    ],
    "velocity_limits": [{"name": "spend", "flow": "purchase", "dimension": "customer", "window": "h24",
                         "max_amount_minor": 900_000, "action": "decline", "reason_code": "daily_spend"}],
    "challengers": [{"name": "strict", "flow": "activation", "share_percent": 50, "drop_rules": ["too_young"],
                     "rules": [rule("too_young_v2", "applicant.age < 23", reason_code="age_below_minimum", version=2)]}],
}


@BOTH
def test_a_record_holds_inputs_steps_hits_score_versions_and_timings(make_sceneos, events) -> None:
    app = make_sceneos({"tenants": {"bank": {**risk_config(RICH_RISK)["tenants"]["bank"], "plugins": ["events"]}}},
                       plugins={"events": events})
    customer = register(app)
    decision = activate(app, customer, device_id="dev-1", extra={"vip": False}, request_id="act-1")
    record = with_risk(app, lambda risk: risk.get_decision(decision.decision_no))
    assert record.outcome == decision.outcome == "approve"
    assert record.inputs["request"]["consented"] == GOOD_CONSENT and record.inputs["request"]["device_id"] == "dev-1"
    assert set(record.inputs["outputs"]) == {"applicant", "anti_fraud", "scorecard", "limit_pricing"}
    assert record.inputs["outputs"]["anti_fraud"]["velocity"]["device"]["m10"] == {"count": 0, "amount_minor": 0}
    score = record.inputs["score"]
    assert score["value"] == record.score and sum(score["points_by_feature"].values()) == score["value"]
    assert record.versions["scorecard"] == score["scorecard_version"] and record.versions["strategy"]
    assert record.versions["rule_set"] == record.rule_set_version and record.rule_set_version.startswith("rs_")
    assert {hit["name"] for hit in record.rule_hits} == {"thin_file"}
    assert record.facts["applicant"]["age"] == 35 and "id_number" not in record.facts["applicant"]
    assert all(step["elapsed_us"] >= 0 for step in record.steps) and record.elapsed_us > 0
    definition = with_risk(app, lambda risk: risk.rule_set_definition(record.rule_set_version))
    assert "too_young" in [r["name"] for r in definition["rules"]]
    # Published for products and partners: outcome and reasons, never the score.
    made = events.of_type("risk.decision.made")
    assert [event.payload["decision_no"] for event in made] == [decision.decision_no]
    assert "score" not in made[0].payload and made[0].payload["line_minor"] == decision.offer.line_minor
    # A retry with the same request id gets the same decision, and no second attempt is counted.
    again = activate(app, customer, device_id="dev-1", request_id="act-1")
    assert again.decision_no == decision.decision_no and not again.created
    assert len(with_risk(app, lambda risk: risk.decisions_for_customer(customer))) == 1




class CountingBureau:
    def __init__(self) -> None:
        self.asked = 0

    @hookimpl
    def sceneos_credit_fetch_bureau_report(self, tenant, profile):
        self.asked += 1
        return {"source": "counting_bureau", "checking_status": "none", "credit_history": "all_paid"}


def test_a_retry_is_answered_before_the_flow_runs_so_the_bureau_is_asked_once(make_sceneos) -> None:
    bureau = CountingBureau()
    app = make_sceneos(risk_config(bank=risk_tenant(plugins=["counting"])), plugins={"counting": bureau})
    customer = register(app)
    consented = {**GOOD_CONSENT, "bureau_authorized": True}
    first = activate(app, customer, request_id="act-b", consented=consented)
    again = activate(app, customer, request_id="act-b", consented=consented)
    assert again.decision_no == first.decision_no and not again.created
    assert bureau.asked == 1

@BOTH
def test_a_retry_racing_the_first_decision_gets_that_decision(make_sceneos) -> None:
    """The request id is claimed by the decision's insert (no lookup beforehand): a retry arriving
    while the first decision's transaction is still open waits for it and then answers with it."""
    app = make_sceneos(risk_config())
    customer = register(app)
    tenant = app.tenant("bank")
    answers: list[Any] = []

    def retry() -> None:
        answers.append(activate(app, customer, request_id="act-race", device_id="dev-2"))

    with tenant.unit_of_work() as uow:
        first = tenant.module("risk").container.service(uow=uow).decide(
            "activation", {"customer_no": customer, "consented": dict(GOOD_CONSENT), "request_id": "act-race",
                           "device_id": "dev-1"})
        thread = threading.Thread(target=retry)
        thread.start()
        time.sleep(0.3)  # the retry reaches its wait (PostgreSQL: the unique key; SQLite: the write lock)
    thread.join(timeout=30)
    [again] = answers
    assert first.created and not again.created and again.decision_no == first.decision_no
    records = with_risk(app, lambda risk: risk.decisions_for_customer(customer))
    assert [r.decision_no for r in records] == [first.decision_no]
    assert records[0].inputs["request"]["device_id"] == "dev-1"  # the first request's, not the retry's

def test_decisions_are_queryable_per_customer_newest_first(make_sceneos, sim_clock) -> None:
    app = make_sceneos(risk_config())
    first, second = register(app, sequence=1), register(app, sequence=2)
    activate(app, first)
    sim_clock.advance(minutes=5)
    decide(app, "purchase", customer_no=first, amount_minor=10_000, merchant_id="m")
    activate(app, second)
    records = with_risk(app, lambda risk: risk.decisions_for_customer(first))
    assert [r.flow for r in records] == ["purchase", "activation"]
    assert [r.flow for r in with_risk(app, lambda risk: risk.decisions_for_customer(first, flow="activation"))] == [
        "activation"]


def test_replay_with_current_rules_shows_what_a_rule_change_would_do(make_sceneos, database_url) -> None:
    before = make_sceneos(risk_config({"rules": [rule("too_young", "applicant.age < 21")]}))
    customer = register(before, born=date(2003, 6, 1))
    decision = activate(before, customer)
    assert decision.outcome == "approve"
    after = make_sceneos(risk_config({"rules": [rule("too_young", "applicant.age < 25", version=2)]}))
    recorded = with_risk(after, lambda risk: risk.replay(decision.decision_no))
    assert recorded.matches and recorded.replayed["outcome"] == "approve"
    what_if = with_risk(after, lambda risk: risk.replay(decision.decision_no, rules="current"))
    assert not what_if.matches and what_if.replayed["outcome"] == "decline"
    assert "outcome" in what_if.differences


# --- property: any recorded decision replays to the same outcome --------------------------------

CUSTOMERS = [  # (birth date, region, phone sequence): ages 20 to 46 at 2026-01-01, one blacklisted phone
    (date(2005, 6, 1), "110105", 1), (date(2003, 3, 3), "440305", 2), (date(1990, 5, 1), "110105", 3),
    (date(1980, 1, 1), "310101", 4), (date(1992, 12, 31), "440305", 5),
]
requests = st.fixed_dictionaries({
    "flow": st.sampled_from(["activation", "activation", "purchase", "payment"]),
    "customer": st.integers(0, len(CUSTOMERS) - 1),
    "device_id": st.sampled_from([None, "dev-1", "dev-2", "dev-3"]),
    "merchant_id": st.sampled_from(["m1", "m2"]),
    "amount_minor": st.integers(1, 1_000_000),
    "income_band": st.sampled_from([None, "lt_3k", "3k_5k", "10k_20k", "20k_plus"]),
    "occupation": st.sampled_from([None, "unskilled", "skilled", "management"]),
    "extra": st.sampled_from([{}, {"staff": True}, {"vip": True}, {"vip": False, "staff": False}]),
    "minutes_later": st.integers(0, 90),
})


@BOTH
def test_every_recorded_decision_replays_to_the_same_outcome(make_sceneos, sim_clock) -> None:
    app = make_sceneos(risk_config(RICH_RISK))
    customers = [register(app, born=born, region_code=region, sequence=i + 1, phone=phone)
                 for i, (born, region, phone) in enumerate(CUSTOMERS)]
    seen: set[str] = set()

    @settings(max_examples=20)
    @given(st.lists(requests, min_size=1, max_size=4))
    def property(batch: list[dict[str, Any]]) -> None:
        for item in batch:
            sim_clock.advance(minutes=item["minutes_later"])
            flow, common = item["flow"], {"device_id": item["device_id"], "extra": item["extra"]}
            if flow == "activation":
                consented = {k: item[k] for k in ("income_band", "occupation") if item[k] is not None}
                decision = activate(app, customers[item["customer"]], consented=consented, **common)
            elif flow == "purchase":
                decision = decide(app, flow, customer_no=customers[item["customer"]], amount_minor=item["amount_minor"],
                                  merchant_id=item["merchant_id"], **common)
            else:
                decision = decide(app, flow, amount_minor=item["amount_minor"], merchant_id=item["merchant_id"],
                                  payer_phone=f"1380000000{CUSTOMERS[item['customer']][2]}", **common)
            numbers = [decision.decision_no] + ([decision.challenger.decision_no] if decision.challenger else [])
            for number in numbers:
                result = with_risk(app, lambda risk, n=number: risk.replay(n))
                assert result.matches, (result.differences, result.original, result.replayed)
                seen.add(result.original["outcome"])

    property()
    assert seen >= {"approve", "decline"}


# The rules engine alone: random rules over random facts evaluate the same after the rule set and
# the facts went through JSON (what a record stores) — many examples, no database.
FIELDS = {"applicant.age": st.integers(0, 100), "txn.amount_minor": st.integers(0, 10**7),
          "velocity.customer.h1.count": st.integers(0, 20), "blacklist.any": st.booleans(),
          "applicant.region_code": st.sampled_from(["110105", "440305", "310101"])}
comparisons = st.sampled_from(list(FIELDS)).flatmap(lambda path: st.tuples(
    st.just(path),
    st.sampled_from(["==", "!="] if path in ("blacklist.any", "applicant.region_code") else ["<", "<=", ">", ">=", "==", "!="]),
    FIELDS[path]))


def render(term: tuple[str, str, Any]) -> str:
    return f"{term[0]} {term[1]} {json.dumps(term[2])}"


expressions = st.lists(st.tuples(comparisons, st.sampled_from(["&&", "||"])), min_size=1, max_size=3).map(
    lambda terms: " ".join(f"{render(t)} {op}" for t, op in terms[:-1]) + " " + render(terms[-1][0]))
rules = st.lists(st.builds(
    lambda i, expr, action, priority: Rule(name=f"r{i}", expression=expr, action=action, reason_code=f"code_{i}",
                                           priority=priority, flow="purchase", stage="anti_fraud",
                                           **({"action": "review"} if action == "adjust" else {})),
    st.integers(0, 10**6), expressions, st.sampled_from(["approve", "decline", "review"]), st.integers(-5, 5)),
    min_size=1, max_size=8, unique_by=lambda r: r.name)
fact_values = st.fixed_dictionaries({path: strategy for path, strategy in FIELDS.items()})


@settings(max_examples=200)
@given(rules, fact_values)
def test_random_rule_sets_evaluate_the_same_from_their_stored_form(rule_list: list[Rule], values: dict[str, Any]) -> None:
    live = RuleSet("purchase", "champion", [CompiledRule(r, compile_expression(r.expression), "test") for r in rule_list])
    facts = sample_facts("purchase", "anti_fraud", DEFAULT_WINDOWS)
    for path, value in values.items():
        node = facts
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    stored_facts = json.loads(json.dumps(facts))
    replayed = RuleSet.from_definition(json.loads(json.dumps(live.definition)))
    assert replayed.version == live.version
    first = live.evaluate("anti_fraud", cel.Context(facts))
    second = replayed.evaluate("anti_fraud", cel.Context(stored_facts))
    assert (first.verdict, first.reasons, [h.as_json() for h in first.hits]) == (
        second.verdict, second.reasons, [h.as_json() for h in second.hits])
