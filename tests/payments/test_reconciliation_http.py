"""Reconciliation through the bank's routes and the ``sceneos payments`` CLI."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from core.cli_support import open_app
from products.payments.cli import cli
from tests.payments.conftest import fund_wallet, service_call, sign_in
from tests.payments.test_cli import CONFIG
from tests.payments.test_reconciliation import DAY, DAY_PAYMENTS, sample, take_payments
from tests.payments.test_reconciliation_files import XXE

BASE = "/v1/tenants/bank/payments/recon"
CSV = "recon_channel_2026-01-01.csv"


def test_upload_list_show_and_resolve_over_http(station, http_client) -> None:
    bank = http_client(station)
    numbers = take_payments(station, DAY_PAYMENTS)
    params = {"date": DAY.isoformat(), "format": "csv", "file_name": CSV, "actor": "ops.wang"}
    made = bank.post(f"{BASE}/files", params=params, content=sample(CSV, numbers),
                     headers={"content-type": "text/csv"})
    assert made.status_code == 201, made.text
    run = made.json()
    assert (run["matched_count"], run["exception_count"], run["summary"]["amount_under"]) == (2, 2, 1)
    again = bank.post(f"{BASE}/files", params=params, content=sample(CSV, numbers))
    assert again.status_code == 200 and again.json()["run_no"] == run["run_no"]
    assert [r["run_no"] for r in bank.get(f"{BASE}/runs", params={"date": "2026-01-01"}).json()] == [run["run_no"]]
    assert bank.get(f"{BASE}/runs/{run['run_no']}").json()["open_count"] == 2

    [under] = bank.get(f"{BASE}/runs/{run['run_no']}/exceptions", params={"kind": "amount_under"}).json()
    body = {"action": "write_off", "actor": "ops.li", "note": "short settlement confirmed"}
    resolved = bank.post(f"{BASE}/exceptions/{under['exception_no']}/resolve", json=body)
    assert resolved.status_code == 200 and resolved.json()["ledger_entry_id"].startswith("recon:writeoff:")
    twice = bank.post(f"{BASE}/exceptions/{under['exception_no']}/resolve", json={**body, "action": "accept"})
    assert twice.status_code == 409 and twice.json()["code"] == "already_resolved"
    assert twice.headers["content-type"].startswith("application/problem+json")
    assert len(bank.get(f"{BASE}/runs/{run['run_no']}/exceptions", params={"open_only": True}).json()) == 1
    assert [a["action"] for a in bank.get(f"{BASE}/runs/{run['run_no']}/audit").json()] == [
        "received", "reconciled", "write_off"]
    unknown = bank.post(f"{BASE}/exceptions/rec_x-L1/resolve", json=body)
    assert unknown.status_code == 404


def test_malformed_and_hostile_uploads_are_refused_over_http(station, http_client) -> None:
    bank = http_client(station)
    for fmt, content, needle in [
        ("csv", b"channel_ref,payment_ref,amount,currency,status,booked_at\nC1,p,1.0.0,CNY,SUCCESS,\n", "line 2"),
        ("camt053", XXE, "not allowed"),
        ("camt053", b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'><Stmt>", "not well-formed"),
        ("camt053", b"<Document/>", "is not a camt.053 Document"),
    ]:
        refused = bank.post(f"{BASE}/files", params={"date": "2026-01-01", "format": fmt, "file_name": "f",
                                                     "actor": "ops"}, content=content)
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_statement_file", refused.text
        assert needle in refused.json()["detail"]
    assert bank.post(f"{BASE}/files", params={"date": "2026-01-01", "format": "mt940", "file_name": "f",
                                              "actor": "ops"}, content=b"x").status_code == 422
    assert bank.get(f"{BASE}/runs").json() == []


def test_reconcile_show_and_resolve_from_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("products.payments.recon_cli.console", Console(width=250))
    config = tmp_path / "sceneos.toml"
    config.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, [*args, "--tenant", "bank", "--config", str(config)])
        assert result.exit_code == code, result.output + repr(result.exception)
        return result.output

    run("sync")
    run("add-operator", "--employee-no", "C001", "--merchant", "station1", "--name", "Wang Fang", "--pin", "1234")
    with open_app(str(config)) as app:
        day = app.tenant("bank").business_date()
        shift = sign_in(app, "C001", "1234", "win1")
        fund_wallet(app, "cust:alice", 100_000)
        numbers = {}
        for key, amount in DAY_PAYMENTS.items():
            qr = service_call(app, lambda svc, k=key, a=amount: svc.create_qr(shift.shift_no, a, f"B-{k}", f"q-{k}"))
            service_call(app, lambda svc, k=key, p=qr.payload: svc.pay(p, "cust:alice", f"w-{k}")).raise_unless_paid()
            numbers[key] = qr.payment_no
    statement = tmp_path / "channel.csv"
    statement.write_bytes(sample(CSV, numbers))
    out = run("reconcile", str(statement), "--date", day.isoformat(), "--format", "csv", "--as", "ops.wang")
    assert "reconciled" in out and "amount_under" in out
    run_no = next(word for word in out.split() if word.startswith("rec_"))
    assert "already received" in run("reconcile", str(statement), "--date", day.isoformat(), "--format", "csv",
                                      "--as", "ops.wang")
    shown = run("recon", "show", run_no)
    assert numbers["P3"] in shown and "missing_in_channel" in shown and "-5.00 CNY" in shown
    exception_no = f"{run_no}-L3"
    resolved = run("recon", "resolve", exception_no, "--action", "write_off", "--note", "short", "--as", "ops.li")
    assert f"recon:writeoff:{exception_no}" in resolved
    again = run("recon", "resolve", exception_no, "--action", "accept", "--note", "x", "--as", "ops.li", code=2)
    assert again.strip().startswith("error: exception") and "already resolved" in again and len(again.strip().splitlines()) == 1
    assert "write_off" in run("recon", "audit", run_no) and run_no in run("recon", "list")
    bad = tmp_path / "bad.csv"
    bad.write_text("channel_ref,amount\n", encoding="utf-8")
    refused = run("reconcile", str(bad), "--date", day.isoformat(), "--format", "csv", "--as", "ops", code=2)
    assert refused.strip() == ("error: line 1: missing column(s) payment_ref, currency, status, booked_at in the "
                               "header (expected channel_ref, payment_ref, amount, currency, status, booked_at)")
