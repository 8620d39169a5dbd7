"""Decision flows: a named sequence of step objects producing a decision.

A step is an object with a ``name``, a ``kind``, an ``external`` flag and two methods:

* ``gather(ctx) -> dict`` reads what the decision needs from outside the flow (the party
  registry, the blacklist, the velocity table, the credit module). It is called only in a live
  decision, and its output (JSON-native) is stored in the decision record;
* ``evaluate(ctx, output) -> StepVerdict`` is pure: it puts the output into the facts, evaluates
  rules, applies adjustments, and says ``decline``, ``review``, ``approve`` or nothing.

Because everything a step learned from outside is in the record, a replay runs the same steps with
the recorded outputs instead of ``gather`` and must reach the same outcome; a challenger runs with
the champion's outputs (reading live only for steps the champion never reached).

The flow stops at the first ``decline``. A ``review`` verdict lets it go on (so the reviewer sees
the proposed offer) and makes the outcome ``review`` unless a later step declines.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import cel

from middle.risk.models import Outcome
from middle.risk.rules import Adjustment, RuleHit, RuleSet

if TYPE_CHECKING:
    from middle.risk.service import LiveFacts


class ReplayError(RuntimeError):
    """A record cannot be replayed (a step it ran is not available, an output is missing)."""


@dataclass(frozen=True)
class FlowParams:
    """Parameters of the pure decision logic that are not rules; recorded with every decision."""

    max_reasons: int = 4

    def as_json(self) -> dict[str, Any]:
        return {"max_reasons": self.max_reasons}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowParams:
        return cls(max_reasons=int(data["max_reasons"]))


@dataclass
class StepVerdict:
    action: str | None = None  # "decline", "review", "approve" or None (no opinion)
    reasons: list[str] = field(default_factory=list)
    hits: list[RuleHit] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Step(Protocol):
    """One step of a flow. Built-in steps are in :mod:`middle.risk.steps`; plugins add their own."""

    name: str
    kind: str
    external: bool

    def gather(self, ctx: FlowContext) -> dict[str, Any]: ...

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict: ...


@dataclass
class StepRecord:
    name: str
    kind: str
    external: bool
    output: dict[str, Any] | None
    verdict: str | None
    reasons: list[str]
    hits: list[dict[str, Any]]
    detail: dict[str, Any]
    elapsed_us: int
    reused: bool = False

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "external": self.external, "verdict": self.verdict,
            "reasons": self.reasons, "hits": self.hits, "elapsed_us": self.elapsed_us,
        }
        # The external output is stored once, in the record's inputs ("outputs").
        if self.detail:
            data["detail"] = self.detail
        if self.reused:
            data["reused"] = True
        return data


class FlowContext:
    """The state of one run of a flow: request, facts so far, verdicts, score and offer."""

    def __init__(
        self,
        flow: str,
        request: dict[str, Any],
        rule_set: RuleSet,
        params: FlowParams,
        *,
        live: LiveFacts | None = None,
    ) -> None:
        self.flow = flow
        self.request = request
        self.rule_set = rule_set
        self.params = params
        # Live access to the outside world (None in a replay: steps must not gather then).
        self.live = live
        self.facts: dict[str, Any] = {}
        self._cel: Any = cel.Context()
        self._in_cel: set[str] = set()
        self.adjustments: list[tuple[str, Adjustment]] = []
        self.score: dict[str, Any] | None = None
        self.offer: dict[str, Any] | None = None
        self.records: list[StepRecord] = []
        self.declined: list[str] | None = None
        self.review_reasons: list[str] = []
        # Objects a later step of the same live run needs (e.g. the credit profile object).
        self.scratch: dict[str, Any] = {}

    def set_facts(self, section: str, value: Any) -> None:
        self.facts[section] = value
        if section in self._in_cel:
            self._cel.add_variable(section, value)

    def cel_context(self, sections: Iterable[str]) -> Any:
        """The CEL context holding (at least) ``sections`` of the facts, converted once each."""
        for section in sections:
            if section not in self._in_cel and section in self.facts:
                self._cel.add_variable(section, self.facts[section])
                self._in_cel.add(section)
        return self._cel

    @property
    def rule_hits(self) -> list[dict[str, Any]]:
        return [hit for record in self.records for hit in record.hits]


@dataclass
class FlowResult:
    flow: str
    variant: str
    outcome: str
    reasons: list[str]
    offer: dict[str, Any] | None
    score: dict[str, Any] | None
    steps: list[StepRecord]
    facts: dict[str, Any]
    rule_set_version: str
    elapsed_us: int

    @property
    def rule_hits(self) -> list[dict[str, Any]]:
        return [hit for record in self.steps for hit in record.hits]

    def outputs(self) -> dict[str, dict[str, Any]]:
        """The external steps' outputs by step name: what a replay or a challenger reuses."""
        return {record.name: record.output for record in self.steps if record.external and record.output is not None}

    def comparable(self) -> dict[str, Any]:
        """What must be equal between a decision and its replay."""
        offer = self.offer or {}
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "line_minor": offer.get("line_minor"),
            "annual_rate_bps": offer.get("annual_rate_bps"),
            "fee_rate_bps": offer.get("fee_rate_bps"),
            "steps": [[record.name, record.verdict] for record in self.steps],
            "rule_hits": self.rule_hits,
        }


def run_flow(
    ctx: FlowContext,
    steps: Sequence[Step],
    *,
    recorded: dict[str, dict[str, Any]] | None = None,
    allow_live: bool = True,
) -> FlowResult:
    """Run ``steps`` in order. An external step's output comes from ``recorded`` when it holds one
    (replay, challenger), else from ``step.gather`` if ``allow_live``, else it is a :class:`ReplayError`."""
    started = time.perf_counter_ns()
    for step in steps:
        step_started = time.perf_counter_ns()
        reused = False
        output: dict[str, Any] = {}
        if step.external:
            if recorded is not None and step.name in recorded:
                output, reused = recorded[step.name], True
            elif allow_live and ctx.live is not None:
                output = step.gather(ctx)
            else:
                raise ReplayError(f"the record holds no output of step {step.name!r}")
        verdict = step.evaluate(ctx, output)
        if verdict.action not in (None, "approve", "decline", "review"):
            raise ValueError(f"step {step.name!r} gave verdict {verdict.action!r}")
        ctx.records.append(StepRecord(
            name=step.name, kind=step.kind, external=step.external, output=output if step.external else None,
            verdict=verdict.action, reasons=list(verdict.reasons), hits=[hit.as_json() for hit in verdict.hits],
            detail=verdict.detail, elapsed_us=(time.perf_counter_ns() - step_started) // 1000, reused=reused,
        ))
        if verdict.action == Outcome.DECLINE:
            ctx.declined = list(verdict.reasons) or ["declined"]
            break
        if verdict.action == Outcome.REVIEW:
            ctx.review_reasons.extend(r for r in verdict.reasons if r not in ctx.review_reasons)
    return finish(ctx, elapsed_us=(time.perf_counter_ns() - started) // 1000)


def finish(ctx: FlowContext, *, elapsed_us: int) -> FlowResult:
    """The outcome from the steps' verdicts: decline if one declined, else review, else approve."""
    if ctx.declined is None and ctx.flow == "activation" and ctx.offer is None:
        # An activation approves a line or nothing: a flow without an offer cannot approve.
        ctx.declined = ["no_offer"]
    if ctx.declined is not None:
        outcome, reasons = Outcome.DECLINE, list(ctx.declined)
        for reason in (ctx.score or {}).get("reasons", []):
            if reason not in reasons:
                reasons.append(reason)
    elif ctx.review_reasons:
        outcome, reasons = Outcome.REVIEW, list(ctx.review_reasons)
    else:
        outcome, reasons = Outcome.APPROVE, []
    return FlowResult(
        flow=ctx.flow,
        variant=ctx.rule_set.variant,
        outcome=str(outcome),
        reasons=reasons[: ctx.params.max_reasons],
        offer=ctx.offer if outcome != Outcome.DECLINE else None,
        score=ctx.score,
        steps=ctx.records,
        facts=ctx.facts,
        rule_set_version=ctx.rule_set.version,
        elapsed_us=elapsed_us,
    )
