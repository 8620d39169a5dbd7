"""Concurrent refunds and payments on PostgreSQL: row locks keep refunds within what was paid and a
QR paid once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import SceneOSError
from tests.payments.conftest import approve, fund_wallet, ledger_call, service_call, sign_in


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_refunds_never_exceed_the_paid_amount(station) -> None:
    fund_wallet(station, "cust:alice", 50_000)
    shift = sign_in(station, "C001", "1234", "win1")
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 12_650, "B1", "q1"))
    service_call(station, lambda svc: svc.pay(qr.payload, "cust:alice", "w1")).raise_unless_paid()
    supervisor = approve(station)

    def refund(i: int) -> str:
        try:
            service_call(station, lambda svc: svc.refund(qr.payment_no, 3_000, supervisor, f"rf-{i}"))
            return "ok"
        except SceneOSError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(refund, range(6)))
    assert sorted(outcomes) == ["ok"] * 4 + ["refund_exceeds_paid"] * 2
    assert service_call(station, lambda svc: svc.get_payment(qr.payment_no)).refunded_minor == 12_000
    assert ledger_call(station, lambda ledger: ledger.balance("cust:alice").net_posted_minor) == 50_000 - 650

    qr2 = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 1_000, "B2", "q2"))

    def pay(i: int) -> str:
        try:
            return service_call(station, lambda svc: svc.pay(qr2.payload, "cust:alice", f"w2-{i}")).status
        except SceneOSError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=4) as pool:
        paid = list(pool.map(pay, range(4)))
    assert sorted(paid) == ["succeeded"] + ["wrong_state"] * 3
