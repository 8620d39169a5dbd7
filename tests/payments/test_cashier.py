"""Operators, shifts, QR and cash payments, refunds and statements on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import Conflict, NotFound, ValidationFailed
from core.hookspecs import hookimpl
from products.payments.errors import (
    Forbidden,
    InvalidQr,
    OperatorLocked,
    PaymentFailed,
    PinRejected,
    QrExpired,
    RefundExceedsPaid,
    WrongState,
)
from products.payments.service import OperatorDraft
from tests.payments.conftest import approve, bank_config, fund_wallet, ledger_call, service_call, sign_in

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def balances(app, *codes):
    return ledger_call(app, lambda ledger: {c: ledger.balance(c).net_posted_minor for c in codes})


@BOTH
def test_a_qr_payment_is_paid_from_the_wallet_refunded_and_in_the_statement(station, sim_clock) -> None:
    fund_wallet(station, "cust:alice", 50_000)
    shift = sign_in(station, "C001", "1234", "win1")
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 12_650, "T20261125-1", "req-1"))
    assert qr.status == "created" and qr.fee_minor == 76  # 126.50 * 0.6% = 0.759 -> 0.76 (HALF_EVEN)
    assert service_call(station, lambda svc: svc.create_qr(shift.shift_no, 12_650, "T20261125-1", "req-1")) == qr

    quote = service_call(station, lambda svc: svc.resolve(qr.payload))
    assert (quote.merchant_name, quote.amount, quote.bill_no, quote.terminal_label) == (
        "Coach Station", "126.50", "T20261125-1", "Window 1")

    paid = service_call(station, lambda svc: svc.pay(qr.payload, "cust:alice", "wallet-1")).raise_unless_paid()
    assert paid.status == "succeeded" and paid.employee_no == "C001" and paid.terminal_id == "win1"
    again = service_call(station, lambda svc: svc.pay(qr.payload, "cust:alice", "wallet-1"))
    assert again == paid  # a retry moves nothing
    with pytest.raises(WrongState):
        service_call(station, lambda svc: svc.pay(qr.payload, "cust:alice", "wallet-2"))
    assert balances(station, "cust:alice", "merchant:station1", "bank:payments:fees") == {
        "cust:alice": 50_000 - 12_650, "merchant:station1": 12_650 - 76, "bank:payments:fees": 76}

    cash = service_call(station, lambda svc: svc.record_cash(shift.shift_no, 3_000, "T20261125-2", "req-2"))
    assert cash.status == "succeeded" and cash.tender == "cash"

    supervisor = approve(station)
    with pytest.raises(RefundExceedsPaid):
        service_call(station, lambda svc: svc.refund(qr.payment_no, 12_651, supervisor, "rf-0"))
    part = service_call(station, lambda svc: svc.refund(qr.payment_no, 5_000, supervisor, "rf-1", "seat change"))
    assert service_call(station, lambda svc: svc.refund(qr.payment_no, 5_000, supervisor, "rf-1")) == part
    with pytest.raises(Conflict):
        service_call(station, lambda svc: svc.refund(qr.payment_no, 4_000, supervisor, "rf-1"))
    with pytest.raises(RefundExceedsPaid):
        service_call(station, lambda svc: svc.refund(qr.payment_no, 7_651, supervisor, "rf-2"))
    service_call(station, lambda svc: svc.refund(qr.payment_no, 7_650, supervisor, "rf-3"))
    # Fully refunded: the payer has everything back, the fee went back too, nothing is left over.
    assert balances(station, "cust:alice", "merchant:station1", "bank:payments:fees") == {
        "cust:alice": 50_000, "merchant:station1": 0, "bank:payments:fees": 0}
    assert ledger_call(station, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0

    statement = service_call(station, lambda svc: svc.sign_out(shift.shift_no))
    sales = {line.tender: (line.count, line.amount_minor) for line in statement.sales}
    refunds = {line.tender: (line.count, line.amount_minor) for line in statement.refunds}
    assert sales == {"qr": (1, 12_650), "cash": (1, 3_000)}
    assert refunds == {"qr": (2, 12_650), "cash": (0, 0)}
    assert statement.net_minor == 3_000 and statement.closed_at == sim_clock.now()
    with pytest.raises(WrongState):
        service_call(station, lambda svc: svc.record_cash(shift.shift_no, 100, "B", "req-3"))


@BOTH
def test_wrong_pins_are_counted_and_lock_the_operator(station, sim_clock) -> None:
    for _ in range(2):
        with pytest.raises(PinRejected):
            sign_in(station, "C001", "0000", "win1")
    with pytest.raises(OperatorLocked):
        sign_in(station, "C001", "0000", "win1")
    with pytest.raises(OperatorLocked):  # even the right PIN, while locked
        sign_in(station, "C001", "1234", "win1")
    with pytest.raises(PinRejected):  # an unknown employee number gets the same answer as a wrong PIN
        sign_in(station, "X999", "1234", "win1")
    sim_clock.advance(timedelta(seconds=601))
    shift = sign_in(station, "C001", "1234", "win1")
    assert shift.employee_no == "C001"
    stored = service_call(station, lambda svc: svc._operator_row("C001").pin_hash)
    assert stored.startswith("scrypt$") and "1234" not in stored


@BOTH
def test_one_open_shift_per_operator(station) -> None:
    first = sign_in(station, "C001", "1234", "win1")
    assert sign_in(station, "C001", "1234", "win1") == first  # signing in again at the same window
    with pytest.raises(Conflict):
        sign_in(station, "C001", "1234", "win2")
    other = sign_in(station, "C002", "2345", "win2")
    assert other.shift_no != first.shift_no
    service_call(station, lambda svc: svc.sign_out(first.shift_no))
    assert service_call(station, lambda svc: svc.sign_out(first.shift_no)).shift_no == first.shift_no  # idempotent
    second = sign_in(station, "C001", "1234", "win2")
    assert second.shift_no != first.shift_no and second.terminal_id == "win2"


def test_an_expired_qr_cannot_be_paid_and_stays_expired(station, sim_clock) -> None:
    fund_wallet(station, "cust:bob", 10_000)
    shift = sign_in(station, "C002", "2345", "win2")
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 500, "B1", "q1"))
    sim_clock.advance(timedelta(seconds=301))
    view = service_call(station, lambda svc: svc.pay(qr.payload, "cust:bob", "w1"))
    with pytest.raises(QrExpired):
        view.raise_unless_paid()
    assert service_call(station, lambda svc: svc.get_payment(qr.payment_no)).status == "expired"
    assert balances(station, "cust:bob")["cust:bob"] == 10_000
    qr2 = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 500, "B2", "q2"))
    sim_clock.advance(timedelta(seconds=301))
    assert service_call(station, lambda svc: svc.expire_due()) == [qr2.payment_no]


def test_too_little_money_fails_the_payment_and_moves_nothing(station) -> None:
    fund_wallet(station, "cust:carol", 100)
    shift = sign_in(station, "C001", "1234", "win1")
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 500, "B1", "q1"))
    view = service_call(station, lambda svc: svc.pay(qr.payload, "cust:carol", "w1"))
    assert view.status == "failed" and view.failure_code == "insufficient_available_balance"
    with pytest.raises(PaymentFailed):
        view.raise_unless_paid()
    assert balances(station, "cust:carol", "merchant:station1") == {"cust:carol": 100, "merchant:station1": 0}
    with pytest.raises(WrongState):
        service_call(station, lambda svc: svc.refund(qr.payment_no, 100, approve(station), "rf"))


def test_bad_input_is_refused_and_changes_nothing(station) -> None:
    fund_wallet(station, "cust:dan", 10_000)
    shift = sign_in(station, "C001", "1234", "win1")
    with pytest.raises(ValidationFailed):
        service_call(station, lambda svc: svc.create_qr(shift.shift_no, 0, "B1", "q0"))
    with pytest.raises(ValidationFailed):
        service_call(station, lambda svc: svc.create_qr(shift.shift_no, 100, "bad bill!", "q0"))
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 500, "B1", "q1"))
    with pytest.raises(InvalidQr):
        service_call(station, lambda svc: svc.resolve(qr.payload[:-1] + ("0" if qr.payload[-1] != "0" else "1")))
    with pytest.raises(ValidationFailed):  # the bank's own accounts cannot pay
        service_call(station, lambda svc: svc.pay(qr.payload, "merchant:station1", "w1"))
    with pytest.raises(ValidationFailed):
        service_call(station, lambda svc: svc.pay(qr.payload, "cust:nobody", "w1"))
    with pytest.raises(Forbidden):  # a cashier cannot approve refunds
        service_call(station, lambda svc: svc.refund(qr.payment_no, 100, approve(station, "C002", "2345"), "rf"))
    cancelled = service_call(station, lambda svc: svc.cancel(qr.payment_no))
    assert cancelled.status == "cancelled"
    with pytest.raises(WrongState):
        service_call(station, lambda svc: svc.pay(qr.payload, "cust:dan", "w2"))
    with pytest.raises(NotFound):
        sign_in(station, "C002", "2345", "nowhere")
    with pytest.raises(Conflict):
        service_call(station, lambda svc: svc.add_operator(OperatorDraft(
            employee_no="C001", merchant_id="station1", name="Someone Else", role="cashier", pin="1111")))
    assert balances(station, "cust:dan")["cust:dan"] == 10_000


def test_merchants_come_from_configuration(station) -> None:
    merchants = service_call(station, lambda svc: svc.list_merchants())
    assert [m.merchant_id for m in merchants] == ["station1"]
    m = merchants[0]
    assert (m.mcc, m.fee_rate, m.settlement_account) == ("4131", "0.006", "merchant:station1")
    assert [t["terminal_id"] for t in m.stores[0]["terminals"]] == ["win1", "win2"]
    accounts = ledger_call(station, lambda ledger: ledger.get_account("merchant:station1"))
    assert accounts.owner_type == "merchant"
    assert service_call(station, lambda svc: svc.sync_configuration()) == ["station1"]  # idempotent


def test_operator_statement_covers_the_days_shifts(station, sim_clock) -> None:
    fund_wallet(station, "cust:erin", 10_000)
    day = station.tenant("bank").business_date()
    first = sign_in(station, "C002", "2345", "win1")
    service_call(station, lambda svc: svc.record_cash(first.shift_no, 1_000, "B1", "c1"))
    service_call(station, lambda svc: svc.sign_out(first.shift_no))
    second = sign_in(station, "C002", "2345", "win2")
    qr = service_call(station, lambda svc: svc.create_qr(second.shift_no, 2_000, "B2", "q2"))
    service_call(station, lambda svc: svc.pay(qr.payload, "cust:erin", "w2")).raise_unless_paid()
    service_call(station, lambda svc: svc.refund(qr.payment_no, 300, approve(station), "rf"))
    day_statement = service_call(station, lambda svc: svc.operator_statement("C002", day))
    assert day_statement.shift_nos == [first.shift_no, second.shift_no]
    assert (day_statement.sales_minor, day_statement.refunds_minor, day_statement.net_minor) == (3_000, 300, 2_700)
    other_day = service_call(station, lambda svc: svc.operator_statement("C002", day + timedelta(days=1)))
    assert other_day.shift_nos == [] and other_day.net_minor == 0


class EventRecorder:
    def __init__(self) -> None:
        self.events: list = []

    @hookimpl
    def sceneos_on_event(self, event) -> None:
        self.events.append(event)


def test_each_step_publishes_an_event_without_secrets(make_sceneos) -> None:
    recorder = EventRecorder()
    config = bank_config()
    config["tenants"]["bank"]["plugins"] = ["events"]
    app = make_sceneos(config, plugins={"events": recorder})
    service_call(app, lambda svc: svc.add_operator(OperatorDraft(
        employee_no="C001", merchant_id="station1", name="Wang Fang", role="cashier", pin="1234")))
    fund_wallet(app, "cust:fay", 1_000)
    shift = sign_in(app, "C001", "1234", "win1")
    qr = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 500, "B1", "q1"))
    service_call(app, lambda svc: svc.pay(qr.payload, "cust:fay", "w1"))
    types = [e.type for e in recorder.events]
    assert types == ["payments.operator.added", "payments.shift.opened", "payments.payment.created",
                     "payments.payment.pending", "payments.payment.succeeded"]
    assert recorder.events[-1].payload["employee_no"] == "C001" and recorder.events[-1].payload["terminal_id"] == "win1"
    assert all("1234" not in str(e.payload) and "pin" not in str(e.payload) for e in recorder.events)
