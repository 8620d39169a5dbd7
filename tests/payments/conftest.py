"""Fixtures of the payments tests: a bank with one coach station (two windows) and its operators."""

from __future__ import annotations

from typing import Any

import pytest

from core.testing.harness import tenant_config
from products.payments.service import OperatorDraft

STATION = {
    "merchant_id": "station1",
    "name": "Coach Station",
    "city": "Hangzhou",
    "mcc": "4131",
    "settlement_account": "merchant:station1",
    "fee_rate": "0.006",
    "stores": [{"store_id": "hall", "name": "Ticket hall",
                "terminals": [{"terminal_id": "win1", "label": "Window 1"},
                              {"terminal_id": "win2", "label": "Window 2"}]}],
}
SETTINGS: dict[str, Any] = {"merchants": [STATION], "pin_scrypt_n": 1024, "max_pin_failures": 3,
                            "lockout_seconds": 600, "qr_ttl_seconds": 300}
OPERATORS = [("C001", "Wang Fang", "cashier", "1234"), ("C002", "Li Na", "cashier", "2345"),
             ("S001", "Zhao Lei", "supervisor", "9876")]


def bank_config(**settings: Any) -> dict[str, Any]:
    return {"tenants": {"bank": tenant_config(modules={"party": {}, "payments": {**SETTINGS, **settings}})}}


def service_call(app, fn, tenant_id: str = "bank"):
    """Run ``fn(service)`` in one unit of work of the tenant."""
    runtime = app.tenant(tenant_id).module("payments")
    with runtime.tenant.unit_of_work() as uow:
        return fn(runtime.container.service(uow=uow))


def ledger_call(app, fn, tenant_id: str = "bank"):
    tenant = app.tenant(tenant_id)
    with tenant.unit_of_work() as uow:
        return fn(tenant.module("ledger").container.ledger(session=uow.session))


def fund_wallet(app, code: str, amount_minor: int, *, owner: str | None = None) -> None:
    """A customer's wallet (no overdraft) topped up from the bank's settlement account."""
    from infra.ledger import EntryDraft, Posting

    def go(ledger):
        ledger.open_account("bank:settlement", "CNY", "asset")
        ledger.open_account(code, "CNY", "liability", "customer", owner or code,
                            constraint="debits_must_not_exceed_credits")
        ledger.post(EntryDraft(f"topup-{code}-{amount_minor}", [Posting.debit("bank:settlement", amount_minor),
                                                              Posting.credit(code, amount_minor)]))

    ledger_call(app, go)


def sign_in(app, employee_no: str, pin: str, terminal_id: str):
    def go(svc):
        check = svc.verify_pin(employee_no, pin)
        return check, (svc.sign_in(check.verified, terminal_id) if check.verified else None)

    check, shift = service_call(app, go)
    check.raise_if_failed()
    return shift


def approve(app, employee_no: str = "S001", pin: str = "9876"):
    return service_call(app, lambda svc: svc.verify_pin(employee_no, pin)).raise_if_failed()


@pytest.fixture
def station(make_sceneos):
    app = make_sceneos(bank_config())
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)))
    return app
