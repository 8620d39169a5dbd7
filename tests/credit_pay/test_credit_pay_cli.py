"""``sceneos credit_pay ...`` on a configuration file, the way the bank's staff use it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from test_credit_pay_service import activate, purchase, register, run
from typer.testing import CliRunner

from core.cli_support import open_app
from products.credit_pay.cli import cli

CONFIG = """
[database]
url = "sqlite:///{db}"

[tenants.bank]
name = "Bank"
[tenants.bank.modules.party]
[tenants.bank.modules.credit]
[tenants.bank.modules.risk]
[tenants.bank.modules.credit_pay]
"""


def test_staff_see_trials_accounts_and_purchases(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("products.credit_pay.cli.console", Console(width=300))
    config = tmp_path / "sceneos.toml"
    config.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    with open_app(str(config)) as app:
        account = activate(app, register(app)).account
        run(app, lambda pay: pay.authorize(purchase(account.account_no, "flight-1", 186_000)))
    runner = CliRunner()
    trial = runner.invoke(cli, ["trial", "186000", "-t", "bank", "--terms", "6", "-c", str(config)])
    assert trial.exit_code == 0, trial.output
    assert "6 x flat_fee" in trial.output and "6 x annuity" in trial.output and "(IRR)" in trial.output
    shown = runner.invoke(cli, ["account", account.account_no, "-t", "bank", "-c", str(config)])
    assert shown.exit_code == 0 and "held_minor" in shown.output and "186000" in shown.output
    listed = runner.invoke(cli, ["purchases", account.account_no, "-t", "bank", "-c", str(config)])
    assert listed.exit_code == 0 and "flight-1" in listed.output and "authorized" in listed.output
    missing = runner.invoke(cli, ["account", "cpa_nope", "-t", "bank", "-c", str(config)])
    assert missing.exit_code != 0
