"""The built-in steps of the decision flows (see :mod:`middle.risk.flows` for the step contract).

============== ========= ===================================================================
step           external  what it does
============== ========= ===================================================================
applicant      yes       request, applicant (party registry), device, consented / txn / account,
                         extra facts
pre_screen     no        rules of stage ``pre_screen`` (eligibility)
anti_fraud     yes       blacklist hits and velocity counts, then rules of stage ``anti_fraud``
                         (the blacklist and velocity limits are rules of this stage)
scorecard      yes       the credit module's profile and score (activation)
post_score     no        rules of stage ``post_score`` (cut-offs, adjustments on the score)
limit_pricing  yes       the credit module's offer, then the ``adjust`` rules' changes
============== ========= ===================================================================
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from core.errors import ValidationFailed
from middle.credit.service import ConsentedData, CreditProfile, Reason, ScoreResult
from middle.risk.blacklist import normalize
from middle.risk.facts import AccountFacts, RequestFacts, TransactionFacts
from middle.risk.flows import FlowContext, Step, StepVerdict
from middle.risk.models import BlacklistKind
from middle.risk.sources import Identifiers

NO_OFFER = "no_offer"
LINE_BELOW_MINIMUM = "line_below_minimum"


class RulesStep:
    """Evaluates the rule set's rules of one stage."""

    kind = "rules"
    external = False

    def __init__(self, stage: str) -> None:
        self.name = stage
        self.stage = stage

    def gather(self, ctx: FlowContext) -> dict[str, Any]:
        return {}

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict:
        return evaluate_stage(ctx, self.stage)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stage!r})"


def evaluate_stage(ctx: FlowContext, stage: str) -> StepVerdict:
    result = ctx.rule_set.evaluate(stage, ctx.cel_context(ctx.rule_set.sections_by_stage.get(stage, ())))
    ctx.adjustments.extend(result.adjustments)
    return StepVerdict(result.verdict, result.reasons, result.hits, {"rules_evaluated": result.evaluated})


class ApplicantStep:
    """Facts about the request, the applicant and what the caller sent."""

    name = "applicant"
    kind = "facts"
    external = True

    def gather(self, ctx: FlowContext) -> dict[str, Any]:
        assert ctx.live is not None
        request, flow, live = ctx.request, ctx.flow, ctx.live
        local = live.now.astimezone(ZoneInfo(live.tenant.timezone))
        sections: dict[str, Any] = {
            "request": RequestFacts(
                flow=flow,
                partner_id=request.get("partner_id") or "",
                scene=request.get("scene") or "",
                product=request.get("product") or "",
                channel=request.get("channel") or "",
                local_hour=local.hour,
                weekday=local.isoweekday(),
                business_date=local.date().isoformat(),
            ).model_dump(mode="json"),
        }
        device_id = request.get("device_id")
        if flow == "activation":
            consented = validated_consent(request.get("consented") or {})
            device_id = device_id or consented.device_id
            sections["consented"] = consented.model_dump(mode="json")
        customer_no = request.get("customer_no")
        if customer_no:
            sections["applicant"], identifiers, ctx.scratch["customer"] = live.applicant(customer_no)
        else:
            phone = request.get("payer_phone")
            identifiers = Identifiers(phone=normalize(BlacklistKind.PHONE, phone) if phone else None)
            sections["applicant"] = {
                "known": False,
                "customer_no": "",
                "age": 0,
                "gender": "",
                "region_code": "",
                "province_code": "",
                "phone_prefix": "",
                "customer_since_days": 0,
            }
        ctx.scratch["identifiers"] = Identifiers(identifiers.id_number, identifiers.phone, device_id or None)
        sections["device"] = {"known": bool(device_id), "id": device_id or ""}
        if flow in ("purchase", "payment"):
            sections["txn"] = TransactionFacts(
                amount_minor=request["amount_minor"],
                currency=request.get("currency") or live.tenant.currency,
                merchant_id=request.get("merchant_id") or "",
                merchant_category=request.get("merchant_category") or "",
                terminal_id=request.get("terminal_id") or "",
            ).model_dump(mode="json")
        if flow == "purchase":
            account = request.get("account")
            sections["account"] = (
                AccountFacts(provided=True, **account) if account else AccountFacts()
            ).model_dump(mode="json")
        sections["extra"] = dict(request.get("extra") or {})
        return {"sections": sections}

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict:
        for section, value in output["sections"].items():
            ctx.set_facts(section, value)
        return StepVerdict()


class AntiFraudStep:
    """Blacklist hits and velocity counts, then the ``anti_fraud`` rules over them."""

    name = "anti_fraud"
    kind = "anti_fraud"
    external = True

    def gather(self, ctx: FlowContext) -> dict[str, Any]:
        assert ctx.live is not None
        identifiers: Identifiers = ctx.scratch.get("identifiers") or Identifiers()
        keys = {
            "customer": ctx.request.get("customer_no"),
            "device": identifiers.device,
            "merchant": ctx.request.get("merchant_id"),
        }
        return {
            "blacklist": ctx.live.blacklist_hits(identifiers),
            "velocity": ctx.live.velocity(ctx.flow, keys),
        }

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict:
        ctx.set_facts("blacklist", output["blacklist"])
        ctx.set_facts("velocity", output["velocity"])
        return evaluate_stage(ctx, "anti_fraud")


class ScorecardStep:
    """The credit module's profile of the applicant and its score."""

    name = "scorecard"
    kind = "scorecard"
    external = True

    def gather(self, ctx: FlowContext) -> dict[str, Any]:
        assert ctx.live is not None
        credit = ctx.live.credit()
        # The party row the applicant step read: the credit module need not read it again.
        profile = credit.build_profile(
            ctx.request["customer_no"], ctx.facts["consented"], customer=ctx.scratch.get("customer")
        )
        score = credit.score(profile)
        band = credit.band_for(score.score)
        ctx.scratch["credit_profile"], ctx.scratch["credit_score"] = profile, score
        return {
            "profile": profile.model_dump(mode="json"),
            "score": score_json(score, band.name if band else ""),
        }

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict:
        score = output["score"]
        ctx.score = score
        ctx.set_facts(
            "score",
            {"value": score["value"], "band": score["band"], "scorecard_version": score["scorecard_version"]},
        )
        ctx.set_facts("profile", output["profile"])
        return StepVerdict(detail={"score": score["value"], "band": score["band"]})


def score_json(score: ScoreResult, band: str) -> dict[str, Any]:
    return {
        "value": score.score,
        "band": band,
        "points_by_feature": dict(score.points_by_feature),
        "bins_by_feature": dict(score.bins_by_feature),
        "reasons": [reason.code for reason in score.reasons],
        "reason_messages": [reason.message for reason in score.reasons],
        "scorecard_version": score.scorecard_version,
        "probability_of_default": str(score.probability_of_default),
    }


def score_result(data: dict[str, Any]) -> ScoreResult:
    """The credit module's ScoreResult back from its recorded form (a challenger pricing live)."""
    return ScoreResult(
        score=data["value"],
        points_by_feature=data["points_by_feature"],
        bins_by_feature=data["bins_by_feature"],
        reasons=[
            Reason(code, message)
            for code, message in zip(data["reasons"], data["reason_messages"], strict=True)
        ],
        scorecard_version=data["scorecard_version"],
        probability_of_default=data["probability_of_default"],
    )


class LimitPricingStep:
    """The credit module's offer (limit and pricing strategies), then the ``adjust`` rules' changes.

    Adjustments only ever lower the line (factor, cap) or move the rate; the result still honours
    the credit settings recorded with the offer: the line is rounded down to ``line_step_minor``
    and must reach ``min_line_minor``; rate plus fee stay under ``annual_rate_ceiling_bps``.
    """

    name = "limit_pricing"
    kind = "limit_pricing"
    external = True

    def gather(self, ctx: FlowContext) -> dict[str, Any]:
        assert ctx.live is not None and ctx.score is not None
        credit = ctx.live.credit()
        profile = ctx.scratch.get("credit_profile") or CreditProfile.model_validate(ctx.facts["profile"])
        score = ctx.scratch.get("credit_score") or score_result(ctx.score)
        offer = credit.offer(profile, score)
        settings = credit.settings
        return {
            "offer": offer.model_dump(mode="json") if offer is not None else None,
            "terms": {
                "line_step_minor": settings.line_step_minor,
                "min_line_minor": settings.min_line_minor,
                "annual_rate_ceiling_bps": settings.annual_rate_ceiling_bps,
                "days_in_year": settings.days_in_year,
            },
        }

    def evaluate(self, ctx: FlowContext, output: dict[str, Any]) -> StepVerdict:
        base = output["offer"]
        if base is None:
            return StepVerdict("decline", [NO_OFFER])
        offer = dict(base)
        if ctx.adjustments:
            offer = adjust_offer(offer, ctx.adjustments, output["terms"])
            if offer is None:
                return StepVerdict(
                    "decline", [LINE_BELOW_MINIMUM], detail={"adjusted_by": [n for n, _ in ctx.adjustments]}
                )
        ctx.offer = offer
        return StepVerdict(
            detail={"line_minor": offer["line_minor"], "adjusted_by": offer.get("adjusted_by", [])}
        )


def adjust_offer(
    offer: dict[str, Any], adjustments: list[tuple[str, Any]], terms: dict[str, Any]
) -> dict[str, Any] | None:
    from middle.credit.service import daily_rate_of

    line, rate, fee = offer["line_minor"], offer["annual_rate_bps"], offer["fee_rate_bps"]
    for _name, adjustment in adjustments:
        if adjustment.line_factor_bps is not None:
            line = line * adjustment.line_factor_bps // 10_000
        if adjustment.line_cap_minor is not None:
            line = min(line, adjustment.line_cap_minor)
        if adjustment.rate_add_bps is not None:
            rate = max(rate + adjustment.rate_add_bps, 0)
    line -= line % terms["line_step_minor"]
    if line <= 0 or line < terms["min_line_minor"]:
        return None
    ceiling = terms["annual_rate_ceiling_bps"]
    rate = min(rate, ceiling)
    fee = min(fee, ceiling - rate)
    assert 0 < line <= offer["line_minor"] and rate + fee <= ceiling
    return dict(
        offer,
        line_minor=line,
        annual_rate_bps=rate,
        fee_rate_bps=fee,
        daily_rate=str(daily_rate_of(rate, terms["days_in_year"])),
        adjusted_by=[name for name, _ in adjustments],
    )


def validated_consent(data: dict[str, Any]) -> ConsentedData:
    """The consented data as the credit module defines it; ValidationFailed naming each bad field."""
    try:
        return ConsentedData.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(["consented", *(str(part) for part in error["loc"])]),
                "code": error["type"],
                "message": error["msg"],
            }
            for error in exc.errors()
        ]
        raise ValidationFailed(
            "; ".join(f"{d['field']}: {d['message']}" for d in details), details=details
        ) from None


def default_steps(flow: str) -> list[Step]:
    """The steps of a flow before plugins change them (``sceneos_risk_flow_steps``)."""
    if flow == "activation":
        return [
            ApplicantStep(),
            RulesStep("pre_screen"),
            AntiFraudStep(),
            ScorecardStep(),
            RulesStep("post_score"),
            LimitPricingStep(),
        ]
    return [ApplicantStep(), RulesStep("pre_screen"), AntiFraudStep()]
