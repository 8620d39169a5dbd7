"""``sceneos risk ...`` on a configuration file, the way an operator uses it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from core.cli_support import open_app
from middle.risk.cli import cli
from tests.risk.support import activate, register

CONFIG = """
[database]
url = "sqlite:///{db}"

[tenants.bank]
name = "Bank"
[tenants.bank.modules.party]
[tenants.bank.modules.credit]
[tenants.bank.modules.risk]
blacklist = {{ devices = ["emu-1"] }}

[[tenants.bank.modules.risk.rules]]
name = "manual"
expression = 'consented.income_band == "lt_3k"'
action = "review"
reason_code = "low_income"
version = 2
"""


def test_operators_manage_blacklists_decisions_and_reviews_from_the_cli(tmp_path: Path, monkeypatch) -> None:
    # Wide enough that no table cell is cut, whatever terminal the tests run in.
    monkeypatch.setattr("middle.risk.cli.console", Console(width=300))
    config = tmp_path / "sceneos.toml"
    config.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    with open_app(str(config)) as app:
        customer = register(app)
        referred = activate(app, customer, consented={"income_band": "lt_3k"})
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, [*args, "--tenant", "bank", "--config", str(config)])
        assert result.exit_code == code, result.output + repr(result.exception)
        return result.output

    assert "manual" in run("rules", "--flow", "activation") and "blacklist.device" in run("rules")
    assert "added" in run("blacklist", "add", "phone", "13900000001", "--reason", "fraud ring", "--operator", "e1001")
    listed = run("blacklist", "list")
    assert "+8613900000001" in listed and "operator:e1001" in listed and "emu-1" in listed
    assert "removed" in run("blacklist", "remove", "phone", "+8613900000001", "--operator", "e1001")
    assert "not listed" in run("blacklist", "remove", "phone", "+8613900000001", "--operator", "e1001", code=1)

    assert referred.decision_no in run("decisions", "--customer", customer)
    assert '"low_income"' in run("show", referred.decision_no)
    assert "same" in run("replay", referred.decision_no)
    assert referred.review_case_no in run("reviews", "list")
    assert "approved by e2002" in run("reviews", "approve", referred.review_case_no, "--operator", "e2002",
                                      "--note", "income proof received")
    trail = run("reviews", "show", referred.decision_no)
    assert "opened" in trail and "e2002" in trail and "income proof received" in trail
    assert referred.review_case_no not in run("reviews", "list")
