"""Installment plans through the statement run (``credit_pay.end_of_day``): each statement of the
plan's life bills exactly that month's installment, the customer repays each statement in full, and
at the end the installment receivable is empty and the trial balance is zero."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from test_credit_pay_service import activate, config, ledger_check, purchase, register, run

from infra.compute import JobRunner
from products.credit_pay.installments import InstallmentService, PurchaseConversion, installment_account
from products.credit_pay.repayment import RepaymentDraft

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def end_of_day(app: Any, sim_clock: Any, day: date) -> None:
    # The job runs for a business date that has ended: the next morning in Shanghai.
    after = day + timedelta(days=1)
    sim_clock.set(datetime(after.year, after.month, after.day, 1, tzinfo=UTC))
    report = JobRunner(app).run("bank", "credit_pay.end_of_day", day)
    assert not report.failures, report.failures


@BOTH
def test_each_statement_bills_the_months_installment_until_the_plan_is_repaid(
    make_sceneos, sim_clock
) -> None:
    plans = [{"terms": 3, "method": "flat_fee", "period_rate_bps": 60}]
    limits = {"max_purchase_minor": 10**9, "max_daily_minor": 10**9}
    app = make_sceneos(
        config({"products": {"standard": {"name": "Credit Pay", "installment_plans": plans, **limits}}})
    )
    no = activate(app, register(app)).account.account_no
    run(app, lambda pay: pay.authorize(purchase(no, "p-1", 300_001)))
    run(app, lambda pay: pay.capture("p-1"))
    draft = PurchaseConversion(plan_id="inst-1", purchase_id="p-1", terms=3, method="flat_fee")
    plan = run(app, lambda pay: InstallmentService(pay).convert_purchase(draft))
    due = {i.due_on: i.total_minor for i in plan.installments}
    assert sum(due.values()) == 300_001 + 1_800 * 3

    billed = 0
    # End of day runs on each statement date only: the job catches up the days in between.
    for day in sorted(due):
        end_of_day(app, sim_clock, day)
        statement = run(app, lambda pay: pay.statements(no))[0]
        assert statement.statement_date == day and statement.installments_minor == due[day]
        billed += statement.installments_minor
        repaid = RepaymentDraft(
            repayment_id=f"r-{day}", account_no=no, amount_minor=statement.new_balance_minor
        )
        run(app, lambda pay, repaid=repaid: pay.repay(repaid))
    assert billed == sum(due.values())
    assert run(app, lambda pay: InstallmentService(pay).plan(plan.plan_no)).status == "completed"
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        assert ledger.balance(installment_account(no)).net_posted_minor == 0
    ledger_check(app)
