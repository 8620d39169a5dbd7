"""The QR sale's hot path (see "Benchmark" in docs/payments.md): rows read once per unit of work,
idempotency found at the insert, merchant and fee accounts never row-locked, and a bound on the
statements a sale sends, so a regression in throughput shows up here and not only in the benchmark."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from core.errors import Conflict, NotFound
from infra.ledger.models import LedgerAccount, LedgerBalance
from products.payments.errors import WrongState
from products.payments.models import Payment
from tests.payments.conftest import fund_wallet, ledger_call, service_call, sign_in

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
_SALE_NO = itertools.count(1)  # unique request ids and bills across Hypothesis examples on one app


class StatementLog:
    """The SQL statements the app's engine sends while active (cursor executions, COMMIT excluded)."""

    def __init__(self, app) -> None:
        self.engine = app.tenant("bank").session_factory.kw["bind"]
        self.statements: list[str] = []

    def _record(self, _conn, _cursor, statement, _params, _context, _many) -> None:
        self.statements.append(" ".join(statement.split()))

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.statements if s.upper().startswith(prefix))


def _sale(app, shift_no: str, tag: str, amount_minor: int = 12_650):
    qr = service_call(app, lambda svc: svc.create_qr(shift_no, amount_minor, f"B{tag}", f"qr-{tag}"))
    quote = service_call(app, lambda svc: svc.resolve(qr.payload))

    def pay(svc):
        paid = svc.pay(qr.payload, "cust:alice", f"pay-{tag}")
        return paid, svc.resolve(qr.payload)  # as the pay route does: the quote in the same unit of work

    paid, again = service_call(app, pay)
    return qr, quote, paid, again


@BOTH
def test_a_sale_reads_each_row_once_per_unit_of_work_and_updates_the_payment_once(station) -> None:
    fund_wallet(station, "cust:alice", 1_000_000)
    shift = sign_in(station, "C001", "1234", "win1")
    _sale(station, shift.shift_no, "warm")  # the first sale of a process prepares its statements
    with StatementLog(station) as log:
        _qr, quote, paid, again = _sale(station, shift.shift_no, "1")
    assert paid.status == "succeeded" and again.status == "succeeded" and quote.terminal_label == "Window 1"
    merchant_reads = [s for s in log.statements if s.startswith("SELECT") and "FROM payments_merchants" in s
                      and "payments_shifts" not in s and "payments_payments" not in s]
    # The shift, merchant and terminal come in one statement at the window; payment, merchant and
    # terminal in one when resolving and one (locked) when paying; the quote after paying reads nothing.
    assert log.count("SELECT PAYMENTS_SHIFTS.ID") == 1
    assert sum(1 for s in log.statements if s.startswith("SELECT payments_payments.id")) == 2
    # Only the merchants' webhook routing of each event (its own unit of work) reads the merchant alone.
    assert len(merchant_reads) <= 3
    assert sum(1 for s in log.statements if s.startswith("SELECT payments_terminals.id")) == 0
    assert log.count("UPDATE PAYMENTS_PAYMENTS") == 1  # created -> pending -> succeeded: one UPDATE
    # The payments module's own statements (not the ledger's, the outbox's or the entry's).
    # The payments module's own statements in the sale's three units of work (not the ledger's, the
    # outbox's or the entry's): the joined read and the insert; the joined read; the locked joined
    # read and the one UPDATE.
    own = [s for s in log.statements if "payments_" in s.split(" WHERE ")[0] and s not in merchant_reads]
    assert len(own) == 5, own


@BOTH
def test_the_merchant_and_fee_accounts_are_unconstrained_and_never_locked(station) -> None:
    fund_wallet(station, "cust:alice", 1_000_000)
    shift = sign_in(station, "C001", "1234", "win1")
    _sale(station, shift.shift_no, "1")

    def accounts(ledger):
        session = ledger.session
        rows = {a.code: a for a in session.scalars(select(LedgerAccount))}
        balance_rows = {rows_by_id.code for rows_by_id in rows.values()
                        if session.scalar(select(func.count()).select_from(LedgerBalance)
                                          .where(LedgerBalance.account_id == rows_by_id.id))}
        return {code: a.balance_constraint for code, a in rows.items()}, balance_rows

    constraints, with_balance_row = ledger_call(station, accounts)
    assert constraints["merchant:station1"] == "none" and constraints["bank:payments:fees"] == "none"
    # Only a constrained account has a balance row, which is what a posting locks.
    assert "merchant:station1" not in with_balance_row and "bank:payments:fees" not in with_balance_row
    assert "cust:alice" in with_balance_row


@BOTH
def test_a_retry_finds_its_payment_even_after_the_shift_closed_and_a_reused_id_is_refused(station) -> None:
    shift = sign_in(station, "C001", "1234", "win1")
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 500, "B1", "q1"))
    cash = service_call(station, lambda svc: svc.record_cash(shift.shift_no, 700, "B2", "c1"))
    assert service_call(station, lambda svc: svc.create_qr(shift.shift_no, 500, "B1", "q1")) == qr
    with pytest.raises(Conflict):
        service_call(station, lambda svc: svc.create_qr(shift.shift_no, 501, "B1", "q1"))
    with pytest.raises(Conflict):
        service_call(station, lambda svc: svc.record_cash(shift.shift_no, 500, "B1", "q1"))
    service_call(station, lambda svc: svc.sign_out(shift.shift_no))
    assert service_call(station, lambda svc: svc.record_cash(shift.shift_no, 700, "B2", "c1")) == cash
    with pytest.raises(WrongState):
        service_call(station, lambda svc: svc.record_cash(shift.shift_no, 700, "B2", "c2"))
    with pytest.raises(Conflict):
        service_call(station, lambda svc: svc.record_cash(shift.shift_no, 701, "B2", "c1"))
    with pytest.raises(NotFound):
        service_call(station, lambda svc: svc.record_cash("shf_nosuchshift", 700, "B2", "c3"))

    def count(svc):
        return svc.session.scalar(select(func.count()).select_from(Payment))

    assert service_call(station, count) == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_creates_with_one_request_id_make_one_payment(station) -> None:
    shift = sign_in(station, "C001", "1234", "win1")
    start = threading.Barrier(4)

    def create(_i: int):
        start.wait()
        return service_call(station, lambda svc: svc.create_qr(shift.shift_no, 900, "B9", "same-request"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        views = list(pool.map(create, range(4)))
    # The losers wait for the winner's insert on the unique key and answer with its payment.
    assert len({v.payment_no for v in views}) == 1
    assert service_call(station, lambda svc: svc.session.scalar(
        select(func.count()).select_from(Payment).where(Payment.request_id == "same-request"))) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(st.integers(min_value=1, max_value=300_000), min_size=1, max_size=6))
def test_sales_in_any_amounts_pay_the_merchant_less_fees_and_balance(station, amounts) -> None:
    """Whatever the amounts, each sale moves exactly its amount: the wallet down by the sum, the
    merchant up by the sum less the fees, fee income by the fees, and the ledger balances."""
    fund_wallet(station, "cust:alice", 10**9)
    shift = sign_in(station, "C001", "1234", "win1")
    before = ledger_call(station, lambda ledger: {c: ledger.balance(c).net_posted_minor
                                                  for c in ("cust:alice", "merchant:station1", "bank:payments:fees")})
    fees = 0
    for amount in amounts:
        _qr, quote, paid, again = _sale(station, shift.shift_no, f"h{next(_SALE_NO)}", amount)
        assert paid.status == "succeeded" and again.amount_minor == quote.amount_minor == amount
        fees += paid.fee_minor
    after = ledger_call(station, lambda ledger: {c: ledger.balance(c).net_posted_minor
                                                 for c in ("cust:alice", "merchant:station1", "bank:payments:fees")})
    assert before["cust:alice"] - after["cust:alice"] == sum(amounts)
    assert after["merchant:station1"] - before["merchant:station1"] == sum(amounts) - fees
    assert after["bank:payments:fees"] - before["bank:payments:fees"] == fees
    assert ledger_call(station, lambda ledger: ledger.trial_balance("CNY").balanced)
