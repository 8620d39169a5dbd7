"""Activations referred to manual review, completed when the risk module's case is decided.

An activation whose risk decision is ``review`` is stored with outcome ``review`` and no account
(the risk module opened a case in the same unit of work). When an operator approves the case
(``risk.reviews.approve``, over HTTP or ``sceneos risk reviews approve``; optionally with a
smaller line) or declines it, the risk module publishes ``risk.review.approved`` or
``risk.review.declined``. This product's subscriber (``sceneos_on_event``, see ``plugin.py``)
completes the application in the unit of work that records the event's receipt:

* approved: the account is opened with the granted line and the decision's price, after the same
  product checks as an automated approval (currency, the product's ceiling); a customer who has
  meanwhile got an account of the product is declined with ``account_exists``;
* declined: the application is declined with ``declined_in_review``.

Either way ``credit_pay.activation.decided`` is published again, with ``review_case_no``, so the
partner's webhook hears the outcome, and a retry of the activation request answers the completed
application. Idempotent: an application no longer in review is left alone, so a redelivered event
changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from products.credit_pay.models import CreditPayApplication

if TYPE_CHECKING:
    from products.credit_pay.service import CreditPayService

REVIEW_EVENTS = ("risk.review.approved", "risk.review.declined")


def complete_review(service: CreditPayService, case: Mapping[str, Any]) -> bool:
    """Complete the application waiting on the decided review ``case`` (the event's payload:
    ``case_no``, ``decision_no``, ``flow``, ``status``, ``line_minor``). False when there is none
    waiting (another product's case, or already completed)."""
    if case.get("flow") != "activation":
        return False
    application = service.session.scalars(
        select(CreditPayApplication)
        .where(CreditPayApplication.decision_no == case["decision_no"])
        .with_for_update()
    ).one_or_none()
    if application is None or application.outcome != "review":
        return False
    account = None
    if case["status"] != "approved":
        refused: str | None = "declined_in_review"
    elif service._account_of(application.customer_no, application.product_code) is not None:
        refused = "account_exists"
    elif (product := service.settings.product(application.product_code)) is None:
        refused = "unknown_product"
    else:
        risk = service.tenant.module("risk").container.service(uow=service.uow)
        offer = risk.get_decision(application.decision_no).offer
        if offer is not None and case.get("line_minor") is not None:
            offer = dataclasses.replace(offer, line_minor=int(case["line_minor"]))
        refused, account = service._take_offer(
            application.customer_no, application.product_code, product, application.decision_no, offer
        )
    application.outcome = "decline" if refused else "approve"
    application.reasons = [refused] if refused else []
    application.account_no = account.account_no if account else None
    service.session.flush()
    service._publish_decided(application, account, review_case_no=case.get("case_no"))
    return True
