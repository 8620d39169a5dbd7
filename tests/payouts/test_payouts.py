"""Payouts on real databases: instructions (idempotent, refused when the owing account is unknown or
in another currency), a pain.001 of the pending ones with the ledger moving them to in-transit, a
pain.002 that settles some and returns others (each once), a batch rejected as a whole, reports that
are not pain.002 refused, a pacs.004 bringing accepted payouts back (each once, a different amount
refused), the CLI and HTTP, and a payments merchant's daily settlement sent out of the bank."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from rich.console import Console
from typer.testing import CliRunner

from core.cli_support import open_app
from core.errors import Conflict, ValidationFailed
from core.testing.harness import tenant_config
from infra.compute import JobRunner
from infra.ledger import EntryDraft, Posting
from infra.payouts import PayoutDraft, Payouts
from infra.payouts.cli import cli
from infra.payouts.iso20022 import PAIN_001

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
OWING = "merchants:payout"
BANK = {"debtor_name": "Bank A", "debtor_account": "6217000010001234567", "debtor_agent_bic": "BKAACNSHXXX"}
NS = {"p": PAIN_001}


def app_with(make_sceneos: Any, **payouts: Any) -> Any:
    app = make_sceneos({"tenants": {"bank": tenant_config(modules={"payouts": {**BANK, **payouts}})}})
    with app.tenant("bank").unit_of_work() as uow:
        ledger = app.tenant("bank").module("ledger").container.ledger(session=uow.session)
        ledger.open_account("bank:cash", "CNY", "asset")
        ledger.open_account(OWING, "CNY", "liability")
        ledger.post(EntryDraft("owed", [Posting.debit("bank:cash", 10**8), Posting.credit(OWING, 10**8)]))
    return app


def call(app: Any, fn: Any) -> Any:
    with app.tenant("bank").unit_of_work() as uow:
        return fn(Payouts.of(uow))


def balances(app: Any) -> dict[str, int]:
    tenant = app.tenant("bank")
    with tenant.unit_of_work() as uow:
        ledger = tenant.module("ledger").container.ledger(session=uow.session)
        codes = {"owing": OWING, "in_transit": "bank:payouts:in_transit:CNY", "funding": "bank:payouts:funding:CNY"}
        known = {a.code for a in ledger.accounts()}
        found = ledger.balances([c for c in codes.values() if c in known])
        assert ledger.trial_balance("CNY").net_minor == 0
        return {name: found[code].net_posted_minor if code in found else 0 for name, code in codes.items()}


def draft(instruction_id: str, amount_minor: int, **extra: Any) -> PayoutDraft:
    fields = {"creditor_name": "Coach Station", "creditor_account": "6222021234567890", "creditor_agent": "102100099996",
              "debit_account": OWING, **extra}
    return PayoutDraft(instruction_id=instruction_id, source="test", amount_minor=amount_minor,
                       currency="CNY", remittance_info=f"settlement {instruction_id}", **fields)


def status_report(original: str, *transfers: tuple[str, str, str | None], group: str | None = None) -> bytes:
    items = "".join(
        f"<TxInfAndSts><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>{status}</TxSts>"
        + (f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn></StsRsnInf>" if reason else "")
        + "</TxInfAndSts>"
        for e2e, status, reason in transfers
    )
    group_status = f"<GrpSts>{group}</GrpSts>" if group else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>RPT1</MsgId><CreDtTm>2026-01-02T09:00:00</CreDtTm></GrpHdr>"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{original}</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>"
        f"{group_status}</OrgnlGrpInfAndSts>"
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{original}</OrgnlPmtInfId>{items}</OrgnlPmtInfAndSts>"
        "</CstmrPmtStsRpt></Document>"
    ).encode()


def payment_return(*transfers: tuple[str, str, str | None]) -> bytes:
    items = "".join(
        f"<TxInf><RtrId>R-{e2e}</RtrId><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId>"
        f'<RtrdIntrBkSttlmAmt Ccy="CNY">{amount}</RtrdIntrBkSttlmAmt>'
        + (f"<RtrRsnInf><Rsn><Cd>{reason}</Cd></Rsn></RtrRsnInf>" if reason else "")
        + "</TxInf>"
        for e2e, amount, reason in transfers
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.004.001.09"><PmtRtr>'
        f"<GrpHdr><MsgId>RTR1</MsgId><CreDtTm>2026-01-06T09:00:00</CreDtTm><NbOfTxs>{len(transfers)}</NbOfTxs>"
        "<SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf></GrpHdr>"
        f"{items}</PmtRtr></Document>"
    ).encode()


@BOTH
def test_payouts_go_out_in_a_pain001_and_a_pain002_settles_or_returns_each_once(make_sceneos) -> None:
    app = app_with(make_sceneos)
    iban = {"creditor_account": "DE89370400440532013000", "creditor_agent": "COBADEFFXXX"}
    first = call(app, lambda p: p.instruct(draft("s-1", 12_650, **iban)))
    second = call(app, lambda p: p.instruct(draft("s-2", 30_000)))
    assert first.created and first.status == "pending" and first.payout_no != second.payout_no
    assert not call(app, lambda p: p.instruct(draft("s-1", 12_650, **iban))).created
    with pytest.raises(Conflict) as changed:
        call(app, lambda p: p.instruct(draft("s-1", 12_000, **iban)))
    assert changed.value.details[0]["code"] == "exists_with_different_amount_minor"
    with pytest.raises(ValidationFailed) as unknown:
        call(app, lambda p: p.instruct(draft("s-3", 1, debit_account="nope")))
    assert unknown.value.details[0]["code"] == "unknown_account"
    # Balances in each account's normal direction (a liability's credits, an asset's debits).
    assert balances(app)["owing"] == 10**8  # nothing moves before a file is made

    batch = call(app, lambda p: p.batch(date(2026, 1, 2), "CNY"))
    assert (batch.count, batch.total_minor, batch.entry_id) == (2, 42_650, f"payouts:sent:{batch.batch_no}")
    document = etree.fromstring(batch.document.encode())
    assert document.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=NS) == "2"
    assert document.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=NS) == "426.50"
    assert document.findtext(".//p:PmtInf/p:ReqdExctnDt/p:Dt", namespaces=NS) == "2026-01-02"
    assert document.findtext(".//p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=NS) == BANK["debtor_account"]
    transfers = document.findall(".//p:CdtTrfTxInf", namespaces=NS)
    assert [t.findtext("p:PmtId/p:EndToEndId", namespaces=NS) for t in transfers] == [first.payout_no, second.payout_no]
    assert [(t.find("p:Amt/p:InstdAmt", NS).text, t.find("p:Amt/p:InstdAmt", NS).get("Ccy")) for t in transfers] == [
        ("126.50", "CNY"), ("300.00", "CNY")]
    assert transfers[0].findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS) == "DE89370400440532013000"
    assert transfers[0].findtext("p:CdtrAgt/p:FinInstnId/p:BICFI", namespaces=NS) == "COBADEFFXXX"
    assert transfers[1].findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS) == "6222021234567890"
    assert transfers[1].findtext("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=NS) == "102100099996"
    assert balances(app) == {"owing": 10**8 - 42_650, "in_transit": 42_650, "funding": 0}
    assert call(app, lambda p: p.batch(date(2026, 1, 2), "CNY")) is None  # nothing pending any more
    assert call(app, lambda p: p.get_batch(batch.batch_no)).document == batch.document

    report = status_report(batch.batch_no, (first.payout_no, "ACSC", None), (second.payout_no, "RJCT", "AC04"),
                           ("po_not_ours", "ACSC", None))
    outcome = call(app, lambda p: p.apply_status_report(report))
    assert (outcome.accepted, outcome.rejected, outcome.unknown) == ((first.payout_no,), (second.payout_no,),
                                                                    ("po_not_ours",))
    # The accepted one left the bank; the returned one is owed again; nothing is in transit.
    assert balances(app) == {"owing": 10**8 - 12_650, "in_transit": 0, "funding": -12_650}
    returned = call(app, lambda p: p.payout("s-2"))
    assert (returned.status, returned.reason) == ("rejected", "AC04")
    again = call(app, lambda p: p.apply_status_report(report))
    assert (again.accepted, again.rejected, again.unchanged) == ((), (), (first.payout_no, second.payout_no))
    assert balances(app) == {"owing": 10**8 - 12_650, "in_transit": 0, "funding": -12_650}


@BOTH
def test_a_payment_return_brings_an_accepted_payout_back_once(make_sceneos) -> None:
    app = app_with(make_sceneos)
    made = [call(app, lambda p, n=n: p.instruct(draft(f"s-{n}", 10_000 * n))) for n in (1, 2, 3)]
    batch = call(app, lambda p: p.batch(date(2026, 1, 2), "CNY"))
    call(app, lambda p: p.apply_status_report(status_report(
        batch.batch_no, (made[0].payout_no, "ACSC", None), (made[1].payout_no, "ACSC", None))))
    assert balances(app) == {"owing": 10**8 - 60_000, "in_transit": 30_000, "funding": -30_000}
    # Days later: the first comes back (account closed), the second's return names another amount,
    # the third (no report yet) comes back straight from in transit.
    returned = payment_return((made[0].payout_no, "100.00", "AC04"), (made[1].payout_no, "199.50", "AC04"),
                              (made[2].payout_no, "300.00", "MS03"), ("po_not_ours", "1.00", None))
    outcome = call(app, lambda p: p.apply_payment_return(returned))
    assert (outcome.returned, outcome.refused, outcome.unknown) == (
        (made[0].payout_no, made[2].payout_no), (made[1].payout_no,), ("po_not_ours",))
    assert balances(app) == {"owing": 10**8 - 20_000, "in_transit": 0, "funding": -20_000}
    first = call(app, lambda p: p.payout("s-1"))
    assert (first.status, first.reason) == ("returned", "AC04")
    assert call(app, lambda p: p.payout("s-2")).status == "accepted"  # refused: handled by hand
    again = call(app, lambda p: p.apply_payment_return(returned))
    assert (again.returned, again.unchanged) == ((), (made[0].payout_no, made[2].payout_no))
    assert balances(app) == {"owing": 10**8 - 20_000, "in_transit": 0, "funding": -20_000}
    for bad in (b"<Document><PmtRtr/></Document>", status_report(batch.batch_no, (made[0].payout_no, "ACSC", None)),
                payment_return((made[1].payout_no, "12.345", None))):
        with pytest.raises(ValidationFailed) as refused:
            call(app, lambda p, bad=bad: p.apply_payment_return(bad))
        assert refused.value.code == "invalid_status_report"


@pytest.mark.parametrize("charges", ["bank", "beneficiary"])
def test_a_return_net_of_charges_is_owed_again_as_the_bank_chose(make_sceneos, charges) -> None:
    app = app_with(make_sceneos, return_charges=charges)
    made = call(app, lambda p: p.instruct(draft("s-1", 10_000)))
    batch = call(app, lambda p: p.batch(date(2026, 1, 2), "CNY"))
    call(app, lambda p: p.apply_status_report(status_report(batch.batch_no, (made.payout_no, "ACSC", None))))
    outcome = call(app, lambda p: p.apply_payment_return(payment_return((made.payout_no, "85.00", "AC04"))))
    assert outcome.returned == (made.payout_no,)
    owed_again = 10_000 if charges == "bank" else 8_500
    assert balances(app) == {"owing": 10**8 - 10_000 + owed_again, "in_transit": 0, "funding": -1_500}
    with app.tenant("bank").unit_of_work() as uow:
        ledger = app.tenant("bank").module("ledger").container.ledger(session=uow.session)
        if charges == "bank":  # the bank's expense
            assert ledger.balance("bank:payouts:return_charges:CNY").net_posted_minor == 1_500
        else:
            assert "bank:payouts:return_charges:CNY" not in {a.code for a in ledger.accounts()}
    # More than was sent never comes back as a return of this payout.
    assert call(app, lambda p: p.apply_payment_return(payment_return((made.payout_no, "120.00", None)))).unchanged


@BOTH
def test_a_batch_rejected_as_a_whole_is_owed_again(make_sceneos) -> None:
    app = app_with(make_sceneos)
    call(app, lambda p: p.instruct(draft("s-1", 5_000)))
    batch = call(app, lambda p: p.batch(date(2026, 1, 2), "CNY"))
    pending = status_report(batch.batch_no, group="PDNG")
    assert call(app, lambda p: p.apply_status_report(pending)).rejected == ()
    outcome = call(app, lambda p: p.apply_status_report(status_report(batch.batch_no, group="RJCT")))
    assert len(outcome.rejected) == 1
    assert balances(app) == {"owing": 10**8, "in_transit": 0, "funding": 0}
    assert [v.status for v in call(app, lambda p: p.payouts())] == ["rejected"]


def test_a_file_needs_the_banks_account_and_reports_must_be_pain002(make_sceneos) -> None:
    app = app_with(make_sceneos, debtor_account=None)
    call(app, lambda p: p.instruct(draft("s-1", 5_000)))
    with pytest.raises(ValidationFailed) as missing:
        call(app, lambda p: p.batch(date(2026, 1, 2), "CNY"))
    assert missing.value.details[0]["field"] == "debtor_account"
    xxe = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<Document><CstmrPmtStsRpt><OrgnlGrpInfAndSts><GrpSts>&x;</GrpSts></OrgnlGrpInfAndSts>"
           b"</CstmrPmtStsRpt></Document>")
    for bad in (b"not xml", b"<Document><Other/></Document>", xxe):
        with pytest.raises(ValidationFailed) as refused:
            call(app, lambda p, bad=bad: p.apply_status_report(bad))
        assert refused.value.details[0]["code"] == "invalid_status_report"
    assert [v.status for v in call(app, lambda p: p.payouts())] == ["pending"]


def test_staff_make_the_file_and_read_the_report_in_the_cli(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("infra.payouts.cli.console", Console(width=300))
    db = tmp_path / "p.db"
    (tmp_path / "sceneos.toml").write_text(
        f'[database]\nurl = "sqlite:///{db}"\n\n[tenants.bank]\nname = "Bank"\n\n'
        '[tenants.bank.modules.payouts]\ndebtor_name = "Bank A"\ndebtor_account = "6217000010001234567"\n',
        encoding="utf-8")
    config = str(tmp_path / "sceneos.toml")
    with open_app(config) as app:
        with app.tenant("bank").unit_of_work() as uow:
            ledger = app.tenant("bank").module("ledger").container.ledger(session=uow.session)
            ledger.open_account("bank:cash", "CNY", "asset")
            ledger.open_account(OWING, "CNY", "liability")
            ledger.post(EntryDraft("owed", [Posting.debit("bank:cash", 9_000), Posting.credit(OWING, 9_000)]))
        made = call(app, lambda p: p.instruct(draft("s-1", 9_000)))
    runner = CliRunner()
    out = tmp_path / "out.xml"
    done = runner.invoke(cli, ["batch", "--date", "2026-01-02", "-o", str(out), "-t", "bank", "-c", config])
    assert done.exit_code == 0, done.output
    assert "1 payouts" in done.output and made.payout_no in out.read_text(encoding="utf-8")
    batch_no = etree.fromstring(out.read_bytes()).findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId", namespaces=NS)
    report = tmp_path / "pain002.xml"
    report.write_bytes(status_report(batch_no, (made.payout_no, "ACSC", None)))
    read = runner.invoke(cli, ["status", str(report), "-t", "bank", "-c", config])
    assert read.exit_code == 0 and "accepted 1, rejected 0" in read.output
    listed = runner.invoke(cli, ["list", "-t", "bank", "-c", config])
    assert listed.exit_code == 0 and "accepted" in listed.output
    back = tmp_path / "pacs004.xml"
    back.write_bytes(payment_return((made.payout_no, "90.00", "AC04")))
    returned = runner.invoke(cli, ["return", str(back), "-t", "bank", "-c", config])
    assert returned.exit_code == 0 and "returned 1, unchanged 0, unknown 0, refused 0" in returned.output
    bad = runner.invoke(cli, ["batch", "--date", "02/01/2026", "-o", str(out), "-t", "bank", "-c", config])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


@BOTH
def test_a_merchants_daily_settlement_is_sent_out_of_the_bank(make_sceneos, sim_clock) -> None:
    from products.payments.service import OperatorDraft
    from tests.payments.conftest import OPERATORS, SETTINGS, STATION, service_call
    from tests.payments.test_reconciliation import take_payments

    station = {**STATION, "bank_account": {"holder_name": "Coach Station", "account_number": "6222021234567890",
                                           "bank_code": "102100099996"}}
    modules = {"party": {}, "payments": {**SETTINGS, "merchants": [station]}, "payouts": BANK}
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=modules)}})
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id=station["merchant_id"], name=n, role=r, pin=p)))
    take_payments(app, {"P1": 10_000, "P2": 2_650})
    sim_clock.set(datetime(2026, 1, 2, 4, tzinfo=UTC))
    settled, _ = service_call(app, lambda svc: svc.settle(station["merchant_id"], date(2026, 1, 1)))
    assert settled.net_minor > 0
    payout = call(app, lambda p: p.payout(f"payments:settlement:{station['merchant_id']}:2026-01-01"))
    assert (payout.amount_minor, payout.debit_account, payout.status) == (settled.net_minor, settled.payout_account,
                                                                         "pending")
    report = JobRunner(app).run("bank", "payouts.batch", date(2026, 1, 2))
    assert report.completed and report.summary["payouts_sent"] == 1
    assert call(app, lambda p: p.payout(payout.instruction_id)).status == "sent"


def test_the_bank_makes_files_and_posts_reports_over_http_and_a_partner_may_not(
    make_sceneos, http_client, partner_client
) -> None:
    from core.sdk import PermissionDenied
    from core.testing.harness import partner_config

    key = ("pk_wallet_1", "wallet-secret-0123456789abcdef")
    app = make_sceneos({"tenants": {"bank": tenant_config(
        modules={"payouts": BANK}, partners={"wallet": partner_config("Wallet", key_id=key[0], secret=key[1],
                                                                      scopes=["payouts"])})}})
    with app.tenant("bank").unit_of_work() as uow:
        ledger = app.tenant("bank").module("ledger").container.ledger(session=uow.session)
        ledger.open_account("bank:cash", "CNY", "asset")
        ledger.open_account(OWING, "CNY", "liability")
        ledger.post(EntryDraft("owed", [Posting.debit("bank:cash", 50_000), Posting.credit(OWING, 50_000)]))
    made = call(app, lambda p: p.instruct(draft("s-1", 20_000)))
    client = http_client(app)
    base = "/v1/tenants/bank/payouts"
    batch = client.post(f"{base}/batches", json={"business_date": "2026-01-02", "currency": "CNY"})
    assert batch.status_code == 201, batch.text
    assert (batch.json()["count"], batch.json()["total_minor"]) == (1, 20_000)
    batch_no = batch.json()["batch_no"]
    assert client.get(f"{base}/batches/{batch_no}").json()["entry_id"] == f"payouts:sent:{batch_no}"
    document = client.get(f"{base}/batches/{batch_no}/pain001")
    assert document.headers["content-type"].startswith("application/xml") and made.payout_no in document.text
    assert client.post(f"{base}/batches", json={"business_date": "2026-01-02"}).status_code == 204
    applied = client.post(f"{base}/status-reports", content=status_report(batch_no, (made.payout_no, "ACSC", None)),
                          headers={"content-type": "application/xml"})
    assert applied.status_code == 200 and applied.json()["accepted"] == [made.payout_no]
    assert [p["status"] for p in client.get(f"{base}/payouts", params={"status": "accepted"}).json()] == ["accepted"]
    back = client.post(f"{base}/payment-returns", content=payment_return((made.payout_no, "200.00", "AC04")),
                       headers={"content-type": "application/xml"})
    assert back.status_code == 200 and back.json()["returned"] == [made.payout_no]
    assert [p["reason"] for p in client.get(f"{base}/payouts", params={"status": "returned"}).json()] == ["AC04"]
    bad = client.post(f"{base}/status-reports", content=b"<nope/>", headers={"content-type": "application/xml"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_status_report"
    assert client.get(f"{base}/batches/pob_unknown").status_code == 404
    wallet = partner_client(app, *key)
    with pytest.raises(PermissionDenied):
        wallet.get("/v1/payouts/payouts")
