"""The ledger as a module: enabled for every tenant, chart of accounts from configuration and hooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.testing.harness import tenant_config
from infra.ledger import EntryDraft, InsufficientFunds, Posting
from infra.ledger.settings import AccountSpec

CHART = {"accounts": [
    {"code": "bank:settlement", "type": "asset"},
    {"code": "cust:1:wallet", "type": "liability", "owner_type": "customer", "owner_id": "1",
     "constraint": "debits_must_not_exceed_credits"},
]}


class PointsPlugin:
    @hookimpl
    def sceneos_ledger_chart_of_accounts(self, tenant):
        return [AccountSpec(code="bank:points_pool", type="liability", currency="CNY")]


def test_every_tenant_has_the_ledger_with_its_chart_opened_at_startup(make_sceneos) -> None:
    app = make_sceneos(
        {"tenants": {"bank_a": tenant_config("A", modules={"party": {}, "ledger": CHART}, plugins=["points"]),
                     "bank_b": tenant_config("B")}},
        plugins={"points": PointsPlugin()},
    )
    a = app.tenant("bank_a")
    with a.unit_of_work() as uow:
        ledger = a.module("ledger").container.ledger(session=uow.session)
        assert [acc.code for acc in ledger.accounts()] == ["bank:points_pool", "bank:settlement", "cust:1:wallet"]
        ledger.post(EntryDraft("topup-1", [Posting.debit("bank:settlement", 10_000), Posting.credit("cust:1:wallet", 10_000)]))
        with pytest.raises(InsufficientFunds):
            ledger.post(EntryDraft("spend-1", [Posting.debit("cust:1:wallet", 10_001), Posting.credit("bank:settlement", 10_001)]))
    with a.unit_of_work() as uow:
        assert a.module("ledger").container.ledger(session=uow.session).balance("cust:1:wallet").available_minor == 10_000
    b = app.tenant("bank_b")
    assert b.has_module("ledger")
    with b.unit_of_work() as uow:
        assert b.module("ledger").container.ledger(session=uow.session).accounts() == []
    app.close()
    # Restarting opens the same chart again without error (idempotent).
    make_sceneos({"database": {"url": str(app.engine.url)}, "tenants": {
        "bank_a": tenant_config("A", modules={"party": {}, "ledger": CHART}, plugins=["points"])}},
        plugins={"points": PointsPlugin()})


def test_a_bad_account_in_the_chart_names_the_key(make_sceneos) -> None:
    bad = {"accounts": [{"code": "bank:x", "type": "assets"}]}
    with pytest.raises(ConfigError, match=r"tenants\.bank\.modules\.ledger\.accounts\[0\]\.type: "):
        make_sceneos({"tenants": {"bank": tenant_config(modules={"ledger": bad})}})


def test_a_tenant_may_switch_the_ledger_off(make_sceneos) -> None:
    app = make_sceneos({"tenants": {"bank": tenant_config(modules={"ledger": {"enabled": False}})}})
    assert not app.tenant("bank").has_module("ledger")


def test_ledger_cli_shows_accounts_and_a_zero_trial_balance(tmp_path: Path) -> None:
    (tmp_path / "sceneos.toml").write_text(
        '[database]\nurl = "sqlite:///l.db"\n[tenants.bank]\nname = "Bank"\n'
        '[[tenants.bank.modules.ledger.accounts]]\ncode = "bank:settlement"\ntype = "asset"\n'
        '[[tenants.bank.modules.ledger.accounts]]\ncode = "bank:income"\ntype = "income"\n',
        encoding="utf-8",
    )
    run = lambda *args: subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True,  # noqa: E731
                                       cwd=tmp_path, timeout=60, env={"COLUMNS": "160", "PATH": "/usr/bin"})
    accounts = run("ledger", "accounts", "-t", "bank")
    assert accounts.returncode == 0, accounts.stderr
    assert "bank:settlement" in accounts.stdout and "bank:income" in accounts.stdout
    trial = run("ledger", "trial-balance", "-t", "bank")
    assert trial.returncode == 0 and "total" in trial.stdout and "0.00" in trial.stdout
    bad = run("ledger", "accounts", "-t", "bank", "--as-of", "yesterday")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --as-of 'yesterday' is not an ISO 8601 date-time"


def test_the_expire_pending_job_releases_holds_past_their_expiry(make_sceneos, sim_clock) -> None:
    from datetime import date, timedelta

    from infra.compute import JobRunner

    app = make_sceneos({"tenants": {"bank": tenant_config(modules={"party": {}, "ledger": CHART})}})
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        ledger.post(EntryDraft("fund", [Posting.debit("bank:settlement", 5_000), Posting.credit("cust:1:wallet", 5_000)]))
        ledger.post(EntryDraft("hold", [Posting.debit("cust:1:wallet", 3_000), Posting.credit("bank:settlement", 3_000)],
                               pending=True, expires_at=sim_clock.now() + timedelta(minutes=5)))
    sim_clock.advance(minutes=6)
    report = JobRunner(app).run("bank", "ledger.expire_pending", date(2026, 1, 1))
    assert report.status == "completed", report.message
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        assert ledger.balance("cust:1:wallet").available_minor == 5_000
        assert ledger.get_entry("hold").status == "expired"
    again = JobRunner(app).run("bank", "ledger.expire_pending", date(2026, 1, 1))
    assert again.already_completed
