"""Installment plans and line adjustment over HTTP and the CLI: a partner converts its user's
purchase and sees only its own users' plans; the bank adjusts lines (a partner may not) and its
staff see plans and the line history in Rich tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from test_credit_pay_api import MALL, TRAVEL, app_config
from test_credit_pay_cli import CONFIG
from test_credit_pay_service import GOOD_CONSENT, activate, purchase, register, run
from typer.testing import CliRunner

from core.cli_support import open_app
from core.sdk import ConflictError, NotFoundError, PermissionDenied
from products.credit_pay.cli import cli
from products.credit_pay.installments import InstallmentService, PurchaseConversion


def test_a_partner_converts_its_users_purchase_and_sees_only_its_own_plans(
    make_sceneos, partner_client
) -> None:
    app = make_sceneos(app_config())
    travel = partner_client(app, *TRAVEL)
    travel.put("/v1/users/u-1", json={"customer_no": register(app)})
    travel.post("/v1/users/u-1/consents", json={"scopes": ["credit_decision"]})
    body = {"request_id": "act-1", "consented": GOOD_CONSENT}
    no = travel.post("/v1/credit_pay/activations", json=body, user_id="u-1").data["account"]["account_no"]
    buy = {"purchase_id": "flight-1", "account_no": no, "merchant_id": "air", "amount_minor": 186_000}
    travel.post("/v1/credit_pay/purchases", json=buy, user_id="u-1")
    travel.post("/v1/credit_pay/purchases/flight-1/capture")

    conversion = {"plan_id": "inst-1", "terms": 6, "method": "annuity"}
    plan = travel.post("/v1/credit_pay/purchases/flight-1/installments", json=conversion, user_id="u-1").data
    assert plan["status"] == "active" and len(plan["installments"]) == 6
    assert sum(i["principal_minor"] for i in plan["installments"]) == 186_000
    again = travel.post("/v1/credit_pay/purchases/flight-1/installments", json=conversion, user_id="u-1")
    assert again.status_code == 200 and again.data["plan_no"] == plan["plan_no"]
    listed = travel.get(f"/v1/credit_pay/accounts/{no}/installments", user_id="u-1").data
    assert [p["plan_no"] for p in listed] == [plan["plan_no"]]
    assert travel.get(f"/v1/credit_pay/installments/{plan['plan_no']}", user_id="u-1").data["terms"] == 6
    with pytest.raises(ConflictError):  # already converted under another plan id
        travel.post(
            "/v1/credit_pay/purchases/flight-1/installments",
            json={**conversion, "plan_id": "inst-2"},
            user_id="u-1",
        )

    # The mall's user sees neither the plan nor the account, and cannot cancel or adjust anything.
    mall = partner_client(app, *MALL)
    mall.put("/v1/users/m-9", json={"customer_no": register(app, sequence=2)})
    mall.post("/v1/users/m-9/consents", json={"scopes": ["credit_decision"]})
    with pytest.raises(NotFoundError):
        mall.get(f"/v1/credit_pay/installments/{plan['plan_no']}", user_id="m-9")
    with pytest.raises(NotFoundError):
        mall.post(f"/v1/credit_pay/installments/{plan['plan_no']}/cancel", user_id="m-9")
    with pytest.raises(NotFoundError):
        mall.get(f"/v1/credit_pay/accounts/{no}/installments", user_id="m-9")
    with pytest.raises(PermissionDenied) as refused:
        travel.post(
            f"/v1/credit_pay/accounts/{no}/line",
            json={"adjustment_id": "adj-1", "new_line_minor": 1, "reason": "partner_wish"},
        )
    assert refused.value.code == "bank_only"
    cancelled = travel.post(f"/v1/credit_pay/installments/{plan['plan_no']}/cancel", user_id="u-1").data
    assert cancelled["status"] == "cancelled"


def test_the_bank_converts_a_bill_adjusts_a_line_and_reads_the_history(make_sceneos, http_client) -> None:
    app = make_sceneos(app_config())
    client = http_client(app)
    base = "/v1/tenants/bank/credit_pay"
    account = activate(app, register(app)).account
    no = account.account_no
    run(app, lambda pay: pay.authorize(purchase(no, "p-1", 300_000)))
    run(app, lambda pay: pay.capture("p-1"))
    bill = {
        "plan_id": "bill-1",
        "amount_minor": 120_000,
        "terms": 3,
        "method": "flat_fee",
        "statement_ref": "s-1",
    }
    created = client.post(f"{base}/accounts/{no}/installments", json=bill)
    assert created.status_code == 201, created.text
    assert created.json()["total_charge_minor"] == 2_160
    offered = client.post(
        f"{base}/accounts/{no}/installments", json={**bill, "plan_id": "bill-2", "terms": 9}
    )
    assert offered.status_code == 422 and offered.json()["errors"][0]["code"] == "plan_not_offered"
    payoff = client.post(f"{base}/installments/{created.json()['plan_no']}/payoff")
    assert payoff.status_code == 200 and payoff.json()["status"] == "paid_off"

    line = {
        "adjustment_id": "adj-1",
        "new_line_minor": account.line_minor + 100_000,
        "reason": "customer_request",
    }
    adjusted = client.post(f"{base}/accounts/{no}/line", json=line)
    assert adjusted.status_code == 201 and adjusted.json()["kind"] == "raise"
    assert client.post(f"{base}/accounts/{no}/line", json=line).status_code == 200
    below = client.post(
        f"{base}/accounts/{no}/line", json={**line, "adjustment_id": "adj-2", "new_line_minor": 0}
    )
    assert below.status_code == 409 and below.json()["errors"][0]["code"] == "below_usage"
    bad = client.post(
        f"{base}/accounts/{no}/line", json={**line, "adjustment_id": "adj-3", "new_line_minor": -5}
    )
    assert bad.status_code == 422
    history = client.get(f"{base}/accounts/{no}/line_adjustments").json()
    assert [h["adjustment_id"] for h in history] == ["adj-1"]
    assert client.get(f"{base}/accounts/{no}").json()["line_minor"] == account.line_minor + 100_000


def test_staff_see_plans_and_adjust_lines_from_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("products.credit_pay.cli.console", Console(width=300))
    config = tmp_path / "sceneos.toml"
    config.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    with open_app(str(config)) as app:
        account = activate(app, register(app)).account
        no = account.account_no
        run(app, lambda pay: pay.authorize(purchase(no, "flight-1", 186_000)))
        run(app, lambda pay: pay.capture("flight-1"))
        draft = PurchaseConversion(plan_id="inst-1", purchase_id="flight-1", terms=6, method="annuity")
        plan_no = run(app, lambda pay: InstallmentService(pay).convert_purchase(draft)).plan_no
    runner = CliRunner()
    common = ["-t", "bank", "-c", str(config)]
    shown = runner.invoke(cli, ["plans", no, *common])
    assert shown.exit_code == 0, shown.output
    assert plan_no in shown.output and "6 x annuity on 186000 CNY" in shown.output and "(IRR)" in shown.output
    assert shown.output.count("scheduled") == 6
    assert runner.invoke(cli, ["plan", plan_no, *common]).exit_code == 0
    missing = runner.invoke(cli, ["plan", "cpi_nope", *common])
    assert (
        missing.exit_code == 1 and missing.output.count("\n") == 1 and "no installment plan" in missing.output
    )

    raised = runner.invoke(
        cli,
        [
            "adjust-line",
            no,
            str(account.line_minor + 50_000),
            "--id",
            "adj-1",
            "--reason",
            "customer_request",
            *common,
        ],
    )
    assert raised.exit_code == 0 and "applied" in raised.output and "raise" in raised.output, raised.output
    refused = runner.invoke(
        cli, ["adjust-line", no, "0", "--id", "adj-2", "--reason", "risk_review", *common]
    )
    assert refused.exit_code == 1 and "in use" in refused.output and refused.output.count("\n") <= 2
    bad = runner.invoke(cli, ["adjust-line", no, "100", "--id", "adj-3", "--reason", "Bad Reason", *common])
    assert bad.exit_code == 1 and "reason" in bad.output
    history = runner.invoke(cli, ["line-history", no, *common])
    assert history.exit_code == 0 and "adj-1" in history.output and "adj-2" not in history.output
