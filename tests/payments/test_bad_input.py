"""Every bad input named in issue 7 gets a clear error and changes nothing.

Wrong PIN (and the lockout it leads to), a refund above what was paid, paying an expired QR, a
payment code used twice, and a malformed statement file (CSV and camt.053). Each is sent the way it
arrives in production: the station's calls over the bank's routes, the wallet's through the
partner SDK. Each test asserts the problem+json answer (HTTP status, stable ``code``, a message
that says what is wrong) and then that nothing changed: a snapshot of the tables that hold money
and work (payments, refunds, shifts, codes, settlements, reconciliation runs, lines, exceptions
and audit, ledger entries, postings and holds) and of every ledger balance is the same as before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.sdk.errors import SceneOSAPIError
from core.testing.harness import partner_config, tenant_config
from infra.ledger.models import LedgerEntry, LedgerPending, LedgerPosting
from products.payments.emv import check_crc, crc16_ccitt_false
from products.payments.errors import RefundExceedsPaid
from products.payments.models import (
    Operator,
    Payment,
    PaymentCode,
    ReconAudit,
    ReconException,
    ReconLine,
    ReconRun,
    Refund,
    Settlement,
    Shift,
)
from products.payments.service import OperatorDraft
from tests.payments.conftest import (
    OPERATORS,
    SETTINGS,
    approve,
    fund_wallet,
    ledger_call,
    service_call,
    sign_in,
)

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
WALLET = ("wallet-key-bad", "wallet-secret-bad-0123456789abcdef")
ADMIN_KEY = "admin-key-bad-input-0123456789abcdef"
BASE = "/v1/tenants/bank/payments"
COUNTED = (Payment, Refund, Shift, PaymentCode, Settlement, ReconRun, ReconLine, ReconException, ReconAudit,
           LedgerEntry, LedgerPosting, LedgerPending)


@pytest.fixture
def app(make_sceneos):
    """The station (two windows, two cashiers and a supervisor), the bank's entry and a wallet
    partner; two passengers' accounts, owned by their customer numbers."""
    app = make_sceneos({
        "entry": {"webhook_poll_seconds": 0, "admin_api_keys": [ADMIN_KEY]},
        "tenants": {"bank": tenant_config(
            modules={"party": {}, "entry": {}, "payments": SETTINGS},
            partners={"wallet": partner_config("Wallet", key_id=WALLET[0], secret=WALLET[1], scopes=["payments"])},
        )},
    })
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)))
    fund_wallet(app, "cust:alice", 50_000, owner="cus_alice")
    fund_wallet(app, "cust:bob", 50_000, owner="cus_bob")
    return app


@pytest.fixture
def bank(app, http_client):
    """The station's side: the bank's routes, with the bank's admin key."""
    client = http_client(app)
    client.headers["X-SceneOS-Admin-Key"] = ADMIN_KEY
    return client


@pytest.fixture
def wallet(app, partner_client):
    """The wallet, acting for its users u-alice and u-bob, who consented to payments."""
    client = partner_client(app, *WALLET)
    for user, customer in (("u-alice", "cus_alice"), ("u-bob", "cus_bob")):
        client.put(f"/v1/users/{user}", json={"customer_no": customer})
        client.post(f"/v1/users/{user}/consents", json={"scopes": ["payments"]})
    return client


def snapshot(app) -> dict[str, Any]:
    """Row counts of everything that records money or work, every ledger balance, and every
    payment's status and refunded amount."""
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        session = uow.session
        counts = {model.__tablename__: session.scalar(select(func.count()).select_from(model)) for model in COUNTED}
        payments = dict(session.execute(select(Payment.payment_no, Payment.status)).all())
        refunded = dict(session.execute(select(Payment.payment_no, Payment.refunded_minor)).all())
        ledger = tenant.module("ledger").container.ledger(session=session)
        balances = {}
        for account in ledger.accounts():
            b = ledger.balance(account.code)
            balances[account.code] = (b.debits_posted_minor, b.credits_posted_minor, b.debits_pending_minor,
                                      b.credits_pending_minor)
    return {"counts": counts, "payments": payments, "refunded": refunded, "balances": balances}


def assert_problem(response, status: int, code: str, *words: str) -> dict:
    """A problem+json answer with the stable code and a message naming what is wrong."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status and body["request_id"]
    for word in words:
        assert word in body["detail"], body
    return body


def open_shift(bank, employee_no: str, pin: str, terminal_id: str) -> str:
    made = bank.post(f"{BASE}/shifts", json={"employee_no": employee_no, "pin": pin, "terminal_id": terminal_id})
    assert made.status_code == 201, made.text
    return made.json()["shift_no"]


def paid_qr(bank, wallet, shift_no: str, amount_minor: int, key: str, user: str = "alice") -> dict:
    qr = bank.post(f"{BASE}/shifts/{shift_no}/qr", json={"request_id": f"q-{key}", "amount_minor": amount_minor,
                                                         "bill_no": f"TK-{key}"}).json()
    wallet.post("/v1/payments/qr/pay", json={"payload": qr["payload"], "payer_account": f"cust:{user}",
                                             "request_id": f"w-{key}"}, user_id=f"u-{user}")
    return qr


def failed_attempts(app, employee_no: str) -> tuple[int, Any]:
    def go(svc):
        row = svc.session.scalars(select(Operator).where(Operator.employee_no == employee_no)).one()
        return row.failed_attempts, row.locked_until
    return service_call(app, go)


# --- wrong PIN and lockout ------------------------------------------------------------------------


@BOTH
def test_a_wrong_pin_opens_no_shift_and_repeated_ones_lock_the_operator(app, bank, sim_clock) -> None:
    before = snapshot(app)
    wrong = assert_problem(bank.post(f"{BASE}/shifts", json={"employee_no": "C001", "pin": "0000",
                                                             "terminal_id": "win1"}),
                           401, "pin_rejected", "wrong employee number or PIN")
    unknown = assert_problem(bank.post(f"{BASE}/shifts", json={"employee_no": "X999", "pin": "0000",
                                                               "terminal_id": "win1"}), 401, "pin_rejected")
    # An unknown employee number is answered exactly like a wrong PIN: numbers cannot be probed.
    assert {k: v for k, v in wrong.items() if k != "request_id"} == {
        k: v for k, v in unknown.items() if k != "request_id"}
    assert failed_attempts(app, "C001") == (1, None)
    assert snapshot(app) == before

    assert_problem(bank.post(f"{BASE}/shifts", json={"employee_no": "C001", "pin": "1111", "terminal_id": "win1"}),
                   401, "pin_rejected")
    locked = assert_problem(bank.post(f"{BASE}/shifts", json={"employee_no": "C001", "pin": "2222",
                                                              "terminal_id": "win1"}),
                            423, "operator_locked", "C001", "locked")
    assert "2222" not in str(locked)
    # Locked: even the right PIN is refused until lockout_seconds (600) have passed.
    assert_problem(bank.post(f"{BASE}/shifts", json={"employee_no": "C001", "pin": "1234", "terminal_id": "win1"}),
                   423, "operator_locked", "locked until")
    _, locked_until = failed_attempts(app, "C001")
    assert locked_until == sim_clock.now() + timedelta(seconds=600)
    sim_clock.advance(seconds=599)
    assert_problem(bank.post(f"{BASE}/shifts", json={"employee_no": "C001", "pin": "1234", "terminal_id": "win1"}),
                   423, "operator_locked")
    assert snapshot(app) == before  # no shift, nothing else either
    # The other cashier is not affected.
    open_shift(bank, "C002", "2345", "win2")
    sim_clock.advance(seconds=1)
    open_shift(bank, "C001", "1234", "win1")
    assert failed_attempts(app, "C001") == (0, None)  # the right PIN resets the count


@BOTH
def test_a_wrong_supervisor_pin_refunds_nothing_and_lockout_stops_approvals(app, bank, wallet,
                                                                             sim_clock) -> None:
    shift_no = open_shift(bank, "C001", "1234", "win1")
    qr = paid_qr(bank, wallet, shift_no, 12_650, "1")
    before = snapshot(app)

    def refund(pin: str, employee_no: str = "S001", request_id: str = "rf-1"):
        return bank.post(f"{BASE}/payments/{qr['payment_no']}/refunds", json={
            "request_id": request_id, "amount_minor": 2_650, "supervisor_employee_no": employee_no,
            "supervisor_pin": pin})

    assert_problem(refund("0000"), 401, "pin_rejected")
    assert_problem(refund("1234", employee_no="C001"), 403, "forbidden", "supervisor")  # a cashier cannot approve
    assert_problem(refund("1111"), 401, "pin_rejected")
    assert_problem(refund("2222"), 423, "operator_locked", "S001")
    assert_problem(refund("9876"), 423, "operator_locked")  # the right PIN, while locked
    assert snapshot(app) == before
    assert bank.get(f"{BASE}/payments/{qr['payment_no']}").json()["refunded_minor"] == 0
    sim_clock.advance(seconds=600)
    assert refund("9876").status_code == 201


# --- refunds above the paid amount ----------------------------------------------------------------


@BOTH
def test_a_refund_above_what_was_paid_is_refused_and_moves_nothing(app, bank, wallet) -> None:
    shift_no = open_shift(bank, "C001", "1234", "win1")
    qr = paid_qr(bank, wallet, shift_no, 12_650, "1")
    cash = bank.post(f"{BASE}/shifts/{shift_no}/cash", json={"request_id": "c-1", "amount_minor": 2_000,
                                                             "bill_no": "TK-C"}).json()

    def refund(payment_no: str, amount_minor: int, request_id: str):
        return bank.post(f"{BASE}/payments/{payment_no}/refunds", json={
            "request_id": request_id, "amount_minor": amount_minor, "supervisor_employee_no": "S001",
            "supervisor_pin": "9876"})

    before = snapshot(app)
    body = assert_problem(refund(qr["payment_no"], 12_651, "rf-0"), 422, "refund_exceeds_paid",
                          "126.51", "126.50")
    assert body["errors"][0]["field"] == "amount_minor"
    assert_problem(refund(cash["payment_no"], 2_001, "rf-c"), 422, "refund_exceeds_paid", "20.00")
    assert snapshot(app) == before

    assert refund(qr["payment_no"], 10_000, "rf-1").status_code == 201
    after_part = snapshot(app)
    assert after_part != before  # the snapshot sees a refund (rows, postings and balances)
    assert_problem(refund(qr["payment_no"], 2_651, "rf-2"), 422, "refund_exceeds_paid", "26.50 CNY refundable")
    # The same request again with another amount is a conflict, not a second refund.
    assert_problem(refund(qr["payment_no"], 2_650, "rf-1"), 409, "conflict")
    zero = refund(qr["payment_no"], 0, "rf-3")
    assert zero.status_code == 422 and zero.json()["code"] == "validation_failed"
    assert snapshot(app) == after_part
    assert refund(qr["payment_no"], 2_650, "rf-4").status_code == 201  # exactly the rest is allowed
    assert_problem(refund(qr["payment_no"], 1, "rf-5"), 422, "refund_exceeds_paid", "0.00 CNY refundable")
    balances = ledger_call(app, lambda ledger: {c: ledger.balance(c).net_posted_minor
                                                for c in ("cust:alice", "merchant:station1", "bank:payments:fees")})
    assert balances == {"cust:alice": 50_000, "merchant:station1": 0, "bank:payments:fees": 0}


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(refunds=st.lists(st.integers(min_value=1, max_value=15_000), min_size=1, max_size=5))
def test_refunds_never_exceed_what_was_paid_and_money_is_conserved(station, refunds) -> None:
    """Any sequence of refund requests against a 126.50 payment: each is taken if it fits in what
    is left and refused with nothing moved otherwise; what the payer got back, the merchant and
    the fee income gave back, the fee pro rata (all of it on a full refund)."""
    amount, fee = 12_650, 76
    key = "h" + str(service_call(station, lambda svc: svc.session.scalar(select(func.count()).select_from(Payment))))
    payer = f"cust:{key}"
    accounts = (payer, "merchant:station1", "bank:payments:fees")

    def balances() -> dict[str, int]:
        return ledger_call(station, lambda ledger: {c: ledger.balance(c).net_posted_minor for c in accounts})

    shift = sign_in(station, "C001", "1234", "win1")
    fund_wallet(station, payer, amount)
    start = balances()
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, amount, "TK-H", f"q-{key}"))
    service_call(station, lambda svc: svc.pay(qr.payload, payer, f"w-{key}")).raise_unless_paid()
    supervisor = approve(station)
    refunded = 0
    for n, asked in enumerate(refunds):
        def take(svc, a=asked, i=n):
            return svc.refund(qr.payment_no, a, supervisor, f"r-{key}-{i}")

        if asked <= amount - refunded:
            service_call(station, take)
            refunded += asked
        else:
            before = balances()
            with pytest.raises(RefundExceedsPaid):
                service_call(station, take)
            assert balances() == before
    fee_back = fee * refunded // amount
    after = balances()
    assert after[payer] - start[payer] == refunded - amount
    assert after["merchant:station1"] - start["merchant:station1"] == (amount - fee) - (refunded - fee_back)
    assert after["bank:payments:fees"] - start["bank:payments:fees"] == fee - fee_back
    # The refunds' fee parts add up to the pro-rata share of the running total (the whole fee when full).
    assert service_call(station, lambda svc: svc.session.scalar(
        select(func.coalesce(func.sum(Refund.fee_minor), 0)).where(Refund.payment_no == qr.payment_no))) == fee_back
    assert service_call(station, lambda svc: svc.get_payment(qr.payment_no)).refunded_minor == refunded
    assert ledger_call(station, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0


# --- paying an expired QR -------------------------------------------------------------------------


@BOTH
def test_paying_an_expired_qr_is_refused_and_moves_nothing(app, bank, wallet, sim_clock) -> None:
    shift_no = open_shift(bank, "C002", "2345", "win2")
    qr = bank.post(f"{BASE}/shifts/{shift_no}/qr", json={"request_id": "q-1", "amount_minor": 8_800,
                                                         "bill_no": "TK-1"}).json()
    sim_clock.advance(seconds=299)
    assert wallet.post("/v1/payments/qr/resolve", json={"payload": qr["payload"]}).data["status"] == "created"
    before = snapshot(app)
    # A payload edited to pay less, even with its CRC recomputed, is not the QR that was issued.
    edited = qr["payload"].replace("540588.00", "540508.00")
    edited = edited[:-4] + f"{crc16_ccitt_false(edited[:-4].encode()):04X}"
    assert edited != qr["payload"] and check_crc(edited)
    with pytest.raises(SceneOSAPIError) as forged:
        wallet.post("/v1/payments/qr/pay", json={"payload": edited, "payer_account": "cust:bob",
                                                 "request_id": "w-0"}, user_id="u-bob")
    assert (forged.value.status, forged.value.code) == (422, "invalid_qr")
    assert snapshot(app) == before
    sim_clock.advance(seconds=1)  # exactly at the expiry: no longer payable
    pay = {"payload": qr["payload"], "payer_account": "cust:bob", "request_id": "w-1"}
    for _ in range(2):  # the wallet's retry gets the same answer
        with pytest.raises(SceneOSAPIError) as late:
            wallet.post("/v1/payments/qr/pay", json=pay, user_id="u-bob")
        assert (late.value.status, late.value.code) == (422, "qr_expired")
        assert qr["payment_no"] in late.value.detail and "expired at" in late.value.detail
    after = snapshot(app)
    assert after["payments"][qr["payment_no"]] == "expired"
    assert {**after, "payments": before["payments"]} == before  # only the status: no entry, no hold, no balance
    assert wallet.post("/v1/payments/qr/resolve", json={"payload": qr["payload"]}).data["status"] == "expired"
    assert_problem(bank.post(f"{BASE}/payments/{qr['payment_no']}/cancel"), 409, "wrong_state", "expired")
    statement = bank.get(f"{BASE}/shifts/{shift_no}/statement").json()
    assert statement["sales_minor"] == 0 and snapshot(app) == after


# --- a payment code used twice --------------------------------------------------------------------


@BOTH
def test_a_payment_code_used_twice_is_refused_and_moves_nothing(app, bank, wallet) -> None:
    win1 = open_shift(bank, "C001", "1234", "win1")
    win2 = open_shift(bank, "C002", "2345", "win2")
    code = wallet.post("/v1/payments/codes", json={"request_id": "c-1", "payer_account": "cust:alice"},
                       user_id="u-alice").data["code"]
    scan = {"request_id": "s-1", "code": code, "amount_minor": 3_000, "bill_no": "TK-1"}
    first = bank.post(f"{BASE}/shifts/{win1}/code", json=scan)
    assert first.status_code == 201 and first.json()["status"] == "succeeded"
    before = snapshot(app)
    # The cashier's retry of the same scan returns the same payment and moves nothing.
    assert bank.post(f"{BASE}/shifts/{win1}/code", json=scan).json()["payment_no"] == first.json()["payment_no"]
    # The same code for another sale, at either window: refused.
    assert_problem(bank.post(f"{BASE}/shifts/{win1}/code", json={**scan, "request_id": "s-2"}),
                   409, "payment_code_used")
    body = assert_problem(bank.post(f"{BASE}/shifts/{win2}/code", json={**scan, "request_id": "s-3",
                                                                         "amount_minor": 100}),
                          409, "payment_code_used")
    assert code not in str(body)  # the code is a bearer credential: never echoed
    # The wallet cannot mint a fresh code under the used request either.
    with pytest.raises(SceneOSAPIError) as used:
        wallet.post("/v1/payments/codes", json={"request_id": "c-1", "payer_account": "cust:alice"},
                    user_id="u-alice")
    assert (used.value.status, used.value.code) == (409, "payment_code_used")
    assert snapshot(app) == before
    assert bank.get(f"{BASE}/shifts/{win2}/statement").json()["sales_minor"] == 0
    assert ledger_call(app, lambda ledger: ledger.balance("cust:alice").net_posted_minor) == 50_000 - 3_000


# --- a malformed statement file -------------------------------------------------------------------

HEADER = "channel_ref,payment_ref,amount,currency,status,booked_at\n"
CAMT = ('<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">'
        "<BkToCstmrStmt><Stmt>{}</Stmt></BkToCstmrStmt></Document>")


def camt_entry(ref: str, payment_no: str, amount: str, ccy: str = "CNY", status: str = "BOOK") -> str:
    return (f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>{status}</Cd></Sts>'
            f"<AcctSvcrRef>{ref}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>{payment_no}</EndToEndId>"
            "</Refs></TxDtls></NtryDtls></Ntry>")


# Each is refused as a whole, although the records before the bad one are well formed.
MALFORMED = [
    ("csv", "{good}C9,pay_x,12.5.0,CNY,SUCCESS,\n", "line 3: amount '12.5.0' is not a decimal number"),
    ("csv", "{good}C9,pay_x,1.001,CNY,SUCCESS,\n", "line 3: amount '1.001' has more decimals than CNY has"),
    ("csv", "{good}C9,pay_x,1.00,RMB,SUCCESS,\n", "line 3: currency 'RMB' is not an ISO 4217 code"),
    ("csv", "{good}C9,pay_x,1.00,CNY,MAYBE,\n", "line 3: status 'MAYBE'"),
    ("csv", "{good}C9,pay_x,1.00,CNY\n", "line 3: 4 fields where the header has 6"),
    ("csv", "channel_ref,amount\nC1,1.00\n", "line 1: missing column(s)"),
    ("csv", "", "line 1: the file is empty"),
    ("camt053", "{good}" + camt_entry("C9", "pay_x", "1,00"), "Ntry 2: amount '1,00' is not a decimal number"),
    ("camt053", "{good}" + camt_entry("C9", "pay_x", "1.00", ccy="XXY"), "Ntry 2: currency 'XXY'"),
    ("camt053", "{good}" + camt_entry("C9", "pay_x", "1.00", status="DONE"), "Ntry 2"),
    ("camt053", "{good}<Ntry><Amt>", "not well-formed XML"),  # cut off in the middle of an entry
]


def statement_file(fmt: str, template: str, payment_no: str) -> bytes:
    if fmt == "csv":
        good = HEADER + f"C1,{payment_no},100.00,CNY,SUCCESS,2026-01-01T08:10:00+08:00\n"
        return (template.format(good=good) if "{good}" in template else template).encode()
    return CAMT.format(template.format(good=camt_entry("C1", payment_no, "100.00"))).encode()


@BOTH
def test_a_malformed_statement_file_is_refused_whole_and_changes_nothing(app, bank, wallet) -> None:
    shift_no = open_shift(bank, "C001", "1234", "win1")
    qr = paid_qr(bank, wallet, shift_no, 10_000, "1")
    other = paid_qr(bank, wallet, shift_no, 5_000, "2")
    params = {"date": "2026-01-01", "file_name": "acq.txt", "actor": "ops.wang"}
    # A good file first: its run and its exception must survive the bad uploads untouched.
    good = bank.post(f"{BASE}/recon/files", params={**params, "format": "csv"},
                     content=statement_file("csv", "{good}", qr["payment_no"]))
    assert good.status_code == 201 and good.json()["exception_count"] == 1  # `other` is missing
    run_no = good.json()["run_no"]
    exceptions = bank.get(f"{BASE}/recon/runs/{run_no}/exceptions").json()
    assert [e["payment_no"] for e in exceptions] == [other["payment_no"]]
    before = snapshot(app)
    for fmt, template, message in MALFORMED:
        content = statement_file(fmt, template, qr["payment_no"])
        body = assert_problem(bank.post(f"{BASE}/recon/files", params={**params, "format": fmt}, content=content),
                              422, "invalid_statement_file")
        assert message in body["detail"], (fmt, template, body["detail"])
    assert snapshot(app) == before
    assert [r["run_no"] for r in bank.get(f"{BASE}/recon/runs").json()] == [run_no]
    assert bank.get(f"{BASE}/recon/runs/{run_no}/exceptions").json() == exceptions
    assert [a["action"] for a in bank.get(f"{BASE}/recon/runs/{run_no}/audit").json()] == ["received", "reconciled"]


# --- amounts and days out of range (these were answered 500 before) ---------------------------------


@BOTH
def test_an_amount_too_large_for_the_books_or_the_qr_is_refused(app, bank, wallet) -> None:
    shift_no = open_shift(bank, "C001", "1234", "win1")
    code = wallet.post("/v1/payments/codes", json={"request_id": "c-1", "payer_account": "cust:alice"},
                       user_id="u-alice").data["code"]
    before = snapshot(app)
    # Above a BIGINT: no column can hold it.
    for tender in ("qr", "cash"):
        body = assert_problem(bank.post(f"{BASE}/shifts/{shift_no}/{tender}", json={
            "request_id": f"{tender}-big", "amount_minor": 2**63, "bill_no": "TK-1"}), 422, "validation_failed",
            "amount_minor")
        assert body["errors"][0]["field"] == "amount_minor"
    assert_problem(bank.post(f"{BASE}/shifts/{shift_no}/code", json={
        "request_id": "s-big", "code": code, "amount_minor": 2**63, "bill_no": "TK-1"}), 422, "validation_failed")
    # EMVCo tag 54 holds at most 13 characters: 10000000000.00 does not fit in a QR code.
    assert_problem(bank.post(f"{BASE}/shifts/{shift_no}/qr", json={
        "request_id": "qr-wide", "amount_minor": 1_000_000_000_000, "bill_no": "TK-1"}), 422, "validation_failed",
        "13")
    assert snapshot(app) == before
    widest = bank.post(f"{BASE}/shifts/{shift_no}/qr", json={"request_id": "qr-max", "amount_minor": 999_999_999_999,
                                                              "bill_no": "TK-1"})
    assert widest.status_code == 201 and "54139999999999.99" in widest.json()["payload"]


@BOTH
def test_a_day_outside_the_calendar_is_refused(app, bank) -> None:
    before = snapshot(app)
    for day in ("0001-01-01", "9999-12-31"):
        for path in ("operators/C001/statement", "terminals/win1/statement", "merchants/station1/statement",
                     "merchants/station1/settlement"):
            assert_problem(bank.get(f"{BASE}/{path}", params={"day": day}), 422, "validation_failed", day)
        assert_problem(bank.post(f"{BASE}/merchants/station1/settlement", params={"day": day}), 422,
                       "validation_failed", day)
    good = HEADER + "C1,pay_1,1.00,CNY,SUCCESS,\n"
    assert_problem(bank.post(f"{BASE}/recon/files", content=good.encode(), params={
        "date": "0001-01-01", "format": "csv", "file_name": "f.csv", "actor": "ops"}), 422, "validation_failed",
        "0001-01-01")
    far = HEADER + "C1,pay_1,1.00,CNY,SUCCESS,9999-12-31T23:59:59-23:59\n"
    assert_problem(bank.post(f"{BASE}/recon/files", content=far.encode(), params={
        "date": "2026-01-01", "format": "csv", "file_name": "f.csv", "actor": "ops"}), 422, "invalid_statement_file",
        "line 2: booked time")
    assert snapshot(app) == before
