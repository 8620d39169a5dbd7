"""A tenant's compiled risk engine: its flows' steps, its rule sets, its challengers.

Built once per tenant (the container's singleton), at startup by the module's ``sceneos_startup``:
rules from configuration and from ``sceneos_risk_rules`` are compiled and checked then, and a bad
one stops startup naming its key or its plugin. Decisions only evaluate what is compiled here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.errors import ConfigError
from core.plugins import TenantHooks
from core.tenancy import Tenant, UnitOfWork
from middle.risk.expressions import ExpressionError, check_expression, compile_expression
from middle.risk.facts import FLOWS
from middle.risk.flows import FlowParams, Step
from middle.risk.models import BlacklistKind, RiskRuleSet
from middle.risk.rules import CompiledRule, Rule, RuleSet
from middle.risk.settings import ChallengerSpec, RiskSettings
from middle.risk.steps import default_steps

# Raised when the meaning of a record changes (step semantics, verdict resolution).
ENGINE_VERSION = "1"
BLACKLIST_PRIORITY = 1_000_000
# Rules a bank declares stay below the built-in blacklist rules, so no whitelist can waive those.
MAX_DECLARED_PRIORITY = 999_000
CHAMPION = "champion"
# Rule set versions a transaction stored itself (in ``session.info``): not yet known to commit.
_INSERTED_KEY = "risk.rule_sets_inserted"


@dataclass(frozen=True)
class Challenger:
    name: str
    share_bps: int
    rule_set: RuleSet


@dataclass(frozen=True)
class FlowDefinition:
    flow: str
    steps: tuple[Step, ...]
    champion: RuleSet
    challenger: Challenger | None

    def step(self, name: str) -> Step | None:
        return next((step for step in self.steps if step.name == name), None)


def challenger_bucket(tenant_id: str, flow: str, challenger: str, decision_key: str) -> int:
    """0-9999, the same for the same key on every machine (so a customer stays in one group)."""
    digest = hashlib.blake2b(f"{tenant_id}\x1f{flow}\x1f{challenger}\x1f{decision_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


class RiskEngine:
    """What a tenant's decisions evaluate; immutable once built."""

    def __init__(self, tenant: Tenant, settings: RiskSettings, hooks: TenantHooks) -> None:
        self.tenant = tenant
        self.settings = settings
        self.hooks = hooks
        self.params = FlowParams(max_reasons=settings.max_reasons)
        self.flows: dict[str, FlowDefinition] = {flow: self._build_flow(flow) for flow in FLOWS}
        self._stored_versions: set[str] = set()

    # --- building -----------------------------------------------------------------------------

    def _key(self, suffix: str) -> str:
        return f"tenants.{self.tenant.id}.modules.risk.{suffix}"

    def _compile(self, rule: Rule, origin: str, where: str) -> CompiledRule:
        if origin != "blacklist" and abs(rule.priority) > MAX_DECLARED_PRIORITY:
            raise ConfigError(f"rule {rule.name!r}: priority must be within ±{MAX_DECLARED_PRIORITY}", key=where)
        try:
            compiled = compile_expression(rule.expression)
            check_expression(compiled, rule.flow, rule.stage, self.settings.velocity_windows)
        except ExpressionError as exc:
            raise ConfigError(f"rule {rule.name!r}: {exc}", key=where) from None
        return CompiledRule(rule, compiled, origin)

    def _builtin_rules(self, flow: str) -> list[CompiledRule]:
        rules = []
        # ID number, then phone, then device: the order their reason codes are given in.
        for index, kind in enumerate(BlacklistKind):
            rule = Rule(name=f"blacklist.{kind.value}", expression=f"blacklist.{kind.value}",
                        action=self.settings.blacklist_action, reason_code=f"blacklisted_{kind.value}",
                        priority=BLACKLIST_PRIORITY - index, flow=flow, stage="anti_fraud",
                        description=f"the applicant's {kind.value.replace('_', ' ')} is blacklisted")
            rules.append(self._compile(rule, "blacklist", self._key("blacklist_action")))
        for index, limit in enumerate(self.settings.velocity_limits):
            if limit.flow == flow:
                rules.append(self._compile(limit.as_rule(), "velocity limit", self._key(f"velocity_limits[{index}]")))
        return rules

    def _plugin_rules(self, flow: str) -> list[CompiledRule]:
        rules = []
        for plugin_name, call in self.hooks.implementations("sceneos_risk_rules"):
            where = f"plugin {plugin_name}: sceneos_risk_rules"
            try:
                answered = call(tenant=self.tenant, flow=flow) or []
                for item in answered:
                    rule = item if isinstance(item, Rule) else Rule.model_validate(item)
                    if rule.flow == flow:
                        rules.append(self._compile(rule, f"plugin:{plugin_name}", where))
            except ValidationError as exc:
                error = exc.errors()[0]
                location = ".".join(str(part) for part in error["loc"])
                raise ConfigError(f"invalid rule: {location}: {error['msg']}", key=where) from None
        return rules

    def _build_flow(self, flow: str) -> FlowDefinition:
        builtin = self._builtin_rules(flow)
        configured = [self._compile(rule, "config", self._key(f"rules[{index}]"))
                      for index, rule in enumerate(self.settings.rules) if rule.flow == flow]
        declared = configured + self._plugin_rules(flow)
        try:
            champion = RuleSet(flow, CHAMPION, builtin + declared, self.settings.on_rule_error)
        except ValueError as exc:
            raise ConfigError(str(exc), key=self._key("rules")) from None
        challenger = None
        for index, spec in enumerate(self.settings.challengers):
            if spec.enabled and spec.flow == flow:
                challenger = self._build_challenger(spec, index, builtin, declared)
        return FlowDefinition(flow, self._build_steps(flow), champion, challenger)

    def _build_challenger(self, spec: ChallengerSpec, index: int, builtin: list[CompiledRule],
                          declared: list[CompiledRule]) -> Challenger:
        key = self._key(f"challengers[{index}]")
        known = {rule.rule.name for rule in declared}
        unknown = sorted(set(spec.drop_rules) - known)
        if unknown:
            raise ConfigError(f"drop_rules names rules the {spec.flow} flow does not have: {', '.join(unknown)}",
                              key=f"{key}.drop_rules")
        kept = [] if spec.replace_rules else [rule for rule in declared if rule.rule.name not in spec.drop_rules]
        own = [self._compile(rule, f"challenger:{spec.name}", f"{key}.rules[{position}]")
               for position, rule in enumerate(spec.rules)]
        try:
            rule_set = RuleSet(spec.flow, spec.name, builtin + kept + own, self.settings.on_rule_error)
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"{key}.rules") from None
        return Challenger(spec.name, spec.share_bps, rule_set)

    def _build_steps(self, flow: str) -> tuple[Step, ...]:
        steps: list[Any] = default_steps(flow)
        for plugin_name, call in self.hooks.implementations("sceneos_risk_flow_steps"):
            changed = call(tenant=self.tenant, flow=flow, steps=list(steps))
            if changed is None:
                continue
            for step in changed:
                if not isinstance(step, Step):
                    raise ConfigError(f"{step!r} is not a step (name, kind, external, gather, evaluate)",
                                      key=f"plugin {plugin_name}: sceneos_risk_flow_steps({flow})")
            steps = list(changed)
        names = [step.name for step in steps]
        if len(set(names)) != len(names):
            raise ConfigError(f"step names must be unique in the {flow} flow: {', '.join(names)}",
                              key="sceneos_risk_flow_steps")
        return tuple(steps)

    # --- using --------------------------------------------------------------------------------

    def flow(self, flow: str) -> FlowDefinition:
        return self.flows[flow]

    def rule_sets(self) -> list[RuleSet]:
        found = []
        for definition in self.flows.values():
            found.append(definition.champion)
            if definition.challenger is not None:
                found.append(definition.challenger.rule_set)
        return found

    def rule_set(self, flow: str, variant: str) -> RuleSet | None:
        definition = self.flows[flow]
        if variant == CHAMPION:
            return definition.champion
        if definition.challenger is not None and definition.challenger.name == variant:
            return definition.challenger.rule_set
        return None

    def challenger_for(self, flow: str, decision_key: str) -> Challenger | None:
        challenger = self.flows[flow].challenger
        if challenger is None or challenger.share_bps <= 0:
            return None
        bucket = challenger_bucket(self.tenant.id, flow, challenger.name, decision_key)
        return challenger if bucket < challenger.share_bps else None

    def store_rule_sets(self, uow: UnitOfWork, *, remember: bool) -> None:
        """Write every rule set not yet stored. ``remember`` only once the write is sure to commit."""
        for rule_set in self.rule_sets():
            self.ensure_stored(uow, rule_set, remember=remember)

    def ensure_stored(self, uow: UnitOfWork, rule_set: RuleSet, *, remember: bool = False) -> None:
        if rule_set.version in self._stored_versions:
            return
        session = uow.session
        exists = session.scalar(select(RiskRuleSet.id).where(RiskRuleSet.version == rule_set.version))
        inserted_here = session.info.setdefault(_INSERTED_KEY, set())
        if exists is not None and rule_set.version not in inserted_here:
            # Committed by some transaction (this one did not write it), and stored rule sets are
            # never deleted: this process need not look again. (A process built without ``start``
            # never had them marked and looked once per decision.)
            self._stored_versions.add(rule_set.version)
            return
        if exists is None:
            try:
                with session.begin_nested():
                    session.add(RiskRuleSet(version=rule_set.version, flow=rule_set.flow, variant=rule_set.variant,
                                            definition=rule_set.definition, created_at=uow.clock.now()))
                inserted_here.add(rule_set.version)
            except IntegrityError:  # stored concurrently by another worker: the same content
                pass
        if remember:
            self._stored_versions.add(rule_set.version)

    def mark_stored(self, versions: set[str]) -> None:
        self._stored_versions |= versions
