"""Credit pay as a funding source of QR and payment-code payments, through core's contract
(``core.funding``): the line's available drops, the merchant is paid, a refund restores the line,
and the payment and its credit purchase commit together."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from core.funding import FundingSource, funding_sources
from core.testing.factories import mobile, resident_id
from core.testing.harness import tenant_config
from middle.party.service import CustomerDraft
from products.payments.errors import FundingSourceUnavailable, PaymentFailed
from products.payments.models import Payment
from products.payments.service import OperatorDraft
from tests.payments.conftest import OPERATORS, SETTINGS, approve, ledger_call, service_call, sign_in

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
GOOD_CONSENT = {"income_band": "10k_20k", "occupation": "skilled", "employment_band": "4y_7y", "housing": "own"}


def credit_station(make_sceneos, credit_pay: dict[str, Any] | None = None):
    modules = {"party": {}, "credit": {}, "risk": {}, "credit_pay": credit_pay or {}, "payments": SETTINGS}
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=modules)}})
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)))
    return app


def customer_with_line(app) -> tuple[str, str]:
    """A registered customer with an approved credit-pay account: (customer_no, account_no)."""
    from products.credit_pay.service import ActivationDraft

    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        draft = CustomerDraft(name="Li Lei", id_number=resident_id(date(1990, 5, 1), sequence=1), phone=mobile(1))
        customer_no = tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no
    with tenant.unit_of_work() as uow:
        result = tenant.module("credit_pay").container.service(uow=uow).activate(
            ActivationDraft(request_id="act-1", customer_no=customer_no, consented=dict(GOOD_CONSENT)))
    assert result.outcome == "approve"
    return customer_no, result.account.account_no


def credit_account(app, account_no: str):
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        return tenant.module("credit_pay").container.service(uow=uow).account(account_no)


def merchant_balances(app) -> dict[str, int]:
    return ledger_call(app, lambda ledger: {c: ledger.balance(c).net_posted_minor
                                            for c in ("merchant:station1", "bank:payments:fees")})


def check_ledger(app) -> None:
    def go(ledger):
        assert ledger.verify() == []
        assert ledger.trial_balance("CNY").net_minor == 0

    ledger_call(app, go)


@BOTH
def test_a_qr_paid_with_credit_pay_draws_the_line_and_a_refund_restores_it(make_sceneos) -> None:
    app = credit_station(make_sceneos)
    customer_no, account_no = customer_with_line(app)
    line = credit_account(app, account_no).available_minor
    assert isinstance(funding_sources(app.tenant("bank"))["credit_pay"], FundingSource)

    shift = sign_in(app, "C001", "1234", "win1")
    qr = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 12_650, "TK-1", "r-1"))
    paid = service_call(app, lambda svc: svc.pay(qr.payload, None, "w-1", payer_customer_no=customer_no,
                                                 funding_source="credit_pay"))
    assert (paid.status, paid.funding_source) == ("succeeded", "credit_pay")
    view = credit_account(app, account_no)
    assert (view.available_minor, view.held_minor, view.outstanding_minor) == (line - 12_650, 0, 12_650)
    assert merchant_balances(app) == {"merchant:station1": 12_650 - 76, "bank:payments:fees": 76}
    # The wallet's retry changes nothing.
    again = service_call(app, lambda svc: svc.pay(qr.payload, None, "w-1", payer_customer_no=customer_no,
                                                  funding_source="credit_pay"))
    assert again.payment_no == paid.payment_no
    assert credit_account(app, account_no).available_minor == line - 12_650
    check_ledger(app)

    supervisor = approve(app)
    service_call(app, lambda svc: svc.refund(paid.payment_no, 5_000, supervisor, "rf-1"))
    assert credit_account(app, account_no).available_minor == line - 7_650
    service_call(app, lambda svc: svc.refund(paid.payment_no, 7_650, supervisor, "rf-2"))
    view = credit_account(app, account_no)
    assert (view.available_minor, view.outstanding_minor) == (line, 0)
    assert merchant_balances(app) == {"merchant:station1": 0, "bank:payments:fees": 0}
    assert ledger_call(app, lambda ledger: ledger.balance("credit_pay:merchant:CNY:station1").net_posted_minor) == 0
    check_ledger(app)


@BOTH
def test_a_payment_code_funded_by_credit_pay(make_sceneos) -> None:
    app = credit_station(make_sceneos)
    customer_no, account_no = customer_with_line(app)
    line = credit_account(app, account_no).available_minor
    shift = sign_in(app, "C002", "2345", "win2")
    issued = service_call(app, lambda svc: svc.issue_code(customer_no, "c-1", funding_source="credit_pay"))
    paid = service_call(app, lambda svc: svc.scan_code(shift.shift_no, issued.code, 30_000, "TK-2", "s-1"))
    assert (paid.status, paid.tender, paid.funding_source) == ("succeeded", "code", "credit_pay")
    assert credit_account(app, account_no).available_minor == line - 30_000
    assert merchant_balances(app) == {"merchant:station1": 30_000 - 180, "bank:payments:fees": 180}
    service_call(app, lambda svc: svc.refund(paid.payment_no, 30_000, approve(app), "rf-1"))
    assert credit_account(app, account_no).available_minor == line
    check_ledger(app)


def test_a_credit_pay_decline_is_a_clear_failure_and_moves_nothing(make_sceneos) -> None:
    app = credit_station(make_sceneos, {"products": {"standard": {"name": "Credit Pay", "max_purchase_minor": 10_000}}})
    customer_no, account_no = customer_with_line(app)
    line = credit_account(app, account_no).available_minor
    shift = sign_in(app, "C001", "1234", "win1")
    qr = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 12_650, "TK-1", "r-1"))
    failed = service_call(app, lambda svc: svc.pay(qr.payload, None, "w-1", payer_customer_no=customer_no,
                                                   funding_source="credit_pay"))
    assert (failed.status, failed.failure_code) == ("failed", "above_purchase_limit")
    with pytest.raises(PaymentFailed) as problem:
        failed.raise_unless_paid()
    assert problem.value.details[0]["code"] == "above_purchase_limit"
    assert credit_account(app, account_no).available_minor == line
    assert merchant_balances(app) == {"merchant:station1": 0, "bank:payments:fees": 0}
    # Someone without a credit account is declined, not an error.
    qr2 = service_call(app, lambda svc: svc.create_qr(shift.shift_no, 100, "TK-2", "r-2"))
    nobody = service_call(app, lambda svc: svc.pay(qr2.payload, None, "w-2", payer_customer_no="cus_nobody",
                                                   funding_source="credit_pay"))
    assert (nobody.status, nobody.failure_code) == ("failed", "no_credit_account")
    check_ledger(app)


@BOTH
def test_credit_pay_not_enabled_is_a_clear_error_that_changes_nothing(station) -> None:
    from tests.payments.conftest import fund_wallet

    fund_wallet(station, "cust:alice", 5_000, owner="cus_alice")
    assert funding_sources(station.tenant("bank")) == {}
    shift = sign_in(station, "C001", "1234", "win1")
    qr = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 1_000, "TK-1", "r-1"))
    with pytest.raises(FundingSourceUnavailable) as refused:
        service_call(station, lambda svc: svc.pay(qr.payload, None, "w-1", payer_customer_no="cus_alice",
                                                  funding_source="credit_pay"))
    assert (refused.value.code, refused.value.http_status) == ("funding_source_unavailable", 422)
    with pytest.raises(FundingSourceUnavailable):
        service_call(station, lambda svc: svc.issue_code("cus_alice", "c-1", funding_source="credit_pay"))
    assert service_call(station, lambda svc: svc.get_payment(qr.payment_no)).status == "created"
    assert service_call(station, lambda svc: svc.session.scalar(
        select(func.count()).select_from(Payment).where(Payment.pay_request_id.is_not(None)))) == 0
    # The account source still works for the same QR.
    assert service_call(station, lambda svc: svc.pay(qr.payload, "cust:alice", "w-2")).status == "succeeded"


def test_a_wallet_pays_with_credit_pay_over_http_and_sees_declines_as_problems(make_sceneos, http_client,
                                                                               partner_client) -> None:
    from core.sdk.errors import SceneOSAPIError
    from core.testing.harness import partner_config

    wallet_key = ("wallet-key-1", "wallet-secret-0123456789abcdef")
    modules = {"party": {}, "entry": {}, "credit": {}, "risk": {},
               "credit_pay": {"products": {"standard": {"name": "Credit Pay", "max_purchase_minor": 50_000}}},
               "payments": SETTINGS}
    app = make_sceneos({"entry": {"webhook_poll_seconds": 0}, "tenants": {"bank": tenant_config(
        modules=modules, partners={"wallet": partner_config("Wallet", key_id=wallet_key[0], secret=wallet_key[1],
                                                            scopes=["payments"])})}})
    service_call(app, lambda svc: svc.add_operator(OperatorDraft(employee_no="C001", merchant_id="station1",
                                                                 name="Wang", role="cashier", pin="1234")))
    customer_no, account_no = customer_with_line(app)
    line = credit_account(app, account_no).available_minor
    wallet = partner_client(app, *wallet_key)
    wallet.put("/v1/users/u-li", json={"customer_no": customer_no})
    wallet.post("/v1/users/u-li/consents", json={"scopes": ["payments"]})
    bank = http_client(app)
    base = "/v1/tenants/bank/payments"
    shift = bank.post(f"{base}/shifts", json={"employee_no": "C001", "pin": "1234", "terminal_id": "win1"}).json()

    qr = bank.post(f"{base}/shifts/{shift['shift_no']}/qr", json={"request_id": "r1", "amount_minor": 8_800,
                                                                  "bill_no": "TK-1"}).json()
    paid = wallet.post("/v1/payments/qr/pay", json={"payload": qr["payload"], "request_id": "w-1",
                                                    "funding_source": "credit_pay"}, user_id="u-li").data
    assert paid["status"] == "succeeded"
    assert credit_account(app, account_no).available_minor == line - 8_800

    big = bank.post(f"{base}/shifts/{shift['shift_no']}/qr", json={"request_id": "r2", "amount_minor": 60_000,
                                                                   "bill_no": "TK-2"}).json()
    with pytest.raises(SceneOSAPIError) as declined:
        wallet.post("/v1/payments/qr/pay", json={"payload": big["payload"], "request_id": "w-2",
                                                 "funding_source": "credit_pay"}, user_id="u-li")
    assert (declined.value.status, declined.value.code) == (422, "payment_failed")
    assert declined.value.errors[0]["code"] == "above_purchase_limit"
    assert bank.get(f"{base}/payments/{big['payment_no']}").json()["status"] == "failed"

    code = wallet.post("/v1/payments/codes", json={"request_id": "c-1", "funding_source": "credit_pay"},
                       user_id="u-li").data
    scanned = bank.post(f"{base}/shifts/{shift['shift_no']}/code",
                        json={"request_id": "s-1", "code": code["code"], "amount_minor": 1_200, "bill_no": "TK-3"})
    assert scanned.status_code == 201 and scanned.json()["funding_source"] == "credit_pay"
    assert credit_account(app, account_no).available_minor == line - 10_000
    check_ledger(app)
