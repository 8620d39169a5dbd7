"""Activations the risk flow refers to manual review: stored as ``review`` with no account, then
completed when an operator decides the case (approved with the granted line, or declined), with
the decision event published again; a retry of the request answers the completed application, and
a redelivered review event changes nothing. Real databases, both backends."""

from __future__ import annotations

from typing import Any

import pytest
from test_credit_pay_service import activate, config, ledger_check, register, run
from test_lines import EventRecorder

from core.testing.harness import tenant_config
from products.credit_pay.reviews import complete_review
from products.credit_pay.service import line_account

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
REFER = {"rules": [{"name": "manual", "expression": "true", "action": "review", "reason_code": "manual_check"}]}


def decided(events: EventRecorder) -> list[dict[str, Any]]:
    return [e.payload for e in events.events if e.type == "credit_pay.activation.decided"]


def referring_app(make_sceneos: Any) -> tuple[Any, EventRecorder]:
    events = EventRecorder()
    modules = config(risk=REFER)["tenants"]["bank"]["modules"]
    app = make_sceneos(
        {"tenants": {"bank": tenant_config(modules=modules, plugins=["events"])}}, plugins={"events": events}
    )
    return app, events


def review(app: Any, action: str, number: str, **extra: Any) -> Any:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        queue = tenant.module("risk").container.service(uow=uow).reviews
        if action == "get":
            return queue.get(number)
        return getattr(queue, action)(number, operator="e1001", **extra)


@BOTH
def test_an_approved_review_opens_the_account_with_the_granted_line(make_sceneos) -> None:
    app, events = referring_app(make_sceneos)
    customer = register(app)
    referred = activate(app, customer)
    assert referred.outcome == "review" and referred.account is None and referred.reasons == ["manual_check"]
    case = review(app, "get", referred.decision_no)
    granted = case.proposed_line_minor // 2
    review(app, "approve", case.case_no, note="income verified", line_minor=granted)

    # The partner's retry of its request answers the completed application.
    done = activate(app, customer)
    assert not done.created and done.outcome == "approve" and done.reasons == []
    assert done.account is not None and done.account.line_minor == granted
    assert done.account.available_minor == granted and done.account.status == "active"
    assert [(p["outcome"], p.get("review_case_no")) for p in decided(events)] == [
        ("review", None),
        ("approve", case.case_no),
    ]
    assert decided(events)[1]["partner_id"] == "travel_app"
    assert decided(events)[1]["account_no"] == done.account.account_no
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        assert ledger.balance(line_account(done.account.account_no)).net_posted_minor == granted
    # The event again (at-least-once delivery): nothing changes.
    payload = {"case_no": case.case_no, "decision_no": referred.decision_no, "flow": "activation",
               "status": "approved", "line_minor": granted}
    assert run(app, lambda pay: complete_review(pay, payload)) is False
    assert activate(app, customer).account.account_no == done.account.account_no
    assert len(decided(events)) == 2
    ledger_check(app)


@BOTH
def test_a_declined_review_declines_the_application(make_sceneos) -> None:
    app, events = referring_app(make_sceneos)
    customer = register(app)
    referred = activate(app, customer)
    review(app, "decline", referred.decision_no, note="documents do not match")
    done = activate(app, customer)
    assert (done.outcome, done.reasons, done.account) == ("decline", ["declined_in_review"], None)
    assert [p["outcome"] for p in decided(events)] == ["review", "decline"]
    # Another product's (or flow's) case is not ours.
    other = {"case_no": "rev_x", "decision_no": referred.decision_no, "flow": "purchase", "status": "approved"}
    assert run(app, lambda pay: complete_review(pay, other)) is False


def test_an_approval_for_a_customer_who_meanwhile_has_an_account_declines(make_sceneos) -> None:
    app, _ = referring_app(make_sceneos)
    customer = register(app)
    first = activate(app, customer, request_id="act-1")
    second = activate(app, customer, request_id="act-2")
    assert first.outcome == second.outcome == "review"
    review(app, "approve", first.decision_no)
    review(app, "approve", second.decision_no)
    assert activate(app, customer, request_id="act-1").outcome == "approve"
    late = activate(app, customer, request_id="act-2")
    assert (late.outcome, late.reasons, late.account) == ("decline", ["account_exists"], None)
    ledger_check(app)
