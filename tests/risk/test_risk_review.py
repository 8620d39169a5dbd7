"""The manual review queue: referred decisions are listed, approved or declined by an operator,
with an audit trail and events."""

from __future__ import annotations

import pytest

from core.errors import Conflict, ValidationFailed
from tests.risk.support import BOTH, activate, decide, register, risk_config, risk_tenant, rule, with_risk

REFER_ALL = {"rules": [rule("manual", "true", action="review", reason_code="manual_check"),
                       rule("big", "txn.amount_minor > 100000", action="review", flow="purchase",
                            reason_code="large_purchase")]}


@BOTH
def test_an_operator_approves_with_a_smaller_line_and_the_trail_records_it(make_sceneos, sim_clock, events) -> None:
    app = make_sceneos({"tenants": {"bank": risk_tenant(risk=REFER_ALL, plugins=["events"])}}, plugins={"events": events})
    customer = register(app)
    decision = activate(app, customer)
    assert decision.outcome == "review" and decision.review_case_no
    queue = with_risk(app, lambda risk: risk.reviews.cases())
    assert [case.case_no for case in queue] == [decision.review_case_no]
    case = queue[0]
    assert case.reasons == ["manual_check"] and case.proposed_line_minor == decision.offer.line_minor
    sim_clock.advance(minutes=30)
    with_risk(app, lambda risk: risk.reviews.comment(decision.decision_no, operator="e1001", note="called the customer"))
    smaller = decision.offer.line_minor // 2
    closed = with_risk(app, lambda risk: risk.reviews.approve(case.case_no, operator="e1002", note="income verified",
                                                              line_minor=smaller))
    assert (closed.status, closed.granted_line_minor, closed.closed_by) == ("approved", smaller, "e1002")
    assert [(a.action, a.operator) for a in closed.actions] == [
        ("opened", "system"), ("commented", "e1001"), ("approved", "e1002")]
    assert closed.actions[-1].at > closed.actions[0].at
    assert with_risk(app, lambda risk: risk.reviews.cases()) == []
    assert [e.type for e in events.of_type("risk.review")] == ["risk.review.opened", "risk.review.approved"]
    assert events.of_type("risk.review.approved")[0].payload["line_minor"] == smaller
    # The record is untouched: it still replays to the automated outcome.
    assert with_risk(app, lambda risk: risk.replay(decision.decision_no)).original["outcome"] == "review"
    with pytest.raises(Conflict, match="already approved"):
        with_risk(app, lambda risk: risk.reviews.decline(case.case_no, operator="e1003"))


def test_declines_filters_and_operator_checks(make_sceneos) -> None:
    app = make_sceneos(risk_config(REFER_ALL))
    customer = register(app)
    purchase = decide(app, "purchase", customer_no=customer, amount_minor=200_000, merchant_id="m")
    activation = activate(app, customer)
    assert [c.flow for c in with_risk(app, lambda risk: risk.reviews.cases())] == ["purchase", "activation"]
    assert [c.flow for c in with_risk(app, lambda risk: risk.reviews.cases(flow="purchase"))] == ["purchase"]
    with pytest.raises(ValidationFailed, match="operator"):
        with_risk(app, lambda risk: risk.reviews.decline(purchase.review_case_no, operator=" "))
    with pytest.raises(ValidationFailed, match="no line to grant"):
        with_risk(app, lambda risk: risk.reviews.approve(purchase.review_case_no, operator="e1", line_minor=100))
    with pytest.raises(ValidationFailed, match="at most the proposed"):
        with_risk(app, lambda risk: risk.reviews.approve(activation.review_case_no, operator="e1",
                                                         line_minor=activation.offer.line_minor + 1))
    declined = with_risk(app, lambda risk: risk.reviews.decline(purchase.review_case_no, operator="e1", note="fraud"))
    assert declined.status == "declined" and declined.granted_line_minor is None
    assert [c.case_no for c in with_risk(app, lambda risk: risk.reviews.cases("declined"))] == [purchase.review_case_no]
    # A retried request finds the decision and its open case.
    again = activate(app, customer, request_id="x")
    assert activate(app, customer, request_id="x").review_case_no == again.review_case_no
