"""Line adjustment: the bank raises or lowers an account's line with a reason, and a scheduled
review (compute job ``credit_pay.line_review``) asks the credit module's limit strategy for a new
line. No HTTP here.

    pay = runtime.container.service(uow=uow)
    lines = LineService(pay)
    lines.adjust(LineAdjustmentDraft(adjustment_id="adj-1", account_no="cpa_...",
                                     new_line_minor=2_000_000, reason="customer_request"))
    lines.history("cpa_...")

Ledger. The line memo pair (``credit_pay:line:<account_no>`` against
``credit_pay:lines_granted:<currency>``) moves by the difference: a raise debits the line account,
a lowering credits it. The line account's constraint (credits never above debits) keeps the
available amount from going negative, so a lowering below the amount in use is refused unless
``forced``; a forced lowering moves the ledger line only down to what is in use (available
becomes zero) and records the rest as the account's **shortfall**. As repayments restore the
line, :func:`absorb_line_shortfall` takes the shortfall out of the available amount first (the
review job and every later adjustment call it; billing/repayment should call it after restoring
the line), so the available amount is never more than the lowered line allows.

Review. An account is due when ``line_review_interval_days`` (product setting; 0 turns reviews
off) have passed since its last review (or its opening). The review asks
:meth:`middle.credit.service.CreditService.assess` with the customer's stored consented data;
during that call the internal-history hook reports the customer's *other* lines (see
:func:`review_history`), because the line under review is what is being decided. No offer
means a line of zero. A review never lowers below the amount in use (it is not forced), and
lowers at all only if ``line_review_may_lower``. Each review is recorded, also when the line stays.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, Rejected, SceneOSError
from core.modules import JobSpec
from infra.ledger import EntryDraft, Ledger, Posting
from products.credit_pay.models import CreditPayAccount, CreditPayLineAdjustment
from products.credit_pay.service import ID_PATTERN, CreditPayService, line_account, lines_granted_account

REASON_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
REVIEW_REASON = "scheduled_review"
SHORTFALL_REASON = "forced_lowering_remainder"
# Accounts per partition of the review job (ranges of account ids).
REVIEW_PARTITION_SIZE = 1_000


class BankOnly(SceneOSError):
    """A route of the bank's own staff, called with a partner's credentials."""

    code = "bank_only"
    http_status = 403


class LineAdjustmentDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    adjustment_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="caller's id; a retry returns the same answer",
    )
    account_no: str = Field(min_length=1, max_length=40)
    new_line_minor: int = Field(ge=0, le=10**15)
    reason: str = Field(
        pattern=REASON_PATTERN, description="a reason code, e.g. customer_request, risk_review"
    )
    note: str | None = Field(default=None, max_length=200)
    forced: bool = Field(default=False, description="lower below the amount in use (available becomes 0)")


class LineAdjustmentView(BaseModel):
    adjustment_id: str
    account_no: str
    source: str
    kind: str
    previous_line_minor: int
    new_line_minor: int
    used_minor: int
    ledger_delta_minor: int
    shortfall_minor: int
    forced: bool
    reason: str
    note: str | None
    business_date: date
    created_at: datetime
    created: bool = True


@dataclass(frozen=True)
class _LineState:
    line_minor: int
    available_minor: int
    shortfall_minor: int

    @property
    def used_minor(self) -> int:
        # What the ledger line grants (line + shortfall) less what is still available.
        return self.line_minor + self.shortfall_minor - self.available_minor


# --- ledger state --------------------------------------------------------------------------------


def shortfall_of(session: Session, account_no: str) -> int:
    """How much the ledger line still grants above the account's line (after forced lowerings)."""
    ledger_delta, line_delta = session.execute(
        select(
            func.coalesce(func.sum(CreditPayLineAdjustment.ledger_delta_minor), 0),
            func.coalesce(
                func.sum(
                    CreditPayLineAdjustment.new_line_minor - CreditPayLineAdjustment.previous_line_minor
                ),
                0,
            ),
        ).where(CreditPayLineAdjustment.account_no == account_no)
    ).one()
    shortfall = int(ledger_delta) - int(line_delta)
    assert shortfall >= 0, f"negative shortfall on {account_no}"
    return shortfall


def _state(session: Session, ledger: Ledger, account: CreditPayAccount) -> _LineState:
    available = ledger.balance(line_account(account.account_no)).available_minor
    return _LineState(account.line_minor, available, shortfall_of(session, account.account_no))


def _post_line_delta(
    ledger: Ledger, account: CreditPayAccount, entry_id: str, delta: int, metadata: dict[str, Any]
) -> None:
    if delta == 0:
        return
    line, granted = line_account(account.account_no), lines_granted_account(account.currency)
    postings = (
        [Posting.debit(line, delta), Posting.credit(granted, delta)]
        if delta > 0
        else [Posting.credit(line, -delta), Posting.debit(granted, -delta)]
    )
    ledger.post(EntryDraft(entry_id, postings, description="credit line adjusted", metadata=metadata))


def absorb_line_shortfall(
    session: Session, ledger: Ledger, account: CreditPayAccount, business_date: date
) -> int:
    """Take a forced lowering's remainder out of the available line, as far as repayments have
    made room for it. Returns the amount taken (0 when there is no shortfall or nothing available).
    Safe to call at any time and repeatedly; call it after anything restores the line."""
    state = _state(session, ledger, account)
    take = min(state.shortfall_minor, max(state.available_minor, 0))
    if take <= 0:
        return 0
    number = (
        session.scalar(
            select(func.count(CreditPayLineAdjustment.id)).where(
                CreditPayLineAdjustment.account_no == account.account_no,
                CreditPayLineAdjustment.source == "shortfall",
            )
        )
        or 0
    ) + 1
    adjustment_id = f"shortfall:{account.account_no}:{number}"
    _post_line_delta(
        ledger, account, f"credit_pay:line_adjust:{adjustment_id}", -take, {"reason": SHORTFALL_REASON}
    )
    session.add(
        CreditPayLineAdjustment(
            adjustment_id=adjustment_id,
            account_no=account.account_no,
            source="shortfall",
            kind="shortfall",
            previous_line_minor=account.line_minor,
            new_line_minor=account.line_minor,
            used_minor=state.used_minor,
            ledger_delta_minor=-take,
            forced=False,
            reason=SHORTFALL_REASON,
            note=None,
            business_date=business_date,
            created_at=ledger.clock.now(),
        )
    )
    session.flush()
    return take


# --- the internal-history hook during a review ---------------------------------------------------

# (tenant id, the reviewing service, account under review) while a review asks the credit module.
_reviewing: ContextVar[tuple[str, CreditPayService, str] | None] = ContextVar(
    "credit_pay_review", default=None
)


def review_history(tenant: Any, customer_no: str) -> tuple[bool, dict[str, int] | None]:
    """``(True, report)`` while a line review of this tenant is asking the credit module: the
    customer's credit-pay history with the line, use and count of the account under review left
    out (its line is what is being decided), read in the review's own transaction.
    ``(False, None)`` otherwise."""
    active = _reviewing.get()
    if active is None or active[0] != tenant.id:
        return False, None
    _, pay, account_no = active
    report = pay.internal_history(customer_no)
    if report is None:
        return True, None
    account = pay._account_row(account_no)
    if account.customer_no != customer_no:
        return True, report
    available = pay.ledger.balance(line_account(account_no)).available_minor
    used = max(account.line_minor - available, 0)
    # Lines, use and count leave the account out; anything else reported (e.g. days past due)
    # stays: the reviewed account's own conduct is exactly what a review should see.
    return True, {
        **report,
        "existing_line_minor": max(report["existing_line_minor"] - account.line_minor, 0),
        "outstanding_minor": max(report["outstanding_minor"] - used, 0),
        "existing_credit_count": max(report["existing_credit_count"] - 1, 0),
    }


# --- the service ---------------------------------------------------------------------------------


class LineService:
    """Line adjustments of one tenant's credit-pay accounts, within the unit of work of ``pay``."""

    def __init__(self, pay: CreditPayService) -> None:
        self.pay = pay
        self.session = pay.session
        self.uow = pay.uow
        self.tenant = pay.tenant

    def adjust(self, draft: LineAdjustmentDraft) -> LineAdjustmentView:
        """Set the account's line to ``new_line_minor`` (the bank's decision, with a reason)."""
        account = self.pay._account_row(draft.account_no, lock=True)
        existing = self._row(draft.adjustment_id)
        if existing is not None:
            for field in ("account_no", "new_line_minor", "forced", "reason"):
                if getattr(existing, field) != getattr(draft, field):
                    raise Conflict(
                        f"adjustment {draft.adjustment_id!r} exists with a different {field}",
                        details=[
                            {
                                "field": field,
                                "code": f"exists_with_different_{field}",
                                "message": "differs from the stored adjustment",
                            }
                        ],
                    )
            return self._view(existing, created=False)
        if account.status != "active":
            raise _error(Conflict, "account_no", "account_not_active", f"credit account is {account.status}")
        credit_max = self.tenant.module("credit").settings.max_line_minor
        if draft.new_line_minor > max(credit_max, account.line_minor):
            raise _error(
                Rejected,
                "new_line_minor",
                "above_max_line",
                f"{draft.new_line_minor} is above the largest line the bank grants ({credit_max})",
            )
        return self._apply(
            account,
            draft.adjustment_id,
            draft.new_line_minor,
            source="bank",
            reason=draft.reason,
            note=draft.note,
            forced=draft.forced,
        )

    def _apply(
        self,
        account: CreditPayAccount,
        adjustment_id: str,
        new_line: int,
        *,
        source: str,
        reason: str,
        note: str | None,
        forced: bool,
    ) -> LineAdjustmentView:
        ledger = self.pay.ledger
        today = self.tenant.business_date()
        absorb_line_shortfall(self.session, ledger, account, today)
        state = _state(self.session, ledger, account)
        used = state.used_minor
        if new_line < used and not forced:
            raise _error(
                Conflict,
                "new_line_minor",
                "below_usage",
                f"{new_line} is below the {used} in use; lower it with forced=true to stop further use",
            )
        # The ledger line grants the new line, or what is in use if that is more (available >= 0).
        ledger_delta = max(new_line, used) - (state.line_minor + state.shortfall_minor)
        _post_line_delta(
            ledger,
            account,
            f"credit_pay:line_adjust:{adjustment_id}",
            ledger_delta,
            {"reason": reason, "source": source, "new_line_minor": new_line},
        )
        previous = account.line_minor
        kind = "raise" if new_line > previous else "lower" if new_line < previous else "unchanged"
        row = CreditPayLineAdjustment(
            adjustment_id=adjustment_id,
            account_no=account.account_no,
            source=source,
            kind=kind,
            previous_line_minor=previous,
            new_line_minor=new_line,
            used_minor=used,
            ledger_delta_minor=ledger_delta,
            forced=forced,
            reason=reason,
            note=note,
            business_date=today,
            created_at=self.uow.clock.now(),
        )
        account.line_minor = new_line
        self.session.add(row)
        self.session.flush()
        after = _state(self.session, ledger, account)
        assert after.available_minor >= 0 and after.line_minor == new_line
        if kind != "unchanged":
            self.uow.publish(
                "credit_pay.line_adjusted",
                {
                    "account_no": account.account_no,
                    "adjustment_id": adjustment_id,
                    "source": source,
                    "reason": reason,
                    "previous_line_minor": previous,
                    "new_line_minor": new_line,
                    "available_minor": after.available_minor,
                    "forced": forced,
                },
                subject=f"credit_pay_account:{account.account_no}",
            )
        return self._view(row, created=True)

    # --- review -------------------------------------------------------------------------------

    def review(self, account_no: str, business_date: date) -> LineAdjustmentView:
        """Review one account's line for ``business_date`` (idempotent per account and date)."""
        account = self.pay._account_row(account_no, lock=True)
        adjustment_id = f"review:{business_date.isoformat()}:{account_no}"
        existing = self._row(adjustment_id)
        if existing is not None:
            return self._view(existing, created=False)
        product = self.pay._product(account.product_code)
        credit = self.tenant.module("credit").container.service(uow=self.uow)
        token = _reviewing.set((self.tenant.id, self.pay, account_no))
        try:
            assessment = credit.assess(account.customer_no, credit.stored_consented(account.customer_no))
        finally:
            _reviewing.reset(token)
        offer = assessment.offer
        proposed = offer.line_minor if offer is not None else 0
        new_line = proposed
        if new_line < account.line_minor:
            used = _state(self.session, self.pay.ledger, account).used_minor
            new_line = max(new_line, used) if product.line_review_may_lower else account.line_minor
            new_line = min(new_line, account.line_minor)
        note = f"score {assessment.score.score}, " + (
            f"band {offer.score_band}, offered {proposed}" if offer is not None else "no offer"
        )
        return self._apply(
            account, adjustment_id, new_line, source="review", reason=REVIEW_REASON, note=note, forced=False
        )

    def due_for_review(self, account: CreditPayAccount, business_date: date) -> bool:
        interval = self.pay._product(account.product_code).line_review_interval_days
        if interval == 0 or account.status != "active":
            return False
        last = self.session.scalar(
            select(func.max(CreditPayLineAdjustment.business_date)).where(
                CreditPayLineAdjustment.account_no == account.account_no,
                CreditPayLineAdjustment.source == "review",
            )
        )
        if last is None:
            last = account.created_at.astimezone(ZoneInfo(self.tenant.settings.timezone)).date()
        return (business_date - last).days >= interval

    # --- queries ------------------------------------------------------------------------------

    def history(self, account_no: str) -> list[LineAdjustmentView]:
        self.pay._account_row(account_no)
        rows = self.session.scalars(
            select(CreditPayLineAdjustment)
            .where(CreditPayLineAdjustment.account_no == account_no)
            .order_by(CreditPayLineAdjustment.id)
        ).all()
        return [self._view(row) for row in rows]

    def _row(self, adjustment_id: str) -> CreditPayLineAdjustment | None:
        return self.session.scalars(
            select(CreditPayLineAdjustment).where(CreditPayLineAdjustment.adjustment_id == adjustment_id)
        ).one_or_none()

    def _view(self, row: CreditPayLineAdjustment, *, created: bool = True) -> LineAdjustmentView:
        return LineAdjustmentView(
            adjustment_id=row.adjustment_id,
            account_no=row.account_no,
            source=row.source,
            kind=row.kind,
            previous_line_minor=row.previous_line_minor,
            new_line_minor=row.new_line_minor,
            used_minor=row.used_minor,
            ledger_delta_minor=row.ledger_delta_minor,
            shortfall_minor=max(row.new_line_minor, row.used_minor) - row.new_line_minor
            if row.source != "shortfall"
            else 0,
            forced=row.forced,
            reason=row.reason,
            note=row.note,
            business_date=row.business_date,
            created_at=row.created_at,
            created=created,
        )


def _error(cls: type[SceneOSError], field: str, code: str, message: str) -> SceneOSError:
    return cls(message, details=[{"field": field, "code": code, "message": message}])


# --- the scheduled review job --------------------------------------------------------------------


def _review_partitions(ctx: Any) -> list[str]:
    low, high = ctx.session.execute(
        select(func.min(CreditPayAccount.id), func.max(CreditPayAccount.id))
    ).one()
    if low is None:
        return []
    first = low - low % REVIEW_PARTITION_SIZE
    return [str(start) for start in range(first, high + 1, REVIEW_PARTITION_SIZE)]


def _review_partition(ctx: Any) -> dict[str, int]:
    start = int(ctx.key)
    pay = ctx.module("credit_pay").container.service(uow=ctx.uow)
    lines = LineService(pay)
    accounts = ctx.session.scalars(
        select(CreditPayAccount)
        .where(
            CreditPayAccount.id >= start,
            CreditPayAccount.id < start + REVIEW_PARTITION_SIZE,
            CreditPayAccount.status == "active",
        )
        .order_by(CreditPayAccount.id)
    ).all()
    counts = {"reviewed": 0, "raised": 0, "lowered": 0, "unchanged": 0, "shortfall_absorbed_minor": 0}
    for account in accounts:
        if lines.due_for_review(account, ctx.business_date):
            view = lines.review(account.account_no, ctx.business_date)
            counts["reviewed"] += 1
            counts[{"raise": "raised", "lower": "lowered"}.get(view.kind, "unchanged")] += 1
        else:
            counts["shortfall_absorbed_minor"] += absorb_line_shortfall(
                ctx.session, pay.ledger, account, ctx.business_date
            )
    return counts


LINE_REVIEW_JOB = JobSpec(
    name="credit_pay.line_review",
    partitions=_review_partitions,
    run_partition=_review_partition,
    description="Review the lines of credit-pay accounts due for review (credit module's limit strategy)",
)


__all__ = [
    "LINE_REVIEW_JOB",
    "BankOnly",
    "LineAdjustmentDraft",
    "LineAdjustmentView",
    "LineService",
    "absorb_line_shortfall",
    "review_history",
    "shortfall_of",
]
