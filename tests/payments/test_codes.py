"""Payment codes (customer presented): issued once, short-lived, single-use, bound to the customer
and the funding source; the cashier scans it and the payer is debited at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.errors import Conflict, ValidationFailed
from core.sdk.errors import SceneOSAPIError
from core.testing.harness import partner_config, tenant_config
from products.payments.codes import code_hash, luhn_digit, well_formed
from products.payments.errors import InvalidPaymentCode, PaymentCodeExpired, PaymentCodeUsed, PaymentFailed
from products.payments.models import Payment, PaymentCode
from products.payments.service import OperatorDraft
from tests.payments.conftest import (
    OPERATORS,
    SETTINGS,
    STATION,
    fund_wallet,
    ledger_call,
    service_call,
    sign_in,
)

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
WALLET = ("wallet-key-1", "wallet-secret-0123456789abcdef")


def balances(app, *codes, tenant_id="bank"):
    return ledger_call(app, lambda ledger: {c: ledger.balance(c).net_posted_minor for c in codes}, tenant_id)


def payment_count(app, tenant_id="bank") -> int:
    return service_call(app, lambda svc: svc.session.scalar(select(func.count()).select_from(Payment)), tenant_id)


def issue(app, customer_no="cus_alice", request_id="c-1", account="cust:alice", tenant_id="bank", **extra):
    return service_call(app, lambda svc: svc.issue_code(customer_no, request_id, payer_account=account, **extra),
                        tenant_id)


def scan(app, shift_no, code, amount_minor=1_200, request_id="s-1", bill_no="TK-9", tenant_id="bank"):
    return service_call(app, lambda svc: svc.scan_code(shift_no, code, amount_minor, bill_no, request_id), tenant_id)


@BOTH
def test_a_code_pays_once_and_a_second_scan_changes_nothing(station, sim_clock) -> None:
    fund_wallet(station, "cust:alice", 5_000, owner="cus_alice")
    shift = sign_in(station, "C001", "1234", "win1")
    issued = issue(station)
    assert len(issued.code) == 18 and issued.code.startswith("28") and well_formed(issued.code)
    assert issued.expires_at == sim_clock.now() + timedelta(seconds=60)
    # Only a hash is stored, never the code.
    stored = service_call(station, lambda svc: svc.session.scalars(select(PaymentCode)).one())
    assert stored.code_hash == code_hash("bank", issued.code) and issued.code not in stored.code_hash

    paid = scan(station, shift.shift_no, issued.code)
    assert (paid.status, paid.tender, paid.funding_source, paid.code_ref) == ("succeeded", "code", "account",
                                                                               issued.code_ref)
    assert paid.fee_minor == 7  # 12.00 x 0.6% = 0.072 -> 0.07
    assert balances(station, "cust:alice", "merchant:station1", "bank:payments:fees") == {
        "cust:alice": 5_000 - 1_200, "merchant:station1": 1_200 - 7, "bank:payments:fees": 7}
    # The cashier's retry returns the same payment; nothing moves twice.
    assert scan(station, shift.shift_no, issued.code).payment_no == paid.payment_no
    # The same code again, for another sale: refused, nothing written.
    with pytest.raises(PaymentCodeUsed):
        scan(station, shift.shift_no, issued.code, request_id="s-2")
    assert payment_count(station) == 1
    assert balances(station, "cust:alice")["cust:alice"] == 3_800
    statement = service_call(station, lambda svc: svc.statement(shift.shift_no))
    assert {line.tender: line.amount_minor for line in statement.sales} == {"qr": 0, "cash": 0, "code": 1_200}
    assert ledger_call(station, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0


@BOTH
def test_an_expired_code_is_refused_and_changes_nothing(station, sim_clock) -> None:
    fund_wallet(station, "cust:alice", 5_000, owner="cus_alice")
    shift = sign_in(station, "C001", "1234", "win1")
    issued = issue(station)
    sim_clock.advance(timedelta(seconds=60))
    with pytest.raises(PaymentCodeExpired) as late:
        scan(station, shift.shift_no, issued.code)
    assert late.value.code == "payment_code_expired" and late.value.http_status == 422
    assert payment_count(station) == 0 and balances(station, "cust:alice")["cust:alice"] == 5_000


def test_unknown_malformed_and_replaced_codes_are_refused(station) -> None:
    fund_wallet(station, "cust:alice", 5_000, owner="cus_alice")
    shift = sign_in(station, "C001", "1234", "win1")
    first = issue(station)
    for bad in ("12345", first.code[:-1] + str((int(first.code[-1]) + 1) % 10), "x" * 18):
        with pytest.raises(InvalidPaymentCode):
            scan(station, shift.shift_no, bad)
    unknown = "28" + "0" * 15
    with pytest.raises(InvalidPaymentCode):
        scan(station, shift.shift_no, unknown + luhn_digit(unknown))
    # A retry of the issuing request replaces the code: the first stops working.
    second = issue(station)
    assert second.code != first.code and second.code_ref == first.code_ref
    with pytest.raises(InvalidPaymentCode):
        scan(station, shift.shift_no, first.code)
    assert scan(station, shift.shift_no, second.code).status == "succeeded"
    with pytest.raises(PaymentCodeUsed):  # and after use, the request cannot mint another
        issue(station)
    fund_wallet(station, "cust:bob", 100, owner="cus_bob")
    with pytest.raises(Conflict):  # same request id, other customer
        issue(station, customer_no="cus_bob", account="cust:bob")
    assert payment_count(station) == 1


def test_a_code_is_bound_to_its_customers_own_account(station) -> None:
    fund_wallet(station, "cust:alice", 5_000, owner="cus_alice")
    fund_wallet(station, "cust:bob", 5_000, owner="cus_bob")
    with pytest.raises(ValidationFailed) as not_hers:
        issue(station, customer_no="cus_alice", account="cust:bob")
    assert not_hers.value.details[0]["code"] == "unknown_account"
    with pytest.raises(ValidationFailed):
        issue(station, account=None)  # the account source needs an account
    assert service_call(station, lambda svc: svc.session.scalar(select(func.count()).select_from(PaymentCode))) == 0


def test_too_little_money_fails_the_payment_and_the_code_stays_usable(station) -> None:
    fund_wallet(station, "cust:alice", 500, owner="cus_alice")
    shift = sign_in(station, "C001", "1234", "win1")
    issued = issue(station)
    failed = scan(station, shift.shift_no, issued.code)
    assert (failed.status, failed.failure_code) == ("failed", "insufficient_available_balance")
    with pytest.raises(PaymentFailed):
        failed.raise_unless_paid()
    assert balances(station, "cust:alice")["cust:alice"] == 500
    assert scan(station, shift.shift_no, issued.code, amount_minor=400, request_id="s-2").status == "succeeded"


@BOTH
def test_another_banks_code_is_unknown_here(make_sceneos) -> None:
    modules = {"party": {}, "payments": SETTINGS}
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=modules), "bank_b": tenant_config(modules=modules)}})
    for tenant_id in ("bank", "bank_b"):
        service_call(app, lambda svc: svc.add_operator(OperatorDraft(employee_no="C001", merchant_id="station1",
                                                                     name="Wang", role="cashier", pin="1234")),
                     tenant_id)
    fund_wallet(app, "cust:alice", 5_000, owner="cus_alice")
    issued = issue(app)
    shift_b = service_call(app, lambda svc: svc.sign_in(svc.verify_pin("C001", "1234").raise_if_failed(), "win1"),
                           "bank_b")
    with pytest.raises(InvalidPaymentCode):
        scan(app, shift_b.shift_no, issued.code, tenant_id="bank_b")
    assert payment_count(app, "bank_b") == 0 and balances(app, "cust:alice")["cust:alice"] == 5_000


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_every_wrong_check_digit_is_caught(body: str) -> None:
    good = body + luhn_digit(body)
    assert well_formed(good)
    for digit in "0123456789":
        if digit != good[-1]:
            assert not well_formed(body + digit)


def test_codes_over_http_wallet_issues_cashier_scans(make_sceneos, http_client, partner_client) -> None:
    app = make_sceneos({
        "entry": {"webhook_poll_seconds": 0},
        "tenants": {"bank": tenant_config(
            modules={"party": {}, "entry": {}, "payments": {**SETTINGS, "merchants": [STATION]}},
            partners={"wallet": partner_config("Wallet", key_id=WALLET[0], secret=WALLET[1], scopes=["payments"])},
        )},
    })
    employee_no, name, role, pin = OPERATORS[0]
    service_call(app, lambda svc: svc.add_operator(OperatorDraft(employee_no=employee_no, merchant_id="station1",
                                                                 name=name, role=role, pin=pin)))
    fund_wallet(app, "cust:alice", 5_000, owner="cus_alice")
    wallet = partner_client(app, *WALLET)
    wallet.put("/v1/users/u-alice", json={"customer_no": "cus_alice"})
    with pytest.raises(SceneOSAPIError) as no_consent:
        wallet.post("/v1/payments/codes", json={"request_id": "c-1", "payer_account": "cust:alice"}, user_id="u-alice")
    assert no_consent.value.code == "consent_required"
    wallet.post("/v1/users/u-alice/consents", json={"scopes": ["payments"]})
    issued = wallet.post("/v1/payments/codes", json={"request_id": "c-1", "payer_account": "cust:alice"},
                         user_id="u-alice").data
    assert len(issued["code"]) == 18 and issued["funding_source"] == "account"

    bank = http_client(app)
    base = "/v1/tenants/bank/payments"
    shift = bank.post(f"{base}/shifts", json={"employee_no": "C001", "pin": "1234", "terminal_id": "win1"}).json()
    body = {"request_id": "s-1", "code": issued["code"], "amount_minor": 2_000, "bill_no": "TK-1"}
    paid = bank.post(f"{base}/shifts/{shift['shift_no']}/code", json=body)
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded"
    twice = bank.post(f"{base}/shifts/{shift['shift_no']}/code", json={**body, "request_id": "s-2"})
    assert (twice.status_code, twice.json()["code"]) == (409, "payment_code_used")
    bad = bank.post(f"{base}/shifts/{shift['shift_no']}/code", json={**body, "request_id": "s-3", "code": "123"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_payment_code")
    assert balances(app, "cust:alice")["cust:alice"] == 3_000
    with pytest.raises(SceneOSAPIError) as refused:  # scanning is the cashier's, not a partner's
        wallet.post(f"/v1/payments/shifts/{shift['shift_no']}/code", json={**body, "request_id": "s-4"})
    assert refused.value.status == 403


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_code_scanned_at_two_windows_at_once_pays_once(station) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from core.errors import SceneOSError

    fund_wallet(station, "cust:alice", 50_000, owner="cus_alice")
    shifts = [sign_in(station, "C001", "1234", "win1"), sign_in(station, "C002", "2345", "win2")]
    issued = issue(station)

    def attempt(i: int) -> str:
        try:
            return scan(station, shifts[i % 2].shift_no, issued.code, request_id=f"s-{i}").status
        except SceneOSError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(attempt, range(4)))
    assert sorted(outcomes) == ["payment_code_used"] * 3 + ["succeeded"]
    assert payment_count(station) == 1 and balances(station, "cust:alice")["cust:alice"] == 50_000 - 1_200
