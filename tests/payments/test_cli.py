"""``sceneos payments ...`` on a configuration file, the way the bank's staff use it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from core.cli_support import open_app
from products.payments.cli import cli
from tests.payments.conftest import service_call, sign_in

CONFIG = """
[database]
url = "sqlite:///{db}"

[tenants.bank]
name = "Bank"
[tenants.bank.modules.party]
[tenants.bank.modules.payments]
pin_scrypt_n = 1024

[[tenants.bank.modules.payments.merchants]]
merchant_id = "station1"
name = "Coach Station"
city = "Hangzhou"
mcc = "4131"
settlement_account = "merchant:station1"
fee_rate = "0.006"

[[tenants.bank.modules.payments.merchants.stores]]
store_id = "hall"
name = "Ticket hall"
terminals = [{{ terminal_id = "win1", label = "Window 1" }}]
"""


def test_merchants_operators_and_statements_from_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("products.payments.cli.console", Console(width=300))
    config = tmp_path / "sceneos.toml"
    config.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, [*args, "--tenant", "bank", "--config", str(config)])
        assert result.exit_code == code, result.output + repr(result.exception)
        return result.output

    assert "station1" in run("sync")
    listed = run("merchants")
    assert "Coach Station" in listed and "4131" in listed and "0.006" in listed and "win1" in listed
    added = run("add-operator", "--employee-no", "C001", "--merchant", "station1", "--name", "Wang Fang",
                "--pin", "1234")
    assert "added: C001" in added and "1234" not in added
    assert "already exists" in run("add-operator", "--employee-no", "C001", "--merchant", "station1",
                                   "--name", "Wang Fang", "--pin", "1234")
    with open_app(str(config)) as app:
        shift = sign_in(app, "C001", "1234", "win1")
        service_call(app, lambda svc: svc.record_cash(shift.shift_no, 1_250, "TK-1", "cash-1"))
    statement = run("statement", shift.shift_no)
    assert "12.50 CNY" in statement and "cash" in statement
