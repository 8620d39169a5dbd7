"""Partner remittances on real databases: repayments a partner collects are owed by that partner
(its own clearing account), the bank records what it remits against what it collected that day,
retries and conflicts, refusals that change nothing, the bank's routes (a partner may not record
one) and the CLI; the bank's own channel settled the same way by core banking's transfers; a
property: what a partner owes is always what it collected less what it remitted."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from rich.console import Console
from test_billing import BOTH, buy, config, ledger_check, move_to, open_account, pay, run
from test_credit_pay_api import TRAVEL, app_config
from test_credit_pay_cli import CONFIG
from test_lines import EventRecorder
from typer.testing import CliRunner

from core.cli_support import open_app
from core.errors import Conflict, NotFound, ValidationFailed
from core.sdk import PermissionDenied
from products.credit_pay.cli import cli
from products.credit_pay.end_of_day import repayment_clearing_account
from products.credit_pay.remittance import RemittanceDraft, Remittances

DAY1, DAY2 = date(2026, 1, 10), date(2026, 1, 11)



def remit(
    app: Any,
    remittance_id: str,
    amount_minor: int,
    day: date = DAY1,
    partner_id: str | None = "travel_app",
    currency: str = "CNY",
) -> Any:
    draft = RemittanceDraft(
        remittance_id=remittance_id, partner_id=partner_id, business_date=day, amount_minor=amount_minor,
        currency=currency,
    )
    return run(app, lambda service: Remittances(service).record(draft))


def position(app: Any, partner_id: str | None = "travel_app") -> tuple[int, int, int]:
    found = run(app, lambda service: Remittances(service).position(partner_id))
    return found.collected_minor, found.remitted_minor, found.outstanding_minor


def clearing(app: Any, partner_id: str | None) -> int:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        return ledger.balance(repayment_clearing_account("CNY", partner_id)).net_posted_minor


@BOTH
def test_a_partner_owes_what_it_collected_until_it_remits(make_sceneos, sim_clock) -> None:
    events = EventRecorder()
    app = make_sceneos(config(plugins=["events"]), plugins={"events": events})
    no = open_account(app)
    move_to(sim_clock, DAY1)
    buy(app, no, "flight", 130_000)
    pay(app, no, "r-1", 30_000, partner_id="travel_app")
    pay(app, no, "r-2", 20_000, partner_id="travel_app")
    pay(app, no, "r-3", 10_000)  # the bank's own channel
    assert (clearing(app, "travel_app"), clearing(app, None)) == (50_000, 10_000)
    assert position(app) == (50_000, 0, 50_000)

    move_to(sim_clock, DAY2)
    first = remit(app, "rm-1", 45_000)
    assert first.created and (first.collected_minor, first.difference_minor) == (50_000, -5_000)
    assert first.entry_id == "credit_pay:remittance:rm-1"
    assert position(app) == (50_000, 45_000, 5_000)
    again = remit(app, "rm-1", 45_000)
    assert not again.created and position(app) == (50_000, 45_000, 5_000)
    with pytest.raises(Conflict) as conflict:
        remit(app, "rm-1", 40_000)
    assert conflict.value.details[0]["code"] == "exists_with_different_amount_minor"
    # Refusals change nothing.
    with pytest.raises(NotFound):
        remit(app, "rm-2", 1_000, partner_id="mall")  # it collected nothing
    with pytest.raises(ValidationFailed) as future:
        remit(app, "rm-3", 1_000, day=DAY2 + timedelta(days=1))
    assert future.value.details[0]["code"] == "in_future"
    with pytest.raises(ValidationError):
        RemittanceDraft(remittance_id="rm 4", partner_id="travel_app", business_date=DAY1, amount_minor=1)
    assert position(app) == (50_000, 45_000, 5_000)
    # The rest, a day later.
    assert remit(app, "rm-5", 5_000).difference_minor == -45_000  # against the whole day's collections
    assert position(app) == (50_000, 50_000, 0) and clearing(app, "travel_app") == 0
    assert [r.remittance_id for r in run(app, lambda s: Remittances(s).remittances("travel_app"))] == ["rm-1", "rm-5"]
    recorded = [e.payload for e in events.events if e.type == "credit_pay.remittance.recorded"]
    assert [(p["remittance_id"], p["amount_minor"], p["difference_minor"]) for p in recorded] == [
        ("rm-1", 45_000, -5_000),
        ("rm-5", 5_000, -45_000),
    ]
    ledger_check(app)


@BOTH
def test_the_bank_channel_is_settled_by_core_bankings_transfers(make_sceneos, sim_clock) -> None:
    events = EventRecorder()
    app = make_sceneos(config(plugins=["events"]), plugins={"events": events})
    no = open_account(app)
    move_to(sim_clock, DAY1)
    buy(app, no, "flight", 130_000)
    pay(app, no, "r-1", 30_000)  # the bank's own app
    pay(app, no, "r-2", 12_000)
    pay(app, no, "r-3", 20_000, partner_id="travel_app")
    assert position(app, partner_id=None) == (42_000, 0, 42_000)
    with pytest.raises(NotFound) as none_yet:
        remit(app, "core-0", 1_000, partner_id=None, currency="USD")
    assert "the bank's own channel has collected no" in str(none_yet.value)

    move_to(sim_clock, DAY2)
    first = remit(app, "core-1", 42_000, partner_id=None)
    assert first.created and first.partner_id is None and first.difference_minor == 0
    assert remit(app, "core-1", 42_000, partner_id=None).created is False
    with pytest.raises(Conflict) as other:
        remit(app, "core-1", 42_000)  # the same id for a partner
    assert other.value.details[0]["code"] == "exists_with_different_partner_id"
    # The channel owes nothing now; the partner's collections are its own.
    assert position(app, partner_id=None) == (42_000, 42_000, 0) and clearing(app, None) == 0
    assert position(app) == (20_000, 0, 20_000)
    assert [r.remittance_id for r in run(app, lambda s: Remittances(s).remittances(None))] == ["core-1"]
    assert run(app, lambda s: Remittances(s).remittances("travel_app")) == []
    recorded = next(e for e in events.events if e.type == "credit_pay.remittance.recorded")
    assert (recorded.subject, recorded.payload["partner_id"]) == ("bank_channel", None)
    ledger_check(app)


def test_the_bank_records_remittances_over_http_and_a_partner_may_not(
    make_sceneos, sim_clock, http_client, partner_client
) -> None:
    app = make_sceneos(app_config())
    no = open_account(app)
    buy(app, no, "flight", 130_000)
    pay(app, no, "r-1", 30_000, partner_id="travel")
    client = http_client(app)
    base = "/v1/tenants/bank/credit_pay/partners/travel"
    body = {"remittance_id": "rm-1", "business_date": "2026-01-01", "amount_minor": 30_000}
    first = client.post(f"{base}/remittances", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["difference_minor"] == 0
    assert client.post(f"{base}/remittances", json=body).status_code == 200
    assert [r["remittance_id"] for r in client.get(f"{base}/remittances").json()] == ["rm-1"]
    assert client.get(f"{base}/position").json() == {
        "partner_id": "travel", "currency": "CNY", "collected_minor": 30_000, "remitted_minor": 30_000,
        "outstanding_minor": 0,
    }
    bad = client.post(f"{base}/remittances", json={**body, "remittance_id": "rm-2", "amount_minor": 0})
    assert bad.status_code == 422
    travel = partner_client(app, *TRAVEL)
    with pytest.raises(PermissionDenied):
        travel.post("/v1/credit_pay/partners/travel/remittances", json=body)
    # The bank's own channel: core banking's transfers, at /bank-channel.
    pay(app, no, "r-2", 8_000)
    channel = "/v1/tenants/bank/credit_pay/bank-channel"
    moved = client.post(f"{channel}/remittances", json={**body, "remittance_id": "core-1", "amount_minor": 5_000})
    assert moved.status_code == 201, moved.text
    assert (moved.json()["partner_id"], moved.json()["difference_minor"]) == (None, -3_000)
    assert [r["remittance_id"] for r in client.get(f"{channel}/remittances").json()] == ["core-1"]
    assert client.get(f"{channel}/position").json() == {
        "partner_id": None, "currency": "CNY", "collected_minor": 8_000, "remitted_minor": 5_000,
        "outstanding_minor": 3_000,
    }
    with pytest.raises(PermissionDenied):
        travel.get("/v1/credit_pay/bank-channel/position")


def test_staff_record_remittances_in_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("products.credit_pay.cli.console", Console(width=300))
    config_file = tmp_path / "sceneos.toml"
    config_file.write_text(CONFIG.format(db=tmp_path / "cli.db"), encoding="utf-8")
    with open_app(str(config_file)) as app:
        no = open_account(app)
        buy(app, no, "flight", 130_000)
        pay(app, no, "r-1", 30_000, partner_id="travel_app")
        today = app.tenant("bank").business_date().isoformat()
    runner = CliRunner()
    common = ["-t", "bank", "-c", str(config_file)]
    done = runner.invoke(cli, ["remit", "travel_app", "20000", "--id", "rm-1", "--date", today, *common])
    assert done.exit_code == 0, done.output
    assert "remittance rm-1 recorded: 20000 CNY" in done.output and "travel_app still owes 10000" in done.output
    listed = runner.invoke(cli, ["remittances", "travel_app", *common])
    assert listed.exit_code == 0 and "rm-1" in listed.output and "outstanding 10000" in listed.output
    unknown = runner.invoke(cli, ["remit", "mall", "100", "--id", "rm-2", "--date", today, *common])
    assert unknown.exit_code == 1 and "collected no credit-pay repayment" in unknown.output
    assert "Traceback" not in unknown.output
    with open_app(str(config_file)) as app:
        pay(app, no, "r-2", 7_000)
    moved = runner.invoke(cli, ["channel-remit", "7000", "--id", "core-1", "--date", today, *common])
    assert moved.exit_code == 0, moved.output
    assert "remittance core-1 recorded: 7000 CNY" in moved.output and "the bank channel still owes 0" in moved.output
    listed = runner.invoke(cli, ["channel-remittances", *common])
    assert listed.exit_code == 0 and "core-1" in listed.output and "outstanding 0" in listed.output


EXAMPLES = itertools.count(1)


@given(
    moves=st.lists(
        st.tuples(st.sampled_from(["collect", "remit"]), st.integers(1, 20_000)), min_size=1, max_size=6
    )
)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_what_a_partner_owes_is_what_it_collected_less_what_it_remitted(make_sceneos, moves) -> None:
    example = next(EXAMPLES)
    app = make_sceneos(config())
    no = open_account(app, sequence=example)
    buy(app, no, f"buy-{example}", 200_000)
    partner = f"partner{example}"
    pay(app, no, f"{partner}-first", 1, partner_id=partner)  # the partner's clearing account exists
    collected, remitted = 1, 0
    for n, (move, amount) in enumerate(moves):
        if move == "collect":
            pay(app, no, f"{partner}-r-{n}", amount, partner_id=partner)
            collected += amount
        else:
            today = app.tenant("bank").business_date()
            remit(app, f"{partner}-rm-{n}", amount, day=today, partner_id=partner)
            remitted += amount
    assert position(app, partner) == (collected, remitted, collected - remitted)
    assert clearing(app, partner) == collected - remitted
    ledger_check(app)
