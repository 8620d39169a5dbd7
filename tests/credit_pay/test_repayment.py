"""Credit pay repayments on real databases: the allocation order and a bank's hook replacing it,
overpayment kept as a credit balance that reduces the next statement, idempotency, bad input that
changes nothing, and the partner route (a partner sees only its own users' statements)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from test_billing import (
    BOTH,
    GOOD_CONSENT,
    balances,
    buy,
    config,
    ledger_check,
    move_to,
    open_account,
    pay,
    run,
    statements,
    ties_to_ledger,
)
from test_credit_pay_service import register

from core.errors import Conflict, NotFound, ValidationFailed
from core.hookspecs import hookimpl
from core.sdk import NotFoundError
from core.testing.harness import partner_config, tenant_config
from products.credit_pay.end_of_day import (
    COMPONENTS,
    allocate,
    minimum_payment,
    owed,
    repayment_clearing_account,
)
from products.credit_pay.repayment import RepaymentDraft
from products.credit_pay.service import line_account
from products.credit_pay.settings import CreditProduct


class PrincipalFirst:
    """A bank's plugin: repayments settle principal first."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer or ["principal", "interest", "fee", "penalty"]
        self.calls: list[str] = []

    @hookimpl
    def sceneos_credit_pay_allocation_order(self, account_no: str, default: list[str]) -> list[str]:
        self.calls.append(account_no)
        assert default == ["penalty", "fee", "interest", "principal"]
        return self.answer


def overdue_account(app: Any, sim_clock: Any) -> str:
    """130,000 bought on 1 January, nothing paid: on 6 February the account owes penalty 71,
    fee 2,500, interest 715 and principal 130,000 (see test_billing)."""
    no = open_account(app)
    buy(app, no, "flight", 130_000)
    move_to(sim_clock, date(2026, 2, 6))
    return no


@BOTH
def test_a_repayment_settles_penalty_fees_interest_then_principal(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    no = overdue_account(app, sim_clock)
    assert run(app, lambda service: service.account(no)).bucket == "M1"
    first = pay(app, no, "r-1", 3_000)
    assert first.allocation == {"penalty": 71, "fee": 2_500, "interest": 429, "principal": 0, "credit": 0}
    second = pay(app, no, "r-2", 20_000)
    assert second.allocation == {"penalty": 0, "fee": 0, "interest": 286, "principal": 19_714, "credit": 0}
    # 23,000 paid >= 13,000 past due: the account is cured, back in M0.
    account = run(app, lambda service: service.account(no))
    assert (account.bucket, account.days_past_due, account.past_due_minor) == ("M0", 0, 0)
    assert account.balance_minor == 130_000 + 715 + 71 + 2_500 - 23_000
    # The principal part gave the line back.
    assert account.available_minor == account.line_minor - (130_000 - 19_714)
    assert [r.repayment_id for r in run(app, lambda service: service.repayments(no))] == ["r-1", "r-2"]
    ledger_check(app)


@BOTH
def test_a_bank_plugin_replaces_the_allocation_order(make_sceneos, sim_clock) -> None:
    plugin = PrincipalFirst()
    app = make_sceneos(config(plugins=["principal_first"]), plugins={"principal_first": plugin})
    no = overdue_account(app, sim_clock)
    result = pay(app, no, "r-1", 3_000)
    assert result.allocation == {"principal": 3_000, "interest": 0, "fee": 0, "penalty": 0, "credit": 0}
    assert plugin.calls == [no]
    ledger_check(app)


def test_a_plugin_order_that_is_not_a_permutation_is_refused_and_changes_nothing(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos(config(plugins=["bad"]), plugins={"bad": PrincipalFirst(["principal", "principal"])})
    no = overdue_account(app, sim_clock)
    before = balances(app, no)
    with pytest.raises(ValidationFailed) as info:
        pay(app, no, "r-1", 3_000)
    assert info.value.details[0]["code"] == "invalid_allocation_order"
    assert balances(app, no) == before
    assert run(app, lambda service: service.repayments(no)) == []


@BOTH
def test_an_overpayment_stays_as_a_credit_balance_and_reduces_the_next_statement(
    make_sceneos, sim_clock
) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    buy(app, no, "book", 10_000)
    move_to(sim_clock, date(2026, 1, 3))
    result = pay(app, no, "r-1", 15_000)
    assert result.allocation["principal"] == 10_000 and result.allocation["credit"] == 5_000
    account = run(app, lambda service: service.account(no))
    assert (account.credit_balance_minor, account.balance_minor) == (5_000, -5_000)
    assert account.available_minor == account.line_minor
    buy(app, no, "lunch", 8_000)
    move_to(sim_clock, date(2026, 1, 6))
    [january] = statements(app, no)
    assert (january.purchases_minor, january.payments_minor, january.new_balance_minor) == (
        18_000,
        15_000,
        3_000,
    )
    assert january.minimum_payment_minor == 3_000  # the floor, capped at the balance
    after = balances(app, no)
    assert (after["credit"], after["principal"]) == (0, 3_000)  # the credit was applied on the billing day
    ties_to_ledger(app, no)
    ledger_check(app)


@BOTH
def test_repayment_is_idempotent_and_bad_input_changes_nothing(make_sceneos, sim_clock) -> None:
    app = make_sceneos(config())
    no = open_account(app)
    buy(app, no, "book", 10_000)
    assert pay(app, no, "r-1", 4_000).created
    again = pay(app, no, "r-1", 4_000)
    assert not again.created and again.allocation["principal"] == 4_000
    assert balances(app, no)["principal"] == 6_000
    before = balances(app, no)
    with pytest.raises(Conflict) as info:
        pay(app, no, "r-1", 5_000)
    assert info.value.details[0]["code"] == "exists_with_different_amount_minor"
    with pytest.raises(ValidationFailed):
        run(
            app,
            lambda s: s.repay(
                RepaymentDraft(repayment_id="r-2", account_no=no, amount_minor=1, currency="USD")
            ),
        )
    with pytest.raises(NotFound):
        pay(app, "cpa_nope", "r-3", 1_000)
    for bad in (
        {"amount_minor": 0},
        {"amount_minor": -5},
        {"repayment_id": "no spaces"},
        {"amount_minor": 1.5},
    ):
        with pytest.raises(ValidationError):
            RepaymentDraft(**({"repayment_id": "r-4", "account_no": no, "amount_minor": 100} | bad))
    assert balances(app, no) == before
    assert len(run(app, lambda service: service.repayments(no))) == 1
    available = run(app, lambda s: s.account(no)).available_minor
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        assert ledger.balance(repayment_clearing_account("CNY")).net_posted_minor == 4_000
        assert ledger.balance(line_account(no)).available_minor == available
    assert owed(balances(app, no)) == 6_000
    ledger_check(app)


TRAVEL = ("pk_travel_1", "travel-secret-0123456789abcdef")
MALL = ("pk_mall_1", "mall-secret-0123456789abcdef0123")


def partner_app_config() -> dict[str, Any]:
    cfg = config()
    modules = cfg["tenants"]["bank"]["modules"] | {"entry": {}}
    return {
        "entry": {"webhook_poll_seconds": 0},
        "tenants": {
            "bank": tenant_config(
                modules=modules,
                partners={
                    "travel": partner_config(
                        "Travel", key_id=TRAVEL[0], secret=TRAVEL[1], scopes=["credit_pay"]
                    ),
                    "mall": partner_config("Mall", key_id=MALL[0], secret=MALL[1], scopes=["credit_pay"]),
                },
            )
        },
    }


def test_a_partner_repays_and_reads_statements_of_its_own_users_only(
    make_sceneos, partner_client, sim_clock
) -> None:
    app = make_sceneos(partner_app_config())
    travel = partner_client(app, *TRAVEL)
    travel.put("/v1/users/u-1", json={"customer_no": register(app)})
    travel.post("/v1/users/u-1/consents", json={"scopes": ["credit_decision"]})
    body = {"request_id": "act-1", "consented": GOOD_CONSENT}
    no = travel.post("/v1/credit_pay/activations", json=body, user_id="u-1").data["account"]["account_no"]
    buy_body = {"purchase_id": "flight-1", "account_no": no, "merchant_id": "air", "amount_minor": 50_000}
    travel.post("/v1/credit_pay/purchases", json=buy_body, user_id="u-1")
    travel.post("/v1/credit_pay/purchases/flight-1/capture")
    move_to(sim_clock, date(2026, 1, 6))
    [statement] = travel.get(f"/v1/credit_pay/accounts/{no}/statements", user_id="u-1").data
    assert statement["new_balance_minor"] == 50_000
    full = travel.get(f"/v1/credit_pay/statements/{statement['statement_no']}", user_id="u-1").data
    assert [line["kind"] for line in full["lines"]] == ["purchase"]
    repayment = {"repayment_id": "rp-1", "account_no": no, "amount_minor": 50_000}
    assert (
        travel.post("/v1/credit_pay/repayments", json=repayment, user_id="u-1").data["allocation"][
            "principal"
        ]
        == 50_000
    )
    again = travel.post("/v1/credit_pay/repayments", json=repayment, user_id="u-1")
    assert again.data["repayment_id"] == "rp-1"
    kinds = [t["kind"] for t in travel.get(f"/v1/credit_pay/accounts/{no}/transactions", user_id="u-1").data]
    assert kinds == ["purchase", "payment"]

    mall = partner_client(app, *MALL)
    mall.put("/v1/users/m-9", json={"customer_no": register(app, sequence=2)})
    mall.post("/v1/users/m-9/consents", json={"scopes": ["credit_decision"]})
    for path in (
        f"/v1/credit_pay/accounts/{no}/statements",
        f"/v1/credit_pay/statements/{statement['statement_no']}",
        f"/v1/credit_pay/accounts/{no}/transactions",
    ):
        with pytest.raises(NotFoundError):
            mall.get(path, user_id="m-9")
    with pytest.raises(NotFoundError):
        mall.post("/v1/credit_pay/repayments", json=repayment | {"repayment_id": "rp-2"}, user_id="m-9")
    assert len(run(app, lambda service: service.repayments(no))) == 1
    ledger_check(app)


def test_the_bank_repays_and_reads_transactions_through_the_cli(tmp_path, monkeypatch) -> None:
    from rich.console import Console
    from test_credit_pay_cli import CONFIG
    from test_credit_pay_service import activate, purchase
    from typer.testing import CliRunner

    from core.cli_support import open_app
    from products.credit_pay.cli import cli

    monkeypatch.setattr("products.credit_pay.cli.console", Console(width=300))
    config_file = tmp_path / "sceneos.toml"
    config_file.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    with open_app(str(config_file)) as app:
        no = activate(app, register(app)).account.account_no
        run(app, lambda service: service.authorize(purchase(no, "flight-1", 186_000)))
        run(app, lambda service: service.capture("flight-1"))
    runner = CliRunner()
    args = ["-t", "bank", "-c", str(config_file)]
    paid = runner.invoke(cli, ["repay", no, "50000", "--id", "rp-1", *args])
    assert paid.exit_code == 0, paid.output
    assert "repayment rp-1 applied: 50000 CNY (principal 50000)" in paid.output
    again = runner.invoke(cli, ["repay", no, "50000", "--id", "rp-1", *args])
    assert "already applied" in again.output
    conflict = runner.invoke(cli, ["repay", no, "60000", "--id", "rp-1", *args])
    assert (
        conflict.exit_code == 1
        and conflict.output.count("\n") == 1
        and "different amount_minor" in conflict.output
    )
    bad = runner.invoke(cli, ["repay", no, "0", "--id", "rp-2", *args])
    assert bad.exit_code == 1 and "amount_minor" in bad.output
    listed = runner.invoke(cli, ["transactions", no, *args])
    assert listed.exit_code == 0 and "flight-1" in listed.output and "-50000" in listed.output
    assert runner.invoke(cli, ["statements", no, *args]).exit_code == 0
    missing = runner.invoke(cli, ["statement", "cpa_nope-20260105", *args])
    assert missing.exit_code == 1 and "no statement" in missing.output


# --- properties of the allocation and the minimum payment (pure functions) -------------------------

BALANCE = st.integers(min_value=0, max_value=10**9)


@given(
    amount=st.integers(min_value=1, max_value=10**10),
    owed_by=st.fixed_dictionaries({c: BALANCE for c in COMPONENTS}),
    order=st.permutations(list(COMPONENTS)),
)
def test_allocation_settles_components_in_order_and_keeps_the_rest_as_credit(amount, owed_by, order) -> None:
    allocation = allocate(amount, owed_by | {"credit": 0}, order)
    assert sum(allocation.values()) == amount
    assert all(0 <= allocation[c] <= owed_by[c] for c in COMPONENTS)
    # A component is touched only once every component before it is settled.
    for i, component in enumerate(order):
        if allocation[component] > 0:
            assert all(allocation[c] == owed_by[c] for c in order[:i])
    assert allocation["credit"] == max(amount - sum(owed_by.values()), 0)


@given(
    new_balance=st.integers(min_value=-(10**7), max_value=10**9),
    charges=st.integers(min_value=0, max_value=10**7),
    past_due=st.integers(min_value=0, max_value=10**7),
    bps=st.integers(min_value=0, max_value=10_000),
    floor=st.integers(min_value=0, max_value=10**6),
)
def test_the_minimum_payment_is_bounded_by_the_floor_the_charges_and_the_balance(
    new_balance, charges, past_due, bps, floor
) -> None:
    product = CreditProduct(name="p", minimum_payment_bps=bps, minimum_payment_floor_minor=floor)
    minimum = minimum_payment(product, new_balance, charges, past_due)
    if new_balance <= 0:
        assert minimum == 0
        return
    assert 0 < minimum <= new_balance or (
        minimum == 0 and floor == 0 and charges + past_due == 0 and bps == 0
    )
    assert minimum >= min(floor, new_balance)
    assert minimum >= min(charges + past_due, new_balance)


@BOTH
def test_a_payment_is_published_for_the_partner(make_sceneos, sim_clock) -> None:
    from test_end_of_day import Recorder

    recorder = Recorder()
    app = make_sceneos(config(plugins=["recorder"]), plugins={"recorder": recorder})
    no = open_account(app)
    buy(app, no, "book", 10_000)
    pay(app, no, "r-1", 4_000)
    [event] = [e for e in recorder.events if e.type == "credit_pay.payment.received"]
    assert event.payload["partner_id"] == "travel_app" and event.payload["channel"] == "bank"
    assert (event.payload["amount_minor"], event.payload["balance_minor"]) == (4_000, 6_000)
    assert event.subject == f"credit_pay_account:{no}"
