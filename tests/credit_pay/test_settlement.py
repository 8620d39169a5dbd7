"""Credit-pay merchant settlement on real databases: a day's sales less refunds paid out once the
day has ended, retries and re-runs that post nothing, days settled out of order never paying twice,
a payable in the merchant's disfavour carried into the next day, the compute job for every
merchant, the bank's routes (a partner may not settle) and the CLI; a property over random days."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from test_billing import BOTH, config, ledger_check, move_to, open_account, run
from test_credit_pay_api import TRAVEL, app_config
from test_credit_pay_cli import CONFIG
from test_lines import EventRecorder
from typer.testing import CliRunner

from core.cli_support import open_app
from core.errors import NotFound, ValidationFailed
from core.sdk import PermissionDenied
from infra.compute import JobRunner
from products.credit_pay.cli import cli
from products.credit_pay.service import PurchaseDraft, merchant_account
from products.credit_pay.settlement import MerchantSettlements, merchant_payout_account

DAY1, DAY2, DAY3, DAY4 = (date(2026, 1, d) for d in (5, 6, 7, 8))


def sell(app: Any, account_no: str, purchase_id: str, amount_minor: int, merchant_id: str = "air") -> None:
    draft = PurchaseDraft(purchase_id=purchase_id, account_no=account_no, merchant_id=merchant_id, amount_minor=amount_minor)
    run(app, lambda pay: pay.authorize(draft))
    run(app, lambda pay: pay.capture(purchase_id))


def settle(app: Any, merchant_id: str, day: date) -> Any:
    return run(app, lambda pay: MerchantSettlements(pay).settle(merchant_id, day))


def ledger_figures(app: Any, merchant_id: str = "air") -> tuple[int, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        ledger.open_account(merchant_payout_account("CNY"), "CNY", "liability")
        found = ledger.balances([merchant_account("CNY", merchant_id), merchant_payout_account("CNY")])
        return (
            found[merchant_account("CNY", merchant_id)].net_posted_minor,
            found[merchant_payout_account("CNY")].net_posted_minor,
        )



@BOTH
def test_a_days_sales_less_refunds_are_paid_out_once_the_day_has_ended(make_sceneos, sim_clock) -> None:
    events = EventRecorder()
    app = make_sceneos(config(plugins=["events"]), plugins={"events": events})
    no = open_account(app)
    move_to(sim_clock, DAY1)
    sell(app, no, "flight", 130_000)
    sell(app, no, "hotel", 20_000)
    run(app, lambda pay: pay.refund("flight", "r-1", 10_000))
    with pytest.raises(ValidationFailed) as early:
        settle(app, "air", DAY1)
    assert early.value.details[0]["code"] == "day_not_over"

    move_to(sim_clock, DAY2)
    sell(app, no, "next-day", 5_000)  # after the day: not in its settlement
    view, posted = settle(app, "air", DAY1)
    assert posted and view.amount_minor == 140_000 and view.owed_through_day_minor == 140_000
    assert view.entry_id == "credit_pay:merchant_settlement:CNY:air:2026-01-05"
    assert ledger_figures(app) == (5_000, 140_000)
    again, posted_again = settle(app, "air", DAY1)
    assert not posted_again and again == view and ledger_figures(app) == (5_000, 140_000)
    settled = [e.payload for e in events.events if e.type == "credit_pay.merchant.settled"]
    assert [(p["merchant_id"], p["amount_minor"], p["business_date"]) for p in settled] == [("air", 140_000, "2026-01-05")]
    assert [s.amount_minor for s in run(app, lambda pay: MerchantSettlements(pay).settlements("air"))] == [140_000]
    with pytest.raises(NotFound):
        settle(app, "nobody", DAY1)
    with pytest.raises(ValidationFailed):
        settle(app, "bad merchant", DAY1)
    ledger_check(app)


@BOTH
def test_days_settled_out_of_order_never_pay_twice_and_a_shortfall_is_carried(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    move_to(sim_clock, DAY1)
    sell(app, no, "p1", 50_000)
    move_to(sim_clock, DAY2)
    sell(app, no, "p2", 30_000)
    move_to(sim_clock, DAY3)
    # The later day first: it pays both days; the earlier day then finds nothing left.
    assert settle(app, "air", DAY2)[0].amount_minor == 80_000
    late, posted = settle(app, "air", DAY1)
    assert not posted and late.amount_minor == 0 and late.entry_id is None
    # A refund with no sale the same day: the merchant owes the bank; nothing is paid, the
    # shortfall comes off the next day's sales.
    run(app, lambda pay: pay.refund("p1", "r-1", 20_000))
    move_to(sim_clock, DAY4)
    short, posted = settle(app, "air", DAY3)
    assert not posted and short.amount_minor == 0 and short.owed_through_day_minor == 60_000
    assert ledger_figures(app) == (-20_000, 80_000)
    sell(app, no, "p4", 50_000)
    move_to(sim_clock, DAY4 + timedelta(days=1))
    assert settle(app, "air", DAY4)[0].amount_minor == 30_000
    assert ledger_figures(app) == (0, 110_000)
    ledger_check(app)


@BOTH
def test_a_merchant_with_a_bank_account_is_paid_out_of_the_bank(make_sceneos, sim_clock) -> None:
    from tests.payouts.test_payouts import BANK, call

    with_payouts = config()
    modules = with_payouts["tenants"]["bank"]["modules"]
    modules["credit_pay"]["merchant_bank_accounts"] = {
        "air": {"holder_name": "Air Ticketing Ltd", "account_number": "6222020000000001", "bank_code": "102100099996"}}
    modules["payouts"] = BANK
    app = make_sceneos(with_payouts)
    no = open_account(app)
    move_to(sim_clock, DAY1)
    sell(app, no, "flight", 130_000)
    sell(app, no, "hotel", 20_000, merchant_id="hotel")  # no bank account: settled to the payout account only
    move_to(sim_clock, DAY2)
    air, _ = settle(app, "air", DAY1)
    settle(app, "hotel", DAY1)
    [payout] = call(app, lambda p: p.payouts())
    assert (payout.instruction_id, payout.amount_minor, payout.creditor_name, payout.source) == (
        air.entry_id, 130_000, "Air Ticketing Ltd", "credit_pay")
    batch = call(app, lambda p: p.batch(DAY2, "CNY"))
    assert batch.count == 1 and "6222020000000001" in batch.document


def test_the_job_settles_every_merchant_of_the_day(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    move_to(sim_clock, DAY1)
    sell(app, no, "a", 10_000, merchant_id="air")
    sell(app, no, "b", 20_000, merchant_id="hotel")
    move_to(sim_clock, DAY2)
    report = JobRunner(app).run("bank", "credit_pay.merchant_settlement", DAY1)
    assert not report.failures and report.summary["merchants_settled"] == 2
    assert report.summary["settled_minor_CNY"] == 30_000
    assert ledger_figures(app, "air") == (0, 30_000) and ledger_figures(app, "hotel") == (0, 30_000)
    assert JobRunner(app).run("bank", "credit_pay.merchant_settlement", DAY1).already_completed
    ledger_check(app)


def test_the_bank_settles_over_http_and_a_partner_may_not(make_sceneos, sim_clock, http_client, partner_client) -> None:
    app = make_sceneos(app_config())
    no = open_account(app)
    move_to(sim_clock, DAY1)
    sell(app, no, "a", 10_000)
    move_to(sim_clock, DAY2)
    client = http_client(app)
    base = "/v1/tenants/bank/credit_pay/merchants/air/settlements"
    first = client.post(base, json={"business_date": "2026-01-05"})
    assert first.status_code == 201, first.text
    assert first.json()["amount_minor"] == 10_000 and first.json()["posted"] is True
    assert client.post(base, json={"business_date": "2026-01-05"}).status_code == 200
    assert [s["amount_minor"] for s in client.get(base).json()] == [10_000]
    early = client.post(base, json={"business_date": "2026-01-06"})
    assert early.status_code == 422 and early.json()["errors"][0]["code"] == "day_not_over"
    travel = partner_client(app, *TRAVEL)
    with pytest.raises(PermissionDenied):
        travel.post("/v1/credit_pay/merchants/air/settlements", json={"business_date": "2026-01-05"})


def test_staff_settle_in_the_cli(tmp_path: Path, monkeypatch, sim_clock) -> None:
    monkeypatch.setattr("products.credit_pay.cli.console", Console(width=300))
    config_file = tmp_path / "sceneos.toml"
    config_file.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    with open_app(str(config_file)) as app:
        no = open_account(app)
        sell(app, no, "a", 10_000)
    runner = CliRunner()
    common = ["-t", "bank", "-c", str(config_file)]
    # The CLI's app runs on the real clock: the sale is today, 2099 has not ended, 2020 had no sale.
    early = runner.invoke(cli, ["settle", "air", "--date", "2099-01-01", *common])
    assert early.exit_code == 1 and "has not ended" in early.output and "Traceback" not in early.output
    bad = runner.invoke(cli, ["settle", "air", "--date", "yesterday", *common])
    assert bad.exit_code == 1 and "--date" in bad.output
    done = runner.invoke(cli, ["settle", "air", "--date", "2020-01-01", *common])
    assert done.exit_code == 0 and "nothing to settle" in done.output, done.output
    listed = runner.invoke(cli, ["settlements", "air", *common])
    assert listed.exit_code == 0 and "credit-pay settlements of air" in listed.output


EXAMPLES = itertools.count(1)


@given(
    days=st.lists(st.tuples(st.integers(0, 50_000), st.integers(0, 30_000)), min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_settled_in_any_order_the_payouts_are_the_most_ever_owed(make_sceneos, sim_clock, days, order) -> None:
    """Each day a sale and a refund of part of it; settling the days in a random order pays, in
    all, the most the merchant was owed at the end of any day settled (never more), and what the
    payable still holds is exactly the rest."""
    example = next(EXAMPLES)
    app = make_sceneos(config())
    no = open_account(app, sequence=example)
    merchant = f"m{example}"
    start = date(2026, 2, 1) + timedelta(days=10 * example)
    owed_by_day, owed = [], 0
    for offset, (sale, refund) in enumerate(days):
        move_to(sim_clock, start + timedelta(days=offset))
        if sale:
            sell(app, no, f"{merchant}-{offset}", sale, merchant_id=merchant)
            if refund and refund < sale:
                run(app, lambda pay, o=offset, r=refund: pay.refund(f"{merchant}-{o}", f"{merchant}-r-{o}", r))
                sale -= refund
            owed += sale
        owed_by_day.append(owed)
    move_to(sim_clock, start + timedelta(days=len(days)))
    settled_days = list(range(len(days)))
    order.shuffle(settled_days)
    if owed == 0:
        return  # no merchant payable was ever opened: nothing to settle
    paid = sum(settle(app, merchant, start + timedelta(days=d))[0].amount_minor for d in settled_days)
    assert paid == max(owed_by_day)
    assert ledger_figures(app, merchant)[0] == owed - paid
    ledger_check(app)
