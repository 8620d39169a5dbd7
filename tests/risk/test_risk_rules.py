"""Rules: CEL expressions checked when compiled, verdicts by priority and severity, startup errors."""

from __future__ import annotations

import cel
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.testing.harness import make_app
from middle.risk.expressions import ExpressionError, check_expression, compile_expression
from middle.risk.facts import sample_facts
from middle.risk.rules import CompiledRule, Rule, RuleSet
from middle.risk.settings import DEFAULT_WINDOWS, RiskSettings
from tests.risk.support import risk_config, rule


def compiled(*rules: Rule, on_rule_error: str = "review", flow: str = "activation") -> RuleSet:
    return RuleSet(flow, "champion", [CompiledRule(r, compile_expression(r.expression), "test") for r in rules],
                   on_rule_error)  # type: ignore[arg-type]


def facts(**changes: object) -> object:
    data = sample_facts("activation", "post_score", DEFAULT_WINDOWS)
    for path, value in changes.items():
        section, key = path.split("__")
        data[section] = dict(data[section], **{key: value})
    return cel.Context(data)


@pytest.mark.parametrize(("expression", "message"), [
    ("applicant.age <", "not a valid CEL expression"),
    ("applicant.agee < 20", "applicant.agee: no such fact"),
    ("velocity.device.h1.count > 3", "does not have at stage 'pre_screen'"),
    ("score.value < 500", "known only from the post_score stage"),
    ("applicant.age + 1", "not true or false"),
    ("applicant.region_code.startz('44')", "Undefined variable or function"),
    ("nobody.age > 1", "Undefined variable"),
])
def test_a_bad_rule_is_refused_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        RiskSettings.model_validate({"rules": [rule("r", expression)]})
    assert message in str(info.value)


def test_velocity_paths_name_a_dimension_a_configured_window_and_a_measure() -> None:
    windows = {"m10": 600, "h24": 86400}
    check_expression(compile_expression("velocity.device.m10.count > 2"), "purchase", "anti_fraud", windows)
    for expression, message in [("velocity.phone.m10.count > 2", "no such dimension"),
                                ("velocity.device.h1.count > 2", "no such window"),
                                ("velocity.device.m10.total > 2", "use count or amount_minor")]:
        with pytest.raises(ExpressionError, match=message):
            check_expression(compile_expression(expression), "purchase", "anti_fraud", windows)


def test_strings_in_expressions_are_not_taken_for_fact_paths() -> None:
    check_expression(compile_expression('applicant.region_code != "applicant.nope"'), "activation", "pre_screen",
                     DEFAULT_WINDOWS)


def test_open_sections_accept_any_key_and_typed_ones_check_theirs() -> None:
    check_expression(compile_expression("has(extra.vip) && extra.vip == true"), "activation", "pre_screen", DEFAULT_WINDOWS)
    check_expression(compile_expression('consented.income_band == "lt_3k"'), "activation", "pre_screen", DEFAULT_WINDOWS)
    check_expression(compile_expression("profile.max_days_past_due > 30"), "activation", "post_score", DEFAULT_WINDOWS)
    with pytest.raises(ExpressionError, match=r"consented\.salary"):
        check_expression(compile_expression("consented.salary > 1"), "activation", "pre_screen", DEFAULT_WINDOWS)


def test_rule_fields_are_validated() -> None:
    with pytest.raises(ValidationError, match="not a stage of the payment flow"):
        Rule(name="x", expression="true", action="decline", reason_code="x", flow="payment", stage="post_score")
    with pytest.raises(ValidationError, match="needs an adjust table"):
        Rule(name="x", expression="true", action="adjust", reason_code="x")
    with pytest.raises(ValidationError, match="activation offer"):
        Rule(name="x", expression="true", action="adjust", reason_code="x", flow="purchase",
             adjust={"line_factor_bps": 5000})
    assert Rule(name="x", expression="true", action="decline", reason_code="x", version=3).version == "3"


def test_the_most_severe_hit_wins_and_reasons_follow_priority() -> None:
    rules = compiled(
        Rule(name="a", expression="applicant.age < 30", action="review", reason_code="young", priority=300),
        Rule(name="b", expression="applicant.age < 25", action="decline", reason_code="too_young", priority=100),
        Rule(name="c", expression="applicant.age < 40", action="decline", reason_code="age_band", priority=200),
    )
    result = rules.evaluate("pre_screen", facts(applicant__age=22))
    assert result.verdict == "decline"
    assert result.reasons == ["age_band", "too_young"]
    assert [hit.name for hit in result.hits] == ["a", "c", "b"]
    assert rules.evaluate("pre_screen", facts(applicant__age=50)).verdict is None


def test_an_approve_rule_waives_only_lower_priority_rules() -> None:
    rules = compiled(
        Rule(name="staff", expression='applicant.region_code == "110105"', action="approve", reason_code="staff",
             priority=500),
        Rule(name="young", expression="applicant.age < 25", action="decline", reason_code="too_young", priority=100),
        Rule(name="top", expression="applicant.age < 20", action="decline", reason_code="minor", priority=900),
    )
    result = rules.evaluate("pre_screen", facts(applicant__region_code="110105", applicant__age=22))
    assert result.verdict == "approve" and result.reasons == []
    assert [hit.name for hit in result.hits if hit.waived] == ["young"]
    result = rules.evaluate("pre_screen", facts(applicant__region_code="110105", applicant__age=18))
    assert result.verdict == "decline" and result.reasons == ["minor"]


def test_a_rule_that_fails_at_run_time_refers_by_default_and_can_decline_or_be_ignored() -> None:
    broken = Rule(name="vip", expression="extra.vip == true", action="approve", reason_code="vip")
    for on_error, verdict in (("review", "review"), ("decline", "decline"), ("ignore", None)):
        result = compiled(broken, on_rule_error=on_error).evaluate("pre_screen", facts())
        assert result.verdict == verdict
        assert result.hits[0].error and "KeyError" in result.hits[0].error
        if verdict:
            assert result.reasons == ["rule_error"]


def test_adjust_hits_are_collected_in_priority_order() -> None:
    rules = compiled(
        Rule(name="half", expression="true", action="adjust", reason_code="thin_file", priority=10,
             adjust={"line_factor_bps": 5000}),
        Rule(name="cap", expression="true", action="adjust", reason_code="new_customer", priority=20,
             adjust={"line_cap_minor": 100_000}),
    )
    result = rules.evaluate("pre_screen", facts())
    assert result.verdict is None
    assert [name for name, _ in result.adjustments] == ["cap", "half"]


def test_the_rule_set_version_is_a_hash_of_the_rules() -> None:
    one = Rule(name="a", expression="applicant.age < 20", action="decline", reason_code="x")
    assert compiled(one).version == compiled(one).version
    assert compiled(one).version != compiled(one.model_copy(update={"version": "2"})).version
    assert compiled(one).version != compiled(one, on_rule_error="decline").version
    again = RuleSet.from_definition(compiled(one).definition)
    assert again.version == compiled(one).version


def test_a_bad_expression_in_configuration_stops_startup_naming_the_key() -> None:
    config = risk_config({"rules": [rule("ok", "applicant.age < 18"), rule("bad", "applicant.age <<< 3")]})
    with pytest.raises(ConfigError) as info:
        make_app(config)
    assert "tenants.bank.modules.risk.rules[1].expression" in str(info.value)
    config = risk_config({"rules": [rule("typo", "applicant.agee < 18")]})
    with pytest.raises(ConfigError) as info:
        make_app(config)
    assert "tenants.bank.modules.risk" in str(info.value) and "rules[0].expression (rule 'typo')" in str(info.value)


class BadRulePlugin:
    @hookimpl
    def sceneos_risk_rules(self, flow: str) -> list[Rule]:
        return [Rule(name="bad", expression="velocity.customer.h1.count > 1", action="decline", reason_code="x",
                     flow="purchase")] if flow == "purchase" else []


def test_a_bad_rule_from_a_plugin_stops_startup_naming_the_plugin() -> None:
    config = risk_config(bank={"name": "Bank", "plugins": ["bad_rules"], "modules": {"party": {}, "credit": {}, "risk": {}}})
    with pytest.raises(ConfigError) as info:
        make_app(config, plugins={"bad_rules": BadRulePlugin()})
    message = str(info.value)
    assert "plugin bad_rules" in message and "rule 'bad'" in message and "stage 'pre_screen'" in message


def test_duplicate_names_unknown_dropped_rules_and_blacklist_priorities_are_refused() -> None:
    with pytest.raises(ConfigError, match="priority must be within"):
        make_app(risk_config({"rules": [rule("first", "true", action="approve", priority=1_000_000)]}))
    with pytest.raises(ConfigError, match="already used"):
        make_app(risk_config({"rules": [rule("a", "true"), rule("a", "false")]}))
    with pytest.raises(ConfigError, match="drop_rules names rules"):
        make_app(risk_config({"challengers": [{"name": "c", "flow": "activation", "share_percent": 10,
                                               "drop_rules": ["nope"]}]}))
