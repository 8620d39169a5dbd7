"""Decision flows on real databases: activation (rules, anti-fraud, scorecard, limit and pricing),
purchase authorization and payment screening, and plugin steps."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from core.errors import NotFound, ValidationFailed
from core.hookspecs import hookimpl
from middle.risk.flows import FlowContext, StepVerdict
from tests.risk.support import BOTH, activate, decide, register, risk_config, risk_tenant, rule, with_risk


@BOTH
def test_activation_approves_with_a_line_and_a_price_from_the_credit_module(make_sceneos) -> None:
    app = make_sceneos(risk_config())
    customer = register(app)
    decision = activate(app, customer, device_id="phone-1", partner_id="travel_app", scene="travel")
    assert decision.outcome == "approve" and decision.reasons == []
    offer = decision.offer
    assert offer.line_minor > 0 and offer.currency == "CNY" and offer.annual_rate_bps > 0
    assert offer.strategy_version.startswith("limit=credit;")
    record = with_risk(app, lambda risk: risk.get_decision(decision.decision_no))
    assert [step["name"] for step in record.steps] == [
        "applicant", "pre_screen", "anti_fraud", "scorecard", "post_score", "limit_pricing"]
    # The same answer the credit module gives on its own: the flow adds no hidden change.
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        credit = tenant.module("credit").container.service(uow=uow)
        assessment = credit.assess(customer, record.inputs["request"]["consented"])
    assert assessment.offer.line_minor == offer.line_minor
    assert record.score == assessment.score.score


@BOTH
def test_a_pre_screen_decline_stops_the_flow_before_the_scorecard(make_sceneos) -> None:
    app = make_sceneos(risk_config({"rules": [rule("too_young", "applicant.age < 25", reason_code="age_below_minimum")]}))
    decision = activate(app, register(app, born=date(2004, 2, 1)))
    assert decision.outcome == "decline" and decision.reasons == ["age_below_minimum"] and decision.offer is None
    record = with_risk(app, lambda risk: risk.get_decision(decision.decision_no))
    assert [step["name"] for step in record.steps] == ["applicant", "pre_screen"]
    assert record.score is None and record.versions["scorecard"] is None


def test_score_cut_offs_decline_with_the_scorecards_principal_reasons(make_sceneos) -> None:
    app = make_sceneos(risk_config({"rules": [
        rule("cut_off", "score.value < 900", stage="post_score", reason_code="score_below_cut_off")]}))
    decision = activate(app, register(app))
    assert decision.outcome == "decline"
    assert decision.reasons[0] == "score_below_cut_off"
    assert 2 <= len(decision.reasons) <= 4  # the rule's reason, then the scorecard's principal reasons
    record = with_risk(app, lambda risk: risk.get_decision(decision.decision_no))
    assert decision.reasons[1:] == record.inputs["score"]["reasons"][: len(decision.reasons) - 1]


def test_no_offer_from_the_credit_module_declines(make_sceneos) -> None:
    app = make_sceneos(risk_config(bank=risk_tenant(credit={"min_line_minor": 4_000_000, "max_line_minor": 5_000_000})))
    decision = activate(app, register(app))
    assert decision.outcome == "decline" and decision.reasons[0] == "no_offer"


def test_review_rules_refer_but_still_propose_the_offer(make_sceneos) -> None:
    app = make_sceneos(risk_config({"rules": [
        rule("new_device", '!device.known', action="review", reason_code="no_device_fingerprint")]}))
    decision = activate(app, register(app))
    assert decision.outcome == "review" and decision.reasons == ["no_device_fingerprint"]
    assert decision.offer is not None and decision.review_case_no is not None


def test_adjust_rules_lower_the_line_and_raise_the_rate_within_the_credit_terms(make_sceneos) -> None:
    base = activate(first := make_sceneos(risk_config()), register(first)).offer
    app = make_sceneos(risk_config({"rules": [
        rule("thin_file", "profile.existing_credit_count == 0", action="adjust", stage="post_score",
             adjust={"line_factor_bps": 5_000, "rate_add_bps": 200}),
        rule("region_cap", 'applicant.province_code == "11"', action="adjust", priority=50,
             adjust={"line_cap_minor": 250_050}),
    ]}), database_url="sqlite://")
    decision = activate(app, register(app))
    assert decision.outcome == "approve"
    # Stage order (pre_screen's cap, then post_score's half), rounded down to the credit line step.
    assert decision.offer.line_minor == min(base.line_minor, 250_050) // 2 // 10_000 * 10_000
    assert decision.offer.annual_rate_bps == min(base.annual_rate_bps + 200, 2400)
    record = with_risk(app, lambda risk: risk.get_decision(decision.decision_no))
    assert record.steps[-1]["detail"]["adjusted_by"] == ["region_cap", "thin_file"]


def test_an_adjustment_below_the_minimum_line_declines(make_sceneos) -> None:
    app = make_sceneos(risk_config({"rules": [
        rule("tiny", "true", action="adjust", adjust={"line_cap_minor": 100})]}))
    decision = activate(app, register(app))
    assert decision.outcome == "decline" and decision.reasons[0] == "line_below_minimum"


def test_an_unknown_customer_or_bad_consented_data_is_an_error_not_a_decision(make_sceneos) -> None:
    app = make_sceneos(risk_config())
    with pytest.raises(NotFound):
        activate(app, "cus_nobody")
    with pytest.raises(ValidationFailed):
        activate(app, register(app), consented={"income_band": "10k_20k", "shoe_size": 42})
    assert with_risk(app, lambda risk: risk.decisions_for_customer("cus_nobody")) == []


@BOTH
def test_purchase_authorization_checks_amount_and_velocity(make_sceneos, sim_clock) -> None:
    app = make_sceneos(risk_config({
        "rules": [rule("large", "txn.amount_minor > 500000 && !account.provided", action="review", flow="purchase",
                       reason_code="large_purchase"),
                  rule("overdue", "account.days_past_due > 30", flow="purchase", reason_code="account_overdue")],
        "velocity_limits": [{"name": "spend", "flow": "purchase", "dimension": "customer", "window": "h24",
                             "max_amount_minor": 1_000_000, "action": "decline", "reason_code": "daily_spend"}],
    }))
    customer = register(app)
    purchase = {"customer_no": customer, "merchant_id": "air_ticketing"}
    assert decide(app, "purchase", amount_minor=186_000, **purchase).outcome == "approve"
    assert decide(app, "purchase", amount_minor=600_000, **purchase).reasons == ["large_purchase"]
    assert decide(app, "purchase", amount_minor=300_000, **purchase).reasons == ["daily_spend"]
    assert decide(app, "purchase", amount_minor=1_000, account={"line_minor": 500_000, "available_minor": 1_000,
                                                                  "days_past_due": 45}, **purchase).reasons == [
        "account_overdue"]
    sim_clock.advance(hours=25)
    assert decide(app, "purchase", amount_minor=300_000, **purchase).outcome == "approve"


@BOTH
def test_payment_screening_works_for_an_unknown_payer(make_sceneos) -> None:
    app = make_sceneos(risk_config({
        "blacklist": {"phones": ["13900000009"]},
        "rules": [rule("night_large", "request.local_hour < 6 && txn.amount_minor > 100000", action="review",
                       flow="payment", reason_code="night_payment")],
    }))
    payment = {"merchant_id": "coach_station", "terminal_id": "window_3", "channel": "qr"}
    # 2026-01-01T00:00Z is 08:00 in Shanghai.
    assert decide(app, "payment", amount_minor=12_650, payer_phone="13800000001", **payment).outcome == "approve"
    declined = decide(app, "payment", amount_minor=12_650, payer_phone="+86 139 0000 0009", **payment)
    assert declined.outcome == "decline" and declined.reasons == ["blacklisted_phone"]
    assert declined.customer_no is None


class DeviceReputationStep:
    """A bank's own step: asks its device-reputation table (here: plugin config) and may refer."""

    name = "device_reputation"
    kind = "anti_fraud"
    external = True

    def gather(self, ctx: FlowContext) -> dict[str, Any]:
        bad = ctx.live.tenant.plugin_config("device_checks").get("risky_devices", [])
        return {"risky": ctx.request.get("device_id") in bad}

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict:
        return StepVerdict("review", ["risky_device"]) if output["risky"] else StepVerdict()


class DeviceChecksPlugin:
    @hookimpl
    def sceneos_risk_flow_steps(self, flow: str, steps: list[Any]) -> list[Any] | None:
        if flow != "activation":
            return None
        position = [step.name for step in steps].index("anti_fraud") + 1
        return [*steps[:position], DeviceReputationStep(), *steps[position:]]


def test_a_plugin_adds_a_step_whose_output_is_recorded_and_replayed(make_sceneos) -> None:
    tenant = risk_tenant(plugins=["device_checks"], plugin_config={"device_checks": {"risky_devices": ["emu-7"]}})
    app = make_sceneos({"tenants": {"bank": tenant}}, plugins={"device_checks": DeviceChecksPlugin()})
    customer = register(app)
    decision = activate(app, customer, device_id="emu-7")
    assert decision.outcome == "review" and decision.reasons == ["risky_device"]
    record = with_risk(app, lambda risk: risk.get_decision(decision.decision_no))
    assert record.inputs["plan"][3] == "device_reputation"
    assert record.inputs["outputs"]["device_reputation"] == {"risky": True}
    assert with_risk(app, lambda risk: risk.replay(decision.decision_no)).matches
    assert activate(app, customer, device_id="pixel-9").outcome == "approve"
