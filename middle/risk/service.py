"""Risk decisions, their records and replays, blacklists and the review queue. No HTTP here.

Obtain a service per unit of work, like every module's::

    runtime = tenant.module("risk")
    with tenant.unit_of_work() as uow:
        risk = runtime.container.service(uow=uow)
        decision = risk.decide_activation(ActivationRequest(customer_no="cus_...", consented={...}))
        decision.outcome, decision.reasons, decision.offer      # "approve", [], OfferTerms(...)
        risk.replay(decision.decision_no).matches               # True
        risk.decisions_for_customer("cus_...")                  # newest first
        risk.blacklist.add("phone", "13900000000", reason="fraud ring", source="operator:e1001")
        risk.reviews.approve("rev_...", operator="e1001", note="income verified")

A decision runs the flow's steps (``middle.risk.steps``), records everything a replay needs in
``risk_decisions``, counts the attempt for velocity, opens a review case when referred, and
publishes ``risk.decision.made`` (outcome and reason codes only: partners may receive events and
never see the model). When the decision key falls in the flow's challenger share, the challenger's
rules decide too, from the same gathered facts; that decision is recorded, never applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.errors import NotFound
from core.logging import get_logger
from core.plugins import TenantHooks
from core.statements import run, tenant_bound
from core.tenancy import UnitOfWork
from middle.risk.blacklist import Blacklist
from middle.risk.engine import CHAMPION, ENGINE_VERSION, RiskEngine
from middle.risk.flows import FlowContext, FlowParams, FlowResult, ReplayError, Step, run_flow
from middle.risk.models import DecisionRole, Outcome, RiskDecision, RiskRuleSet
from middle.risk.review import ReviewQueue, new_number
from middle.risk.rules import RuleSet
from middle.risk.settings import RiskSettings
from middle.risk.sources import Identifiers, LiveFacts
from middle.risk.steps import default_steps
from middle.risk.velocity import record_event

log = get_logger("sceneos.risk")

ExtraFacts = dict[str, str | int | float | bool]
_ID = Field(default=None, max_length=128)


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Idempotency: the same request id in the same flow returns the decision already taken.
    request_id: str | None = _ID
    # Champion/challenger assignment hashes this (default: the customer number).
    decision_key: str | None = _ID
    partner_id: str | None = Field(default=None, max_length=64)
    scene: str | None = Field(default=None, max_length=32)
    product: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=32)
    device_id: str | None = _ID
    extra: ExtraFacts = Field(default_factory=dict, description="bank-specific facts, as extra.<key>")


class ActivationRequest(_Request):
    """A credit-line activation (journey 2): who, and what they consented to share."""

    customer_no: str = Field(min_length=1, max_length=32)
    # The credit module's ConsentedData fields (income_band, occupation, order_count_90d, ...).
    consented: dict[str, Any] = Field(default_factory=dict)


class AccountInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    line_minor: int = Field(ge=0)
    available_minor: int
    days_past_due: int = Field(default=0, ge=0)


class PurchaseRequest(_Request):
    """A credit purchase at authorization time."""

    customer_no: str = Field(min_length=1, max_length=32)
    amount_minor: int = Field(gt=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    merchant_id: str | None = _ID
    merchant_category: str | None = Field(default=None, max_length=32)
    terminal_id: str | None = _ID
    account: AccountInfo | None = None


class PaymentRequest(_Request):
    """A payment (e.g. a QR payment at a merchant); the payer may be unknown to the bank."""

    customer_no: str | None = Field(default=None, max_length=32)
    payer_phone: str | None = Field(default=None, max_length=24)
    amount_minor: int = Field(gt=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    merchant_id: str = Field(min_length=1, max_length=128)
    merchant_category: str | None = Field(default=None, max_length=32)
    terminal_id: str | None = _ID


REQUEST_MODELS: dict[str, type[_Request]] = {
    "activation": ActivationRequest,
    "purchase": PurchaseRequest,
    "payment": PaymentRequest,
}


@dataclass(frozen=True)
class OfferTerms:
    line_minor: int
    currency: str
    annual_rate_bps: int
    daily_rate: str
    fee_rate_bps: int
    score_band: str
    strategy_version: str

    @classmethod
    def of(cls, offer: dict[str, Any] | None) -> OfferTerms | None:
        if offer is None:
            return None
        return cls(
            offer["line_minor"],
            offer["currency"],
            offer["annual_rate_bps"],
            str(offer["daily_rate"]),
            offer["fee_rate_bps"],
            offer["score_band"],
            offer["strategy_version"],
        )


@dataclass(frozen=True)
class Decision:
    """The answer of a flow, as products see it."""

    decision_no: str
    flow: str
    outcome: str
    reasons: list[str]
    customer_no: str | None
    offer: OfferTerms | None
    decided_at: datetime
    review_case_no: str | None = None
    # The challenger's outcome when this decision was also shadowed (never applied).
    challenger: ShadowDecision | None = None
    # False when a retry with the same request id returned the decision already taken.
    created: bool = True

    @property
    def approved(self) -> bool:
        return self.outcome == Outcome.APPROVE


@dataclass(frozen=True)
class ShadowDecision:
    decision_no: str
    variant: str
    outcome: str
    reasons: list[str]


@dataclass(frozen=True)
class DecisionRecord:
    """A stored decision with everything it was taken from (bank-internal: holds the model's view)."""

    decision_no: str
    flow: str
    role: str
    variant: str
    champion_decision_no: str | None
    request_id: str | None
    decision_key: str
    customer_no: str | None
    outcome: str
    reasons: list[str]
    offer: OfferTerms | None
    score: float | None
    rule_set_version: str
    versions: dict[str, Any]
    inputs: dict[str, Any]
    steps: list[dict[str, Any]]
    rule_hits: list[dict[str, Any]]
    facts: dict[str, Any]
    elapsed_us: int
    decided_at: datetime

    @classmethod
    def of(cls, row: RiskDecision) -> DecisionRecord:
        return cls(
            decision_no=row.decision_no,
            flow=row.flow,
            role=row.role,
            variant=row.variant,
            champion_decision_no=row.champion_decision_no,
            request_id=row.request_id,
            decision_key=row.decision_key,
            customer_no=row.customer_no,
            outcome=row.outcome,
            reasons=list(row.reasons),
            offer=OfferTerms.of(row.inputs.get("offer")),
            score=row.score,
            rule_set_version=row.rule_set_version,
            versions=dict(row.versions),
            inputs=dict(row.inputs),
            steps=list(row.steps),
            rule_hits=list(row.rule_hits),
            facts=dict(row.facts),
            elapsed_us=row.elapsed_us,
            decided_at=row.decided_at,
        )


@dataclass(frozen=True)
class ReplayResult:
    decision_no: str
    rules: str  # "recorded" or "current"
    rule_set_version: str
    matches: bool
    original: dict[str, Any]
    replayed: dict[str, Any]
    differences: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedDecision:
    """What the rest of a decision needs of the row just written (a challenger, a review case)."""

    decision_no: str
    flow: str
    decision_key: str
    request_id: str | None
    customer_no: str | None
    reasons: list[str]
    line_minor: int | None
    decided_at: datetime


_INSERT_DECISION = tenant_bound(RiskDecision.__table__.insert())
# A champion's row: a retry of its request id that the lookup in ``decide`` could not see (a
# concurrent duplicate, or a caller that skipped the lookup) inserts nothing and returns no id, so
# the caller answers with the decision already made.
_IDEMPOTENT_KEY = ["tenant_id", "flow", "role", "request_id"]
_INSERT_CHAMPION = {
    "postgresql": tenant_bound(
        pg_insert(RiskDecision.__table__).on_conflict_do_nothing(index_elements=_IDEMPOTENT_KEY)
        .returning(RiskDecision.__table__.c.id)
    ),
    "sqlite": tenant_bound(
        sqlite_insert(RiskDecision.__table__).on_conflict_do_nothing(index_elements=_IDEMPOTENT_KEY)
        .returning(RiskDecision.__table__.c.id)
    ),
}


def comparable_of_row(row: RiskDecision) -> dict[str, Any]:
    offer = row.inputs.get("offer") or {}
    return {
        "outcome": row.outcome,
        "reasons": list(row.reasons),
        "line_minor": offer.get("line_minor"),
        "annual_rate_bps": offer.get("annual_rate_bps"),
        "fee_rate_bps": offer.get("fee_rate_bps"),
        "steps": [[step["name"], step["verdict"]] for step in row.steps],
        "rule_hits": list(row.rule_hits),
    }


class RiskService:
    """Risk operations for one tenant within one unit of work."""

    def __init__(
        self, uow: UnitOfWork, settings: RiskSettings, hooks: TenantHooks, engine: RiskEngine
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.tenant = uow.tenant
        self.settings = settings
        self.hooks = hooks
        self.engine = engine
        self.blacklist = Blacklist(uow)
        self.reviews = ReviewQueue(uow)

    # --- deciding -----------------------------------------------------------------------------

    def decide_activation(self, request: ActivationRequest) -> Decision:
        return self.decide("activation", request)

    def authorize_purchase(self, request: PurchaseRequest, *, request_id_unseen: bool = False) -> Decision:
        return self.decide("purchase", request, request_id_unseen=request_id_unseen)

    def screen_payment(self, request: PaymentRequest) -> Decision:
        return self.decide("payment", request)

    def decide(self, flow: str, request: _Request | dict[str, Any], *, request_id_unseen: bool = False) -> Decision:
        """Run ``flow`` for ``request``, record it, and return the champion's decision.

        A retry of ``request.request_id`` is answered with the decision already made, looked up
        before the flow runs (a flow may fetch a bureau report: a retry must not fetch it again).
        ``request_id_unseen``: the caller has just found, in this transaction and under its own
        lock, that it never asked with this id (credit pay's purchase id), so the lookup is skipped;
        either way the decision's insert claims the id (``ON CONFLICT DO NOTHING``), so a retry that
        races the first decision waits for it and gets it."""
        model = REQUEST_MODELS[flow]
        if not isinstance(request, model):
            request = model.model_validate(request if isinstance(request, dict) else request.model_dump())
        if request.request_id is not None and not request_id_unseen:
            existing = self._champion_by_request_id(flow, request.request_id)
            if existing is not None:
                return self._decision_of(existing, created=False)
        definition = self.engine.flow(flow)
        request_json = request.model_dump(mode="json")
        live = LiveFacts(self.uow, self.settings)
        ctx = FlowContext(flow, request_json, definition.champion, self.engine.params, live=live)
        result = run_flow(ctx, definition.steps)
        decision_no = new_number("dec_")
        customer_no = getattr(request, "customer_no", None)
        decision_key = request.decision_key or customer_no or request.request_id or decision_no
        row = self._record(
            result,
            ctx,
            decision_no=decision_no,
            role=DecisionRole.CHAMPION,
            decision_key=decision_key,
            request_id=request.request_id,
            customer_no=customer_no,
            decided_at=live.now,
        )
        if row is None:  # a retry of request_id: the decision made the first time is the answer
            existing = self._champion_by_request_id(flow, str(request.request_id))
            assert existing is not None, "the insert found a champion decision the read does not"
            return self._decision_of(existing, created=False)
        shadow = self._shadow(flow, ctx, result, row, live)
        identifiers: Identifiers = ctx.scratch.get("identifiers") or Identifiers()
        record_event(
            self.uow,
            kind=flow,
            customer_no=customer_no,
            device_id=identifiers.device,
            merchant_id=request_json.get("merchant_id"),
            amount_minor=request_json.get("amount_minor") or 0,
            outcome=result.outcome,
            decision_no=decision_no,
            occurred_at=live.now,
        )
        case_no = self.reviews.open(row) if result.outcome == Outcome.REVIEW else None
        offer = result.offer or {}
        self.uow.publish(
            "risk.decision.made",
            {
                "decision_no": decision_no,
                "flow": flow,
                "outcome": result.outcome,
                "reasons": result.reasons,
                "customer_no": customer_no,
                "request_id": request.request_id,
                "review_case_no": case_no,
                "line_minor": offer.get("line_minor"),
                "currency": offer.get("currency"),
                "annual_rate_bps": offer.get("annual_rate_bps"),
                "fee_rate_bps": offer.get("fee_rate_bps"),
            },
            subject=f"customer:{customer_no}" if customer_no else None,
        )
        return Decision(
            decision_no=decision_no,
            flow=flow,
            outcome=result.outcome,
            reasons=list(result.reasons),
            customer_no=customer_no,
            offer=OfferTerms.of(result.offer),
            decided_at=live.now,
            review_case_no=case_no,
            challenger=shadow,
        )

    def _shadow(
        self,
        flow: str,
        champion_ctx: FlowContext,
        champion: FlowResult,
        row: RecordedDecision,
        live: LiveFacts,
    ) -> ShadowDecision | None:
        challenger = self.engine.challenger_for(flow, row.decision_key)
        if challenger is None:
            return None
        ctx = FlowContext(flow, champion_ctx.request, challenger.rule_set, self.engine.params, live=live)
        ctx.scratch = dict(champion_ctx.scratch)
        try:
            with self.session.begin_nested():
                result = run_flow(ctx, self.engine.flow(flow).steps, recorded=champion.outputs())
                shadow_no = new_number("dec_")
                self._record(
                    result,
                    ctx,
                    decision_no=shadow_no,
                    role=DecisionRole.CHALLENGER,
                    decision_key=row.decision_key,
                    request_id=row.request_id,
                    customer_no=row.customer_no,
                    decided_at=row.decided_at,
                    champion_decision_no=row.decision_no,
                )
        except Exception as exc:  # a challenger must never cost the customer the champion's answer
            log.error(
                "challenger decision failed",
                tenant_id=self.tenant.id,
                flow=flow,
                challenger=challenger.name,
                decision_no=row.decision_no,
                error=f"{type(exc).__name__}: {exc}",
            )
            return None
        return ShadowDecision(shadow_no, challenger.name, result.outcome, list(result.reasons))

    def _record(
        self,
        result: FlowResult,
        ctx: FlowContext,
        *,
        decision_no: str,
        role: str,
        decision_key: str,
        request_id: str | None,
        customer_no: str | None,
        decided_at: datetime,
        champion_decision_no: str | None = None,
    ) -> RecordedDecision | None:
        """Write the decision's row: a Core insert on the session's connection, so the record is not
        an ORM object the unit of work must track and flush (it is never updated); the kernel's
        :func:`core.statements.run` stamps it with the unit of work's tenant. None (nothing
        written) for a champion whose request id already has one."""
        self.engine.ensure_stored(self.uow, ctx.rule_set)
        offer = result.offer
        score = result.score
        recorded = RecordedDecision(
            decision_no=decision_no,
            flow=result.flow,
            decision_key=decision_key,
            request_id=request_id,
            customer_no=customer_no,
            reasons=list(result.reasons),
            line_minor=offer["line_minor"] if offer else None,
            decided_at=decided_at,
        )
        idempotent = role == DecisionRole.CHAMPION and request_id is not None
        statement = _INSERT_CHAMPION[self.session.get_bind().dialect.name] if idempotent else _INSERT_DECISION
        written = run(
            self.uow,
            statement,
            {
                "decision_no": decision_no,
                "flow": result.flow,
                "role": str(role),
                "variant": result.variant,
                "champion_decision_no": champion_decision_no,
                "request_id": request_id,
                "decision_key": decision_key,
                "customer_no": customer_no,
                "outcome": result.outcome,
                "reasons": recorded.reasons,
                "line_minor": recorded.line_minor,
                "currency": offer["currency"] if offer else None,
                "annual_rate_bps": offer["annual_rate_bps"] if offer else None,
                "fee_rate_bps": offer["fee_rate_bps"] if offer else None,
                "score": score["value"] if score else None,
                "rule_set_version": result.rule_set_version,
                "versions": {
                    "engine": ENGINE_VERSION,
                    "rule_set": result.rule_set_version,
                    "scorecard": score["scorecard_version"] if score else None,
                    "strategy": offer["strategy_version"] if offer else None,
                },
                "inputs": {
                    "request": ctx.request,
                    "params": ctx.params.as_json(),
                    "plan": [step.name for step in self.engine.flow(result.flow).steps],
                    "outputs": result.outputs(),
                    "offer": offer,
                    "score": score,
                },
                "steps": [record.as_json() for record in result.steps],
                "rule_hits": result.rule_hits,
                "facts": result.facts,
                "elapsed_us": result.elapsed_us,
                "decided_at": decided_at,
            },
        )
        if idempotent and written.first() is None:
            return None
        return recorded

    # --- reading ------------------------------------------------------------------------------

    def get_decision(self, decision_no: str) -> DecisionRecord:
        return DecisionRecord.of(self._row(decision_no))

    def decisions_for_customer(
        self, customer_no: str, *, flow: str | None = None, include_challengers: bool = False, limit: int = 50
    ) -> list[DecisionRecord]:
        """The customer's decisions, newest first."""
        query = (
            select(RiskDecision)
            .where(RiskDecision.customer_no == customer_no)
            .order_by(RiskDecision.decided_at.desc(), RiskDecision.id.desc())
            .limit(min(limit, 1000))
        )
        if flow is not None:
            query = query.where(RiskDecision.flow == flow)
        if not include_challengers:
            query = query.where(RiskDecision.role == DecisionRole.CHAMPION)
        return [DecisionRecord.of(row) for row in self.session.scalars(query)]

    def challenger_decisions(self, decision_no: str) -> list[DecisionRecord]:
        query = (
            select(RiskDecision)
            .where(RiskDecision.champion_decision_no == decision_no)
            .order_by(RiskDecision.id)
        )
        return [DecisionRecord.of(row) for row in self.session.scalars(query)]

    def rule_set_definition(self, version: str) -> dict[str, Any]:
        row = self.session.scalars(select(RiskRuleSet).where(RiskRuleSet.version == version)).one_or_none()
        if row is None:
            raise NotFound(f"no rule set {version!r}")
        return dict(row.definition)

    # --- replaying ----------------------------------------------------------------------------

    def replay(self, decision_no: str, *, rules: Literal["recorded", "current"] = "recorded") -> ReplayResult:
        """Decide again from the record alone: the recorded request, gathered facts and (by default)
        the recorded rule set; nothing is read from the party registry, blacklist, velocity or
        credit. ``rules="current"`` evaluates today's rules on the same facts instead (what-if)."""
        row = self._row(decision_no)
        if rules == "recorded":
            rule_set = RuleSet.from_definition(self.rule_set_definition(row.rule_set_version))
            if rule_set.version != row.rule_set_version:
                raise ReplayError(f"rule set {row.rule_set_version} does not hash to its version any more")
        else:
            current = self.engine.rule_set(row.flow, row.variant) or self.engine.flow(row.flow).champion
            rule_set = current
        inputs = row.inputs
        steps = self._steps_for(row.flow, inputs["plan"])
        ctx = FlowContext(row.flow, inputs["request"], rule_set, FlowParams.from_json(inputs["params"]))
        original = comparable_of_row(row)
        try:
            replayed = run_flow(ctx, steps, recorded=inputs["outputs"], allow_live=False).comparable()
        except ReplayError as exc:
            if rules == "recorded":
                raise
            return ReplayResult(
                decision_no, rules, rule_set.version, False, original, {"error": str(exc)}, ["error"]
            )
        differences = [key for key in original if original[key] != replayed[key]]
        return ReplayResult(
            decision_no, rules, rule_set.version, not differences, original, replayed, differences
        )

    def _steps_for(self, flow: str, plan: list[str]) -> list[Step]:
        """The step objects a record ran, by name: the tenant's current flow, then the built-ins."""
        current = {step.name: step for step in self.engine.flow(flow).steps}
        builtin = {step.name: step for step in default_steps(flow)}
        steps = []
        for name in plan:
            step = current.get(name) or builtin.get(name)
            if step is None:
                raise ReplayError(
                    f"step {name!r} of the {flow} flow is not available (its plugin is not enabled)"
                )
            steps.append(step)
        return steps

    # --- inside -------------------------------------------------------------------------------

    def _row(self, decision_no: str) -> RiskDecision:
        row = self.session.scalars(
            select(RiskDecision).where(RiskDecision.decision_no == decision_no)
        ).one_or_none()
        if row is None:
            raise NotFound(f"no decision {decision_no!r}")
        return row

    def _champion_by_request_id(self, flow: str, request_id: str) -> RiskDecision | None:
        return self.session.scalars(
            select(RiskDecision).where(
                RiskDecision.flow == flow,
                RiskDecision.role == DecisionRole.CHAMPION,
                RiskDecision.request_id == request_id,
            )
        ).one_or_none()

    def _decision_of(self, row: RiskDecision, *, created: bool) -> Decision:
        case_no = None
        if row.outcome == Outcome.REVIEW:
            case_no = self.reviews.get(row.decision_no).case_no
        return Decision(
            decision_no=row.decision_no,
            flow=row.flow,
            outcome=row.outcome,
            reasons=list(row.reasons),
            customer_no=row.customer_no,
            offer=OfferTerms.of(row.inputs.get("offer")),
            decided_at=row.decided_at,
            review_case_no=case_no,
            created=created,
        )


__all__ = [
    "CHAMPION",
    "AccountInfo",
    "ActivationRequest",
    "Decision",
    "DecisionRecord",
    "OfferTerms",
    "PaymentRequest",
    "PurchaseRequest",
    "ReplayResult",
    "RiskService",
    "ShadowDecision",
]
