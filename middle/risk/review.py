"""The manual review queue: decisions referred to review, decided by an operator, with an audit trail.

A case opens with the decision (same unit of work) and holds the reasons and, for an activation,
the line the flow proposed. An operator approves (optionally with a smaller line) or declines;
comments can be added at any time. Every action is appended to ``risk_review_actions`` and never
changed; the decision record itself is never changed either (a replay reproduces the automated
outcome, ``review``). Events: ``risk.review.opened``, ``risk.review.approved``,
``risk.review.declined``, so the product waiting on the case (e.g. credit pay) can go on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from core.errors import Conflict, NotFound, ValidationFailed
from core.tenancy import UnitOfWork
from middle.risk.models import ReviewStatus, RiskDecision, RiskReviewAction, RiskReviewCase

if TYPE_CHECKING:
    from middle.risk.service import RecordedDecision

SYSTEM_OPERATOR = "system"
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


_DIGITS = 16
_SPACE = len(_ALPHABET) ** _DIGITS


def new_number(prefix: str) -> str:
    """``prefix`` and 16 random characters of the alphabet (one draw, not sixteen: it is on every decision)."""
    value = secrets.randbelow(_SPACE)
    digits = []
    for _ in range(_DIGITS):
        value, digit = divmod(value, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return prefix + "".join(digits)


@dataclass(frozen=True)
class ReviewActionView:
    action: str
    operator: str
    note: str
    at: datetime


@dataclass(frozen=True)
class ReviewCaseView:
    case_no: str
    decision_no: str
    flow: str
    customer_no: str | None
    status: str
    reasons: list[str]
    proposed_line_minor: int | None
    granted_line_minor: int | None
    opened_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    actions: list[ReviewActionView]


class ReviewQueue:
    """One tenant's review cases, within one unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.session = uow.session

    def open(self, decision: RiskDecision | RecordedDecision) -> str:
        now = self.uow.clock.now()
        case = RiskReviewCase(
            case_no=new_number("rev_"),
            decision_no=decision.decision_no,
            flow=decision.flow,
            customer_no=decision.customer_no,
            status=ReviewStatus.OPEN,
            reasons=list(decision.reasons),
            proposed_line_minor=decision.line_minor,
            granted_line_minor=None,
            opened_at=now,
        )
        self.session.add(case)
        # No flush for the case's id: the action refers to the case object, and both rows are
        # written with the decision's own in the unit of work's one flush.
        self._append(
            case, "opened", SYSTEM_OPERATOR, "referred by the " + decision.flow + " flow", now, system=True
        )
        self.uow.publish("risk.review.opened", self._payload(case), subject=self._subject(case))
        return case.case_no

    def cases(
        self, status: str | None = ReviewStatus.OPEN, *, flow: str | None = None, limit: int = 100
    ) -> list[ReviewCaseView]:
        """Cases oldest first (a queue), with their audit trails."""
        query = (
            select(RiskReviewCase)
            .order_by(RiskReviewCase.opened_at, RiskReviewCase.id)
            .limit(min(limit, 1000))
        )
        if status is not None:
            query = query.where(RiskReviewCase.status == str(ReviewStatus(status)))
        if flow is not None:
            query = query.where(RiskReviewCase.flow == flow)
        return [self._view(case) for case in self.session.scalars(query)]

    def get(self, number: str) -> ReviewCaseView:
        """A case by its case number (``rev_...``) or its decision's number (``dec_...``)."""
        return self._view(self._case(number))

    def approve(
        self, number: str, *, operator: str, note: str = "", line_minor: int | None = None
    ) -> ReviewCaseView:
        """Approve a referred decision; an activation may be granted a smaller line than proposed."""
        case = self._open_case(number, operator)
        if line_minor is not None:
            if case.proposed_line_minor is None:
                raise ValidationFailed("this case has no line to grant (not an activation with an offer)")
            if not 0 < line_minor <= case.proposed_line_minor:
                raise ValidationFailed(
                    f"line_minor must be more than 0 and at most the proposed {case.proposed_line_minor}"
                )
        granted = line_minor if line_minor is not None else case.proposed_line_minor
        return self._close(case, ReviewStatus.APPROVED, operator, note, granted)

    def decline(self, number: str, *, operator: str, note: str = "") -> ReviewCaseView:
        case = self._open_case(number, operator)
        return self._close(case, ReviewStatus.DECLINED, operator, note, None)

    def comment(self, number: str, *, operator: str, note: str) -> ReviewCaseView:
        _check_operator(operator)
        if not note.strip():
            raise ValidationFailed("a comment needs a note")
        case = self._case(number)
        self._append(case, "commented", operator, note, self.uow.clock.now())
        return self._view(case)

    # --- inside -------------------------------------------------------------------------------

    def _case(self, number: str) -> RiskReviewCase:
        column = RiskReviewCase.decision_no if number.startswith("dec_") else RiskReviewCase.case_no
        case = self.session.scalars(select(RiskReviewCase).where(column == number)).one_or_none()
        if case is None:
            raise NotFound(f"no review case {number!r}")
        return case

    def _open_case(self, number: str, operator: str) -> RiskReviewCase:
        _check_operator(operator)
        case = self._case(number)
        # Lock the case (PostgreSQL) so two operators cannot both decide it.
        self.session.refresh(case, with_for_update=True)
        if case.status != ReviewStatus.OPEN:
            raise Conflict(f"review case {case.case_no} is already {case.status} (by {case.closed_by})")
        return case

    def _close(
        self,
        case: RiskReviewCase,
        status: ReviewStatus,
        operator: str,
        note: str,
        granted_line_minor: int | None,
    ) -> ReviewCaseView:
        now = self.uow.clock.now()
        case.status = status
        case.closed_at = now
        case.closed_by = operator
        case.granted_line_minor = granted_line_minor
        self._append(case, str(status), operator, note, now)
        self.uow.publish(f"risk.review.{status}", self._payload(case), subject=self._subject(case))
        return self._view(case)

    def _append(
        self,
        case: RiskReviewCase,
        action: str,
        operator: str,
        note: str,
        at: datetime,
        *,
        system: bool = False,
    ) -> None:
        self.session.add(
            RiskReviewAction(
                case=case, action=action, operator=operator, note=note[:2000], at=at, is_system=system
            )
        )

    def _payload(self, case: RiskReviewCase) -> dict[str, object]:
        return {
            "case_no": case.case_no,
            "decision_no": case.decision_no,
            "flow": case.flow,
            "customer_no": case.customer_no,
            "status": case.status,
            "line_minor": case.granted_line_minor,
        }

    @staticmethod
    def _subject(case: RiskReviewCase) -> str | None:
        return f"customer:{case.customer_no}" if case.customer_no else None

    def _view(self, case: RiskReviewCase) -> ReviewCaseView:
        self.session.flush()
        actions = self.session.scalars(
            select(RiskReviewAction).where(RiskReviewAction.case_id == case.id).order_by(RiskReviewAction.id)
        )
        return ReviewCaseView(
            case_no=case.case_no,
            decision_no=case.decision_no,
            flow=case.flow,
            customer_no=case.customer_no,
            status=case.status,
            reasons=list(case.reasons),
            proposed_line_minor=case.proposed_line_minor,
            granted_line_minor=case.granted_line_minor,
            opened_at=case.opened_at,
            closed_at=case.closed_at,
            closed_by=case.closed_by,
            actions=[ReviewActionView(a.action, a.operator, a.note, a.at) for a in actions],
        )


def _check_operator(operator: str) -> None:
    if not operator.strip() or len(operator) > 64:
        raise ValidationFailed("an operator id (1-64 characters) is required")
    if operator == SYSTEM_OPERATOR:
        raise ValidationFailed(f"{SYSTEM_OPERATOR!r} is reserved")
