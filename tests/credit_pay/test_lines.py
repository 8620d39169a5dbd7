"""Line adjustment on real databases: the bank raises and lowers a line (never below usage unless
forced, and then the available amount is zero, never negative), the ledger line memo moves by the
difference, a forced lowering's remainder is absorbed as the line is restored, every retry and
every refusal changes nothing, and the scheduled review job asks the credit module for the line."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from test_credit_pay_service import activate, config, ledger_check, purchase, register, run

from core.errors import Conflict, NotFound, Rejected
from core.hookspecs import hookimpl
from core.testing.harness import tenant_config
from infra.compute import JobRunner
from infra.ledger import LedgerEntry
from products.credit_pay.installments import InstallmentService, PurchaseConversion
from products.credit_pay.lines import LineAdjustmentDraft, LineService, absorb_line_shortfall, shortfall_of
from products.credit_pay.models import CreditPayAccount, CreditPayLineAdjustment
from products.credit_pay.service import line_account, lines_granted_account

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def product(**extra: Any) -> dict[str, Any]:
    limits = {"max_purchase_minor": 10**9, "max_daily_minor": 10**9}
    return {"products": {"standard": {"name": "Credit Pay", **limits, **extra}}}


def lines(app: Any, fn: Any) -> Any:
    return run(app, lambda pay: fn(LineService(pay)))


def adjust(app: Any, adjustment_id: str, account_no: str, new_line_minor: int, **extra: Any) -> Any:
    extra.setdefault("reason", "customer_request")
    draft = LineAdjustmentDraft(
        adjustment_id=adjustment_id, account_no=account_no, new_line_minor=new_line_minor, **extra
    )
    return lines(app, lambda s: s.adjust(draft))


def memo(app: Any, account_no: str) -> tuple[int, int, int]:
    """(account line, ledger available, lines granted) after checking the ledger's own audit."""
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        line = uow.session.scalars(
            select(CreditPayAccount.line_minor).where(CreditPayAccount.account_no == account_no)
        ).one()
        available = ledger.balance(line_account(account_no)).available_minor
        granted = ledger.balance(lines_granted_account("CNY")).net_posted_minor
        return line, available, granted


def counts(app: Any) -> tuple[int, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        return (
            uow.session.scalar(select(func.count(CreditPayLineAdjustment.id))),
            uow.session.scalar(select(func.count(LedgerEntry.id))),
        )


@BOTH
def test_the_bank_raises_and_lowers_a_line_and_forces_it_below_usage(make_sceneos) -> None:
    app = make_sceneos(config(product()))
    account = activate(app, register(app)).account
    no, line = account.account_no, account.line_minor
    run(app, lambda pay: pay.authorize(purchase(no, "p-1", 100_000)))
    run(app, lambda pay: pay.capture("p-1"))
    assert memo(app, no) == (line, line - 100_000, line - 100_000)

    raised = adjust(app, "adj-1", no, line + 200_000, note="good payer")
    assert raised.created and raised.kind == "raise" and raised.ledger_delta_minor == 200_000
    assert memo(app, no) == (line + 200_000, line + 100_000, line + 100_000)
    assert run(app, lambda pay: pay.account(no)).available_minor == line + 100_000
    again = adjust(app, "adj-1", no, line + 200_000, note="good payer")
    assert not again.created and counts(app)[0] == 1
    with pytest.raises(Conflict):
        adjust(app, "adj-1", no, line)  # same id, another line

    lowered = adjust(app, "adj-2", no, 150_000, reason="risk_review")
    assert lowered.kind == "lower" and lowered.used_minor == 100_000
    assert memo(app, no) == (150_000, 50_000, 50_000)

    # Below the 100,000 in use: refused unless forced, and the refusal changes nothing.
    before = counts(app), memo(app, no)
    with pytest.raises(Conflict) as below:
        adjust(app, "adj-3", no, 40_000, reason="risk_review")
    assert below.value.details[0]["code"] == "below_usage"
    assert (counts(app), memo(app, no)) == before
    forced = adjust(app, "adj-3", no, 40_000, reason="risk_review", forced=True)
    assert forced.forced and forced.shortfall_minor == 60_000 and forced.ledger_delta_minor == -50_000
    assert memo(app, no) == (40_000, 0, 0)  # available zero, never negative
    declined = run(app, lambda pay: pay.authorize(purchase(no, "p-2", 1)))
    assert declined.status == "declined" and declined.reasons == ["insufficient_available_line"]

    # A refund of 70,000 restores the ledger line; the shortfall takes 60,000 of it first, in the
    # refund's own unit of work, so no purchase can use that room in between.
    run(app, lambda pay: pay.refund("p-1", "rf-1", 70_000))
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        row = uow.session.scalars(select(CreditPayAccount).where(CreditPayAccount.account_no == no)).one()
        assert shortfall_of(uow.session, no) == 0
        assert absorb_line_shortfall(uow.session, ledger, row, date(2026, 1, 1)) == 0
    assert memo(app, no) == (40_000, 10_000, 10_000)  # line 40,000 less 30,000 in use
    history = lines(app, lambda s: s.history(no))
    assert [(h.source, h.kind) for h in history] == [
        ("bank", "raise"),
        ("bank", "lower"),
        ("bank", "lower"),
        ("shortfall", "shortfall"),
    ]
    ledger_check(app)


@BOTH
def test_refused_adjustments_change_nothing(make_sceneos) -> None:
    app = make_sceneos(config(product()))
    no = activate(app, register(app)).account.account_no
    before = counts(app), memo(app, no)
    with pytest.raises(Rejected) as above:
        adjust(app, "adj-1", no, 10**12)
    assert above.value.details[0]["code"] == "above_max_line"
    with pytest.raises(NotFound):
        adjust(app, "adj-1", "cpa_nope", 100_000)
    with pytest.raises(ValidationError):
        adjust(app, "adj-1", no, 100_000, reason="Not A Code")
    with pytest.raises(ValidationError):
        adjust(app, "adj-1", no, -1)
    assert (counts(app), memo(app, no)) == before
    ledger_check(app)


@BOTH
def test_the_review_job_asks_the_credit_module_for_lines_due_for_review(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config(product(line_review_interval_days=30)))
    first = activate(app, register(app)).account
    sim_clock.advance(days=20)
    second = activate(app, register(app, sequence=2), request_id="act-2").account
    adjust(app, "adj-1", first.account_no, 50_000)
    adjust(app, "adj-2", second.account_no, 60_000)
    runner = JobRunner(app)

    # Day 31 of the first account: only it is due; the review restores the line it is offered.
    sim_clock.advance(days=11)
    today = app.tenant("bank").business_date()
    report = runner.run("bank", "credit_pay.line_review", today)
    assert report.summary["reviewed"] == 1 and report.summary["raised"] == 1
    assert memo(app, first.account_no)[0] == first.line_minor
    assert memo(app, second.account_no)[0] == 60_000
    review = lines(app, lambda s: s.history(first.account_no))[-1]
    assert (review.source, review.reason, review.new_line_minor) == (
        "review",
        "scheduled_review",
        first.line_minor,
    )
    assert "score" in review.note
    before = counts(app)
    assert "already completed" in runner.run("bank", "credit_pay.line_review", today).message
    assert lines(app, lambda s: s.review(first.account_no, today)).created is False
    assert counts(app) == before

    # Twenty days later the second account is due; the first is not (reviewed 20 days ago).
    sim_clock.advance(days=20)
    report = runner.run("bank", "credit_pay.line_review", today + timedelta(days=20))
    assert report.summary["reviewed"] == 1
    assert memo(app, second.account_no)[0] == second.line_minor
    ledger_check(app)


def test_a_review_does_not_lower_when_configured_not_to(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config(product(line_review_interval_days=30, line_review_may_lower=False)))
    account = activate(app, register(app)).account
    no = account.account_no
    adjust(app, "adj-1", no, account.line_minor + 500_000)
    sim_clock.advance(days=31)
    view = lines(app, lambda s: s.review(no, app.tenant("bank").business_date()))
    assert view.kind == "unchanged" and memo(app, no)[0] == account.line_minor + 500_000


def test_a_review_never_lowers_below_usage(make_sceneos, sim_clock) -> None:
    other = make_sceneos(config(product(line_review_interval_days=30)))
    account = activate(other, register(other)).account
    no = account.account_no
    adjust(other, "adj-1", no, account.line_minor + 500_000)
    run(other, lambda pay: pay.authorize(purchase(no, "p-1", account.line_minor + 100_000)))
    sim_clock.advance(days=31)
    view = lines(other, lambda s: s.review(no, other.tenant("bank").business_date()))
    # Offered the original line, but the account uses more: lowered only to what is in use.
    assert view.kind == "lower" and view.new_line_minor == account.line_minor + 100_000
    assert memo(other, no)[:2] == (account.line_minor + 100_000, 0)
    ledger_check(other)


class EventRecorder:
    """A bank's plugin that keeps every committed event."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def sceneos_on_event(self, event: Any) -> None:
        self.events.append(event)


def test_line_and_plan_changes_are_events_partners_can_receive(make_sceneos) -> None:
    recorder = EventRecorder()
    plans = [{"terms": 6, "method": "annuity", "period_rate_bps": 100}]
    modules = {"party": {}, "credit": {}, "risk": {}, "credit_pay": product(installment_plans=plans)}
    app = make_sceneos(
        {"tenants": {"bank": tenant_config(modules=modules, plugins=["recorder"])}},
        plugins={"recorder": recorder},
    )
    account = activate(app, register(app)).account
    no = account.account_no
    run(app, lambda pay: pay.authorize(purchase(no, "p-1", 186_000)))
    run(app, lambda pay: pay.capture("p-1"))
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="p-1", terms=6, method="annuity")
    plan_no = run(app, lambda pay: InstallmentService(pay).convert_purchase(draft)).plan_no
    run(app, lambda pay: InstallmentService(pay).pay_off(plan_no))
    adjust(app, "adj-1", no, account.line_minor + 100_000)
    adjust(app, "adj-1", no, account.line_minor + 100_000)  # a retry publishes nothing
    ours = [e for e in recorder.events if e.type.startswith(("credit_pay.line", "credit_pay.installment"))]
    assert [e.type for e in ours] == [
        "credit_pay.installment_plan.created",
        "credit_pay.installment_plan.paid_off",
        "credit_pay.line_adjusted",
    ]
    assert ours[1].payload["principal_minor"] == 186_000 and ours[1].payload["plan_no"] == plan_no
    assert ours[2].payload["new_line_minor"] == account.line_minor + 100_000
    assert ours[2].subject == f"credit_pay_account:{no}"


def test_a_repayment_after_a_forced_lowering_gives_the_shortfall_back_first(make_sceneos) -> None:
    from products.credit_pay.repayment import RepaymentDraft

    app = make_sceneos(config(product()))
    account = activate(app, register(app)).account
    no = account.account_no
    run(app, lambda pay: pay.authorize(purchase(no, "p-1", 100_000)))
    run(app, lambda pay: pay.capture("p-1"))
    adjust(app, "adj-1", no, 40_000, reason="risk_review", forced=True)
    assert memo(app, no)[1:] == (0, 0)
    run(app, lambda pay: pay.repay(RepaymentDraft(repayment_id="r-1", account_no=no, amount_minor=70_000)))
    # 70,000 of principal repaid: 60,000 of it closes the shortfall, 10,000 is available again.
    assert memo(app, no) == (40_000, 10_000, 10_000)
    with app.tenant("bank").unit_of_work() as uow:
        assert shortfall_of(uow.session, no) == 0
    ledger_check(app)
