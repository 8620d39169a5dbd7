"""Settings of the risk module, under ``[tenants.<id>.modules.risk]``.

    [tenants.bank_a.modules.risk]
    velocity_windows = { m10 = 600, h1 = 3600, h24 = 86400 }

    [[tenants.bank_a.modules.risk.rules]]
    name = "too_young"
    flow = "activation"
    expression = "applicant.age < 20"
    action = "decline"
    reason_code = "age_below_minimum"
    priority = 200
    version = 2

    [[tenants.bank_a.modules.risk.velocity_limits]]
    name = "device_burst"
    flow = "activation"
    dimension = "device"
    window = "h24"
    max_count = 3
    action = "decline"
    reason_code = "device_velocity"

    [tenants.bank_a.modules.risk.blacklist]
    phones = ["+8613900000000"]

    [[tenants.bank_a.modules.risk.challengers]]
    name = "stricter_age"
    flow = "activation"
    share_percent = 10
    drop_rules = ["too_young"]
    [[tenants.bank_a.modules.risk.challengers.rules]]
    name = "too_young_v3"
    expression = "applicant.age < 22"
    action = "decline"
    reason_code = "age_below_minimum"

Every expression is compiled and checked against the facts of its flow and stage when the
settings are validated, so a bad one stops startup with a line naming its key.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.settings import ModuleSettings, StrictModel
from middle.risk.expressions import ExpressionError, check_expression, compile_expression
from middle.risk.facts import FLOWS, FlowName
from middle.risk.rules import NAME_PATTERN, REASON_PATTERN, OnRuleError, Rule

WINDOW_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
DEFAULT_WINDOWS = {"h1": 3600, "h24": 86400, "d7": 7 * 86400}


class VelocityLimit(StrictModel):
    """A sliding-window limit, compiled into an ``anti_fraud`` rule of its flow.

    It is hit when this attempt would make the count exceed ``max_count`` (``count + 1 >
    max_count``) or the amount exceed ``max_amount_minor`` (purchase and payment flows).
    """

    name: str = Field(pattern=NAME_PATTERN)
    flow: FlowName
    dimension: Literal["customer", "device", "merchant"]
    window: str
    max_count: int | None = Field(default=None, ge=0)
    max_amount_minor: int | None = Field(default=None, ge=0)
    action: Literal["decline", "review"] = "review"
    reason_code: str = Field(pattern=REASON_PATTERN)
    priority: int = Field(default=500, ge=-999_000, le=999_000)

    @model_validator(mode="after")
    def _limits(self) -> VelocityLimit:
        if self.max_count is None and self.max_amount_minor is None:
            raise ValueError("a velocity limit sets max_count or max_amount_minor")
        if self.max_amount_minor is not None and self.flow == "activation":
            raise ValueError("an activation has no amount: use max_count")
        return self

    def expression(self) -> str:
        path = f"velocity.{self.dimension}.{self.window}"
        terms = []
        if self.max_count is not None:
            terms.append(f"{path}.count + 1 > {self.max_count}")
        if self.max_amount_minor is not None:
            terms.append(f"{path}.amount_minor + txn.amount_minor > {self.max_amount_minor}")
        return " || ".join(terms)

    def as_rule(self) -> Rule:
        return Rule(
            name=f"velocity.{self.name}",
            expression=self.expression(),
            action=self.action,
            reason_code=self.reason_code,
            priority=self.priority,
            flow=self.flow,
            stage="anti_fraud",
            description=f"velocity limit {self.name}",
        )


class BlacklistSeed(StrictModel):
    """Identifiers put on the tenant's blacklist at startup (idempotently; source ``config``)."""

    id_numbers: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    reason: str = "configured"


class ChallengerSpec(StrictModel):
    """A challenger of one flow: ``share_percent`` of its decisions also run with these rules.

    The challenger's rules are the champion's (minus ``drop_rules``) plus ``rules``; with
    ``replace_rules`` they are ``rules`` alone (the blacklist and velocity limits still apply).
    Its decision is recorded beside the champion's and never applied.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    flow: FlowName
    share_percent: float = Field(ge=0, le=100)
    rules: list[Rule] = Field(default_factory=list)
    drop_rules: list[str] = Field(default_factory=list)
    replace_rules: bool = False
    enabled: bool = True

    @property
    def share_bps(self) -> int:
        return round(self.share_percent * 100)

    @model_validator(mode="before")
    @classmethod
    def _rules_inherit_flow(cls, data: object) -> object:
        # Rules written under a challenger belong to its flow unless they say so (then they must match).
        if isinstance(data, dict) and isinstance(data.get("rules"), list) and "flow" in data:
            data = dict(data)
            data["rules"] = [dict(rule, flow=rule.get("flow", data["flow"])) if isinstance(rule, dict) else rule
                             for rule in data["rules"]]
        return data

    @model_validator(mode="after")
    def _same_flow(self) -> ChallengerSpec:
        for rule in self.rules:
            if rule.flow != self.flow:
                raise ValueError(f"rule {rule.name!r} is for flow {rule.flow!r}, the challenger for {self.flow!r}")
        if self.name == "champion":
            raise ValueError("'champion' is the name of the applied variant")
        return self


class RiskSettings(ModuleSettings):
    velocity_windows: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_WINDOWS),
        description="sliding windows of the velocity facts: name -> seconds (velocity.<dimension>.<name>)",
    )
    rules: list[Rule] = Field(default_factory=list)
    on_rule_error: OnRuleError = "review"
    velocity_limits: list[VelocityLimit] = Field(default_factory=list)
    blacklist: BlacklistSeed = Field(default_factory=BlacklistSeed)
    # What a blacklisted ID number, phone or device does (an anti_fraud rule of every flow).
    blacklist_action: Literal["decline", "review"] = "decline"
    challengers: list[ChallengerSpec] = Field(default_factory=list)
    max_reasons: int = Field(default=4, ge=1, le=20, description="reason codes given with an outcome")
    velocity_retention_days: int = Field(default=31, ge=1, le=3660, description="velocity events older are purged")

    @field_validator("velocity_windows")
    @classmethod
    def _windows(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("at least one velocity window is needed")
        for name, seconds in value.items():
            if not WINDOW_NAME.match(name):
                raise ValueError(f"window name {name!r} must be a lower-case identifier such as 'h24' (not '24h')")
            if not 0 < seconds <= 3660 * 86400:
                raise ValueError(f"window {name!r} must be 1 second to 10 years, got {seconds}")
        return value

    @model_validator(mode="after")
    def _rules_fit_the_facts(self) -> RiskSettings:
        windows = self.velocity_windows
        longest_days = max(windows.values()) / 86400
        if self.velocity_retention_days < longest_days:
            raise ValueError(f"velocity_retention_days ({self.velocity_retention_days}) is shorter than the longest window")
        seen: dict[tuple[str, str], str] = {}

        def check(rule: Rule, key: str) -> None:
            try:
                check_expression(compile_expression(rule.expression), rule.flow, rule.stage, windows)
            except ExpressionError as exc:
                raise ValueError(f"{key}.expression (rule {rule.name!r}): {exc}") from None

        for index, rule in enumerate(self.rules):
            if (rule.flow, rule.name) in seen:
                raise ValueError(f"rules[{index}]: rule name {rule.name!r} is already used in the {rule.flow} flow")
            seen[(rule.flow, rule.name)] = f"rules[{index}]"
            check(rule, f"rules[{index}]")
        for index, limit in enumerate(self.velocity_limits):
            if limit.window not in windows:
                raise ValueError(
                    f"velocity_limits[{index}].window: {limit.window!r} is not a configured window ({', '.join(windows)})"
                )
        flows_with_challenger: set[str] = set()
        for index, challenger in enumerate(self.challengers):
            if challenger.enabled:
                if challenger.flow in flows_with_challenger:
                    raise ValueError(f"challengers[{index}]: the {challenger.flow} flow already has a challenger")
                flows_with_challenger.add(challenger.flow)
            for position, rule in enumerate(challenger.rules):
                check(rule, f"challengers[{index}].rules[{position}]")
        return self


__all__ = ["FLOWS", "BlacklistSeed", "ChallengerSpec", "RiskSettings", "VelocityLimit"]
