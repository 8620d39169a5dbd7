"""A scripted day at the coach station: terminal and merchant day statements, the merchant's
settlement (gross, fees, net) posted by the idempotent ``payments.settlement`` job, and CSV and
JSON exports that parse back to the same figures."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from infra.compute.service import JobRunner
from products.payments.errors import DayNotOver
from products.payments.statements import decimal_amount
from tests.payments.conftest import approve, fund_wallet, ledger_call, service_call, sign_in

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
DAY = date(2026, 1, 1)  # sim_clock starts 2026-01-01T00:00Z = 08:00 in Asia/Shanghai


def scripted_day(app, sim_clock):
    """Window 1 (C001): QR 126.50, code 30.00, cash 20.00; window 2 (C002): QR 50.00, a QR that
    fails, cash 8.00; a supervisor refunds 26.50 of the first QR."""
    fund_wallet(app, "cust:alice", 100_000, owner="cus_alice")
    fund_wallet(app, "cust:carol", 100, owner="cus_carol")
    w1 = sign_in(app, "C001", "1234", "win1")
    w2 = sign_in(app, "C002", "2345", "win2")

    def qr(shift, amount, bill, rid, payer="cust:alice"):
        view = service_call(app, lambda svc: svc.create_qr(shift.shift_no, amount, bill, rid))
        return service_call(app, lambda svc: svc.pay(view.payload, payer, f"w-{rid}"))

    first = qr(w1, 12_650, "TK-1", "r1")  # fee 0.759 -> 0.76
    code = service_call(app, lambda svc: svc.issue_code("cus_alice", "c-1", payer_account="cust:alice"))
    service_call(app, lambda svc: svc.scan_code(w1.shift_no, code.code, 3_000, "TK-2", "s-1"))  # fee 0.18
    service_call(app, lambda svc: svc.record_cash(w1.shift_no, 2_000, "TK-3", "cash-1"))
    sim_clock.advance(timedelta(hours=2))
    qr(w2, 5_000, "TK-4", "r2")  # fee 0.30
    assert qr(w2, 900, "TK-5", "r3", payer="cust:carol").status == "failed"
    service_call(app, lambda svc: svc.record_cash(w2.shift_no, 800, "TK-6", "cash-2"))
    service_call(app, lambda svc: svc.refund(first.payment_no, 2_650, approve(app), "rf-1"))  # fee back 0.15
    return first


def rows_by_kind(rows):
    return {(r["kind"], r["tender"]): (r["count"], r["amount"]) for r in rows}


@BOTH
def test_a_days_statements_settlement_and_job(station, sim_clock) -> None:
    scripted_day(station, sim_clock)
    w1 = service_call(station, lambda svc: svc.terminal_statement("win1", DAY))
    assert {line.tender: (line.count, line.amount_minor) for line in w1.sales} == {
        "qr": (1, 12_650), "cash": (1, 2_000), "code": (1, 3_000)}
    assert {line.tender: (line.count, line.amount_minor) for line in w1.refunds} == {"qr": (1, 2_650), "cash": (0, 0)}
    assert (w1.sales_minor, w1.refunds_minor, w1.net_minor, w1.fees_minor) == (17_650, 2_650, 15_000, 76 + 18 - 15)
    w2 = service_call(station, lambda svc: svc.terminal_statement("win2", DAY))
    assert (w2.sales_minor, w2.refunds_minor, w2.net_minor, w2.fees_minor) == (5_800, 0, 5_800, 30)
    merchant = service_call(station, lambda svc: svc.merchant_statement("station1", DAY))
    assert merchant.terminals == ["win1", "win2"]
    assert {line.tender: (line.count, line.amount_minor) for line in merchant.sales} == {
        "qr": (2, 17_650), "cash": (2, 2_800), "code": (1, 3_000)}
    assert (merchant.sales_minor, merchant.refunds_minor, merchant.net_minor) == (23_450, 2_650, 20_800)
    assert merchant.net_minor == w1.net_minor + w2.net_minor
    # Nothing on the next day.
    assert service_call(station, lambda svc: svc.merchant_statement("station1", DAY + timedelta(days=1))).sales_minor == 0

    # Settlement: non-cash only. Gross 206.50, refunds 26.50, fees 0.76+0.18+0.30-0.15 = 1.09.
    preview = service_call(station, lambda svc: svc.settlement("station1", DAY))
    assert (preview.gross_minor, preview.refunds_minor, preview.fees_minor, preview.net_minor, preview.posted) == (
        20_650, 2_650, 109, 17_891, False)
    assert (preview.payment_count, preview.refund_count) == (3, 1)
    payable = ledger_call(station, lambda ledger: ledger.balance("merchant:station1").net_posted_minor)
    assert payable == preview.net_minor  # the day's settlement is what the day put on the payable account
    with pytest.raises(DayNotOver):
        service_call(station, lambda svc: svc.settle("station1", DAY))

    sim_clock.set(datetime(2026, 1, 1, 16, 30, tzinfo=sim_clock.now().tzinfo))  # 00:30 next day in Shanghai
    report = JobRunner(station).run("bank", "payments.settlement", DAY)
    assert report.status == "completed" and report.partitions_done == 1
    posted = service_call(station, lambda svc: svc.settlement("station1", DAY))
    assert posted.posted and posted.net_minor == 17_891 and posted.entry_id == "payments:settlement:station1:2026-01-01"

    def balances(ledger):
        return {c: ledger.balance(c).net_posted_minor for c in
                ("merchant:station1", "bank:payments:merchant_settlement", "bank:payments:fees")}

    after = ledger_call(station, balances)
    assert after == {"merchant:station1": 0, "bank:payments:merchant_settlement": 17_891, "bank:payments:fees": 109}
    # Re-running the day changes nothing: the job's run, and the service itself.
    assert JobRunner(station).run("bank", "payments.settlement", DAY).already_completed
    again, created = service_call(station, lambda svc: svc.settle("station1", DAY))
    assert not created and again == posted
    assert ledger_call(station, balances) == after
    assert ledger_call(station, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0


def test_csv_and_json_exports_parse_back_to_the_same_figures(station, sim_clock, http_client) -> None:
    scripted_day(station, sim_clock)
    bank = http_client(station)
    base = "/v1/tenants/bank/payments"
    for path in (f"{base}/terminals/win1/statement", f"{base}/merchants/station1/statement"):
        as_json = bank.get(path, params={"day": DAY.isoformat()})
        assert as_json.headers["content-type"].startswith("application/json")
        document = as_json.json()
        as_csv = bank.get(path, params={"day": DAY.isoformat(), "format": "csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert list(rows[0]) == ["scope", "id", "merchant_id", "day", "currency", "kind", "tender", "count", "amount"]
        by_kind = rows_by_kind(rows)
        for line in document["sales"]:
            assert by_kind[("sale", line["tender"])] == (str(line["count"]), line["amount"])
            assert Decimal(line["amount"]) * 100 == line["amount_minor"]
        for key in ("sales", "refunds", "fees", "net"):
            assert Decimal(by_kind[(key, "")][1]) * 100 == document[f"{key}_minor"]
        # The Accept header works too.
        negotiated = bank.get(path, params={"day": DAY.isoformat()}, headers={"Accept": "text/csv"})
        assert negotiated.text == as_csv.text
    settlement_json = bank.get(f"{base}/merchants/station1/settlement", params={"day": DAY.isoformat()}).json()
    [row] = list(csv.DictReader(io.StringIO(bank.get(f"{base}/merchants/station1/settlement",
                                                      params={"day": DAY.isoformat(), "format": "csv"}).text)))
    assert (row["gross"], row["refunds"], row["fees"], row["net"], row["posted"]) == (
        "206.50", "26.50", "1.09", "178.91", "false")
    assert all(Decimal(row[k]) * 100 == settlement_json[f"{k}_minor"] for k in ("gross", "refunds", "fees", "net"))
    assert bank.get(f"{base}/merchants/station1/statement", params={"day": "2026-13-01"}).status_code == 422
    bad = bank.get(f"{base}/merchants/station1/statement", params={"day": DAY.isoformat(), "format": "xml"})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_failed")
    early = bank.post(f"{base}/merchants/station1/settlement", params={"day": DAY.isoformat()})
    assert (early.status_code, early.json()["code"]) == (422, "day_not_over")
    sim_clock.advance(timedelta(days=1))
    assert bank.post(f"{base}/merchants/station1/settlement", params={"day": DAY.isoformat()}).status_code == 201
    assert bank.post(f"{base}/merchants/station1/settlement", params={"day": DAY.isoformat()}).status_code == 200


def test_statements_and_settlement_in_the_cli(station, sim_clock, monkeypatch) -> None:
    from contextlib import contextmanager

    from products.payments import cli as payments_cli

    scripted_day(station, sim_clock)
    sim_clock.advance(timedelta(days=1))

    @contextmanager
    def same_app(config):
        yield station

    monkeypatch.setattr(payments_cli, "open_app", same_app)
    monkeypatch.setattr(payments_cli, "console", Console(width=200))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(payments_cli.cli, [*args, "--tenant", "bank"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    terminal = run("terminal-statement", "win1", "--day", "2026-01-01")
    assert "126.50 CNY" in terminal and "150.00 CNY" in terminal and "code" in terminal
    assert "208.00 CNY" in run("merchant-statement", "station1", "--day", "2026-01-01")
    preview = run("settlement", "station1", "--day", "2026-01-01")
    assert "178.91 CNY" in preview and "not posted" in preview
    posted = run("settlement", "station1", "--day", "2026-01-01", "--post")
    assert "payments:settlement:station1:2026-01-01" in posted


@settings(max_examples=40)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_decimal_amounts_are_exact(amount_minor: int) -> None:
    text = decimal_amount(amount_minor, "CNY")
    assert Decimal(text) * 100 == amount_minor and len(text.split(".")[1]) == 2


_examples = iter(range(10**6))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=500_000), st.integers(min_value=0, max_value=100)),
                min_size=1, max_size=4))
def test_a_settlement_moves_exactly_what_its_day_added(station, sim_clock, sales) -> None:
    """Whatever the day's sales and partial refunds, the settlement's fees are the per-payment
    discounts (rounded half-even) less the pro-rata parts refunded, its net is what the day put on
    the merchant's payable account, and after settling that account is back to zero."""
    n = next(_examples)
    sim_clock.advance(days=1)
    day = station.tenant("bank").business_date()
    fund_wallet(station, "cust:prop", 10**9 + n, owner="cus_prop")
    shift = sign_in(station, "C001", "1234", "win1")
    supervisor = approve(station)
    expected_fees = expected_net = 0
    for i, (amount, refund_pct) in enumerate(sales):
        view = service_call(station, lambda svc, a=amount, i=i: svc.create_qr(shift.shift_no, a, "B", f"p{n}-{i}"))
        paid = service_call(station, lambda svc, v=view, i=i: svc.pay(v.payload, "cust:prop", f"w{n}-{i}"))
        fee = int((Decimal(amount) * Decimal("0.006")).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        assert paid.fee_minor == fee
        refund = amount * refund_pct // 100
        refund_fee = fee * refund // amount
        if refund:
            service_call(station, lambda svc, p=paid, r=refund, i=i: svc.refund(p.payment_no, r, supervisor, f"rf{n}-{i}"))
        expected_fees += fee - refund_fee
        expected_net += amount - fee - (refund - refund_fee)

    def payable(ledger):
        return ledger.balance("merchant:station1").net_posted_minor

    before = ledger_call(station, payable)
    sim_clock.advance(days=1)
    view, created = service_call(station, lambda svc: svc.settle("station1", day))
    assert created and (view.fees_minor, view.net_minor) == (expected_fees, expected_net)
    assert before == expected_net and ledger_call(station, payable) == 0
    assert ledger_call(station, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0
