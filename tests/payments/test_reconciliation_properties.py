"""Property: for any day of payments and any channel file made from it by leaving out, changing,
doubling and adding records, the set-based matcher finds exactly the differences a plain Python
model finds, and every record and expected payment is accounted for once."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from products.payments.models import Payment
from tests.payments.test_reconciliation import HEADER, recon

OPS = ("exact", "omit", "over", "under", "currency", "status", "twice")
STATUS_WORD = {"succeeded": "SUCCESS", "failed": "FAILED", "pending": "PENDING"}
_days = itertools.count()

payment = st.tuples(st.integers(min_value=1, max_value=10**9),
                    st.sampled_from(["succeeded", "succeeded", "succeeded", "failed", "expired"]),
                    st.sampled_from(OPS))


def channel_record(amount: int, status: str, op: str) -> tuple[int, str, str]:
    """What the channel's file says of one of our payments: amount, currency, status word."""
    word = STATUS_WORD.get(status, "SUCCESS")  # an expired QR the channel claims it settled
    if op == "over":
        return amount + 1, "CNY", word
    if op == "under":
        return amount - 1, "CNY", word
    if op == "currency":
        return amount, "USD", word
    if op == "status":
        return amount, "CNY", "FAILED" if status == "succeeded" else "SUCCESS"
    return amount, "CNY", word


def model(payments: list[tuple[int, str, str]], unknown: int) -> tuple[dict[str, int], int, int]:
    """Expected counts by kind, matched count and total difference, computed record by record."""
    kinds = dict.fromkeys(("missing_in_channel", "missing_in_ours", "amount_over", "amount_under",
                           "currency_mismatch", "status_mismatch", "duplicate_in_channel"), 0)
    matched = difference = 0
    for amount, status, op in payments:
        ours_settled = amount if status == "succeeded" else 0
        if op == "omit":
            if status in ("succeeded", "pending"):
                kinds["missing_in_channel"] += 1
                difference -= ours_settled
            continue
        line_amount, currency, word = channel_record(amount, status, op)
        line_status = {"SUCCESS": "succeeded", "FAILED": "failed", "PENDING": "pending"}[word]
        line_settled = line_amount if line_status == "succeeded" else 0
        if currency != "CNY":
            kinds["currency_mismatch"] += 1
        elif line_status != status:
            kinds["status_mismatch"] += 1
        elif line_amount != amount:
            kinds["amount_over" if line_amount > amount else "amount_under"] += 1
        else:
            matched += 1
        if currency == "CNY":
            difference += line_settled - ours_settled
        if op == "twice":
            kinds["duplicate_in_channel"] += 1
            difference += line_settled
    kinds["missing_in_ours"] = unknown
    difference += 100 * unknown
    return kinds, matched, difference


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)
@given(payments=st.lists(payment, max_size=12), unknown=st.integers(min_value=0, max_value=3))
def test_the_matcher_agrees_with_a_row_by_row_model(station, sim_clock, payments, unknown) -> None:
    n = next(_days)
    day = date(2026, 1, 1) + timedelta(days=n)
    if sim_clock.now() < datetime(2026, 6, 1, tzinfo=UTC):
        sim_clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)  # 11:00 in Shanghai
    numbers = [f"pay_prop{n:04d}x{i:03d}" for i in range(len(payments))]

    def seed(svc):
        for number, (amount, status, _op) in zip(numbers, payments, strict=True):
            svc.session.add(Payment(
                payment_no=number, request_id=f"r-{number}", tender="qr", status=status, merchant_id="station1",
                terminal_id="win1", shift_no="shf_prop", employee_no="C001", bill_no="B", amount_minor=amount,
                currency="CNY", fee_minor=0, refunded_minor=0, created_at=at, completed_at=at))

    recon(station, seed)
    rows = []
    for number, (amount, status, op) in zip(numbers, payments, strict=True):
        if op == "omit":
            continue
        line_amount, currency, word = channel_record(amount, status, op)
        rows += [f"C{len(rows) + k},{number},{line_amount // 100}.{line_amount % 100:02d},{currency},{word},"
                 for k in range(2 if op == "twice" else 1)]
    rows += [f"X{k},pay_unknown{n}_{k},1.00,CNY,SUCCESS," for k in range(unknown)]
    content = (HEADER + "".join(row + "\n" for row in rows)).encode()
    run, _ = recon(station, lambda svc: svc.receive(day, content, "csv", file_name=f"p{n}.csv", actor="prop"))
    kinds, matched, difference = model(payments, unknown)
    assert run.summary == kinds
    assert run.matched_count == matched
    assert run.line_count == len(rows)
    exceptions = recon(station, lambda svc: svc.exceptions(run.run_no, limit=1000))
    assert sum(e.difference_minor or 0 for e in exceptions) == difference
    assert run.our_count == sum(1 for _a, s, _o in payments if s == "succeeded")
