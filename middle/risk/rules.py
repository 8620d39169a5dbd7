"""Rules: declared in configuration or code, compiled once, evaluated per stage of a flow.

A rule is ``expression -> action`` with a reason code, a priority and a version, for one flow and
one of its stages. Within a stage every rule is evaluated and every hit recorded; the stage's
verdict is then:

* hits are taken by priority, highest first;
* an ``approve`` hit is a whitelist: it waives the decisive hits of *lower* priority in its stage;
* of the hits not waived, the most severe action wins: ``decline`` > ``review`` > ``approve``;
* ``adjust`` hits decide nothing; they change the activation offer (line factor, line cap, rate),
  in priority order, in the ``limit_pricing`` step;
* a rule that fails to evaluate counts as a hit of the rule set's ``on_rule_error`` action
  (``review`` by default) with reason code ``rule_error``, so an error never approves silently.

A rule set's version is a hash of its rules' definitions: the same rules give the same version on
every machine, and a decision record names the exact rules it was taken with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.settings import StrictModel
from middle.risk.expressions import CompiledExpression, EvaluationError, compile_expression
from middle.risk.facts import STAGES, FlowName

Action = Literal["approve", "decline", "review", "adjust"]
OnRuleError = Literal["review", "decline", "ignore"]
SEVERITY: dict[str, int] = {"decline": 3, "review": 2, "approve": 1}
RULE_ERROR_REASON = "rule_error"
NAME_PATTERN = r"^[a-z][a-z0-9_.:-]{0,79}$"
REASON_PATTERN = r"^[a-z][a-z0-9_.:-]{0,63}$"


class Adjustment(StrictModel):
    """How an ``adjust`` rule changes the activation offer. Set at least one field."""

    line_factor_bps: int | None = Field(default=None, ge=0, le=10_000, description="multiply the line by this/10000")
    line_cap_minor: int | None = Field(default=None, ge=0, description="cap the line at this")
    rate_add_bps: int | None = Field(default=None, ge=-10_000, le=10_000, description="add to the annual rate")

    @model_validator(mode="after")
    def _something(self) -> Adjustment:
        if self.line_factor_bps is None and self.line_cap_minor is None and self.rate_add_bps is None:
            raise ValueError("an adjustment sets line_factor_bps, line_cap_minor or rate_add_bps")
        return self


class Rule(StrictModel):
    """One rule, as written in configuration (``[[tenants.<id>.modules.risk.rules]]``) or in code.

    The expression's syntax is checked here; that its facts exist for its flow and stage is checked
    when the rule set is compiled (the velocity windows are configuration).
    """

    name: str = Field(pattern=NAME_PATTERN)
    expression: str
    action: Action
    reason_code: str = Field(pattern=REASON_PATTERN)
    priority: int = Field(default=100, ge=-1_000_000, le=1_000_000, description="higher is evaluated first")
    version: str = "1"
    flow: FlowName = "activation"
    stage: str = "pre_screen"
    description: str = ""
    adjust: Adjustment | None = None
    enabled: bool = True

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        compile_expression(value)  # ExpressionError is a ValueError: reported at this key
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.stage not in STAGES[self.flow]:
            raise ValueError(f"stage {self.stage!r} is not a stage of the {self.flow} flow ({', '.join(STAGES[self.flow])})")
        if self.action == "adjust":
            if self.adjust is None:
                raise ValueError("an adjust rule needs an adjust table (line_factor_bps, line_cap_minor, rate_add_bps)")
            if self.flow != "activation":
                raise ValueError("adjust rules change the activation offer; use them in the activation flow")
        elif self.adjust is not None:
            raise ValueError(f"a {self.action} rule takes no adjust table")
        return self


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    expression: CompiledExpression
    origin: str  # "config", "plugin:<name>", "velocity limit", "blacklist"


@dataclass
class RuleHit:
    """A rule that matched (or failed) in one stage."""

    name: str
    version: str
    stage: str
    action: str
    reason_code: str
    priority: int
    error: str | None = None
    waived: bool = False

    def as_json(self) -> dict[str, Any]:
        data = {"name": self.name, "version": self.version, "stage": self.stage, "action": self.action,
                "reason_code": self.reason_code, "priority": self.priority}
        if self.error is not None:
            data["error"] = self.error
        if self.waived:
            data["waived"] = True
        return data


@dataclass
class StageResult:
    stage: str
    hits: list[RuleHit]
    verdict: str | None
    reasons: list[str]
    adjustments: list[tuple[str, Adjustment]] = field(default_factory=list)
    evaluated: int = 0


class RuleSet:
    """The compiled rules of one flow and variant (``champion`` or a challenger's name)."""

    def __init__(self, flow: str, variant: str, rules: Iterable[CompiledRule], on_rule_error: OnRuleError = "review") -> None:
        self.flow = flow
        self.variant = variant
        self.on_rule_error: OnRuleError = on_rule_error
        ordered = sorted((r for r in rules if r.rule.enabled), key=lambda r: (-r.rule.priority, r.rule.name))
        names = [r.rule.name for r in ordered]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique within the {flow} flow: {', '.join(duplicates)}")
        self.rules: tuple[CompiledRule, ...] = tuple(ordered)
        self.by_stage: dict[str, tuple[CompiledRule, ...]] = {
            stage: tuple(r for r in ordered if r.rule.stage == stage) for stage in STAGES[flow]
        }
        # The fact sections each stage's rules refer to: only those are handed to CEL (converting
        # a section costs more than evaluating a rule).
        self.sections_by_stage: dict[str, frozenset[str]] = {
            stage: frozenset(name for r in rules for name in r.expression.names)
            for stage, rules in self.by_stage.items()
        }
        self.definition: dict[str, Any] = {
            "flow": flow,
            "variant": variant,
            "on_rule_error": on_rule_error,
            "rules": [dict(r.rule.model_dump(mode="json"), origin=r.origin) for r in ordered],
        }
        canonical = json.dumps({k: v for k, v in self.definition.items() if k != "variant"}, sort_keys=True,
                               separators=(",", ":"))
        self.version = "rs_" + hashlib.sha256(canonical.encode()).hexdigest()[:20]

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> RuleSet:
        """Rebuild a rule set from its stored definition (replay); the version must not change."""
        rules = []
        for data in definition["rules"]:
            data = dict(data)
            origin = data.pop("origin", "config")
            rule = Rule.model_validate(data)
            rules.append(CompiledRule(rule, compile_expression(rule.expression), origin))
        return cls(definition["flow"], definition["variant"], rules, definition.get("on_rule_error", "review"))

    def __len__(self) -> int:
        return len(self.rules)

    def evaluate(self, stage: str, context: Any) -> StageResult:
        """Evaluate every rule of ``stage`` against a CEL context of the facts (holding at least
        the sections in ``sections_by_stage[stage]``)."""
        hits: list[RuleHit] = []
        compiled = self.by_stage.get(stage, ())
        for item in compiled:
            rule = item.rule
            try:
                matched = item.expression.evaluate(context)
            except EvaluationError as exc:
                action = "none" if self.on_rule_error == "ignore" else self.on_rule_error
                hits.append(RuleHit(rule.name, rule.version, stage, action, RULE_ERROR_REASON, rule.priority,
                                    error=str(exc)[:300]))
                continue
            if matched:
                hits.append(RuleHit(rule.name, rule.version, stage, rule.action, rule.reason_code, rule.priority))
        return resolve_stage(stage, hits, {r.rule.name: r.rule for r in compiled}, evaluated=len(compiled))


def resolve_stage(stage: str, hits: list[RuleHit], rules: dict[str, Rule], *, evaluated: int) -> StageResult:
    """The stage's verdict from its hits (see the module docstring)."""
    hits.sort(key=lambda h: (-h.priority, -SEVERITY.get(h.action, 0), h.name))
    whitelist_priority: int | None = None
    for hit in hits:
        if hit.action not in SEVERITY:
            continue
        if whitelist_priority is not None and hit.priority < whitelist_priority:
            hit.waived = True
        elif hit.action == "approve" and whitelist_priority is None:
            whitelist_priority = hit.priority
    effective = [h for h in hits if h.action in SEVERITY and not h.waived]
    verdict = max((h.action for h in effective), key=SEVERITY.__getitem__, default=None)
    reasons: list[str] = []
    if verdict in ("decline", "review"):
        for hit in effective:
            if hit.action == verdict and hit.reason_code not in reasons:
                reasons.append(hit.reason_code)
    adjustments = [(h.name, adjustment) for h in hits if h.action == "adjust" and h.error is None
                   and (adjustment := rules[h.name].adjust) is not None]
    return StageResult(stage, hits, verdict, reasons, adjustments, evaluated)
