"""Daily reconciliation against the channel's file, on SQLite and PostgreSQL: matching, every
exception kind, audited resolution with ledger write-offs, idempotent re-upload, refused files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.errors import NotFound, ValidationFailed
from infra.compute import JobRunner
from products.payments.models import ReconAudit, ReconException, ReconLine, ReconRun
from products.payments.recon_files import StatementFileInvalid
from products.payments.reconciliation import (
    CLEARING_ACCOUNT,
    WRITE_OFF_ACCOUNT,
    AlreadyResolved,
    CannotWriteOff,
    NotFixed,
    ReconciliationService,
)
from products.payments.service import OperatorDraft
from tests.payments.conftest import (
    OPERATORS,
    approve,
    bank_config,
    fund_wallet,
    ledger_call,
    service_call,
    sign_in,
)
from tests.payments.test_reconciliation_files import LAUGHS, XXE

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
DATA = Path(__file__).parent / "data"
DAY = date(2026, 1, 1)  # the simulated clock starts at 2026-01-01T00:00Z, 08:00 in Shanghai
HEADER = "channel_ref,payment_ref,amount,currency,status,booked_at\n"


def recon(app, fn):
    runtime = app.tenant("bank").module("payments")
    with runtime.tenant.unit_of_work() as uow:
        return fn(ReconciliationService(uow, runtime.settings))


def take_payments(app, amounts: dict[str, int]) -> dict[str, str]:
    """QR payments of the day paid from a wallet: key -> payment number."""
    shift = sign_in(app, "C001", "1234", "win1")
    fund_wallet(app, "cust:alice", 1_000_000)
    numbers = {}
    for key, amount in amounts.items():
        qr = service_call(app, lambda svc, k=key, a=amount: svc.create_qr(shift.shift_no, a, f"B-{k}", f"q-{k}"))
        service_call(app, lambda svc, k=key, p=qr.payload: svc.pay(p, "cust:alice", f"w-{k}")).raise_unless_paid()
        numbers[key] = qr.payment_no
    return numbers


def sample(name: str, numbers: dict[str, str]) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    for key, value in numbers.items():
        text = text.replace("{" + key + "}", value)
    return text.encode("utf-8")


def counts(app) -> tuple[int, int, int, int]:
    def go(svc):
        return tuple(svc.session.execute(select(func.count()).select_from(model)).scalar_one()
                     for model in (ReconRun, ReconLine, ReconException, ReconAudit))
    return recon(app, go)


DAY_PAYMENTS = {"P1": 10_000, "P2": 5_000, "P3": 2_000, "P4": 3_000}


@BOTH
@pytest.mark.parametrize(("name", "fmt"), [("recon_channel_2026-01-01.csv", "csv"),
                                            ("recon_channel_2026-01-01.camt053.xml", "camt053")])
def test_the_channel_file_finds_the_missing_and_the_mismatched_payment(station, name, fmt) -> None:
    numbers = take_payments(station, DAY_PAYMENTS)
    run, created = recon(station, lambda svc: svc.receive(DAY, sample(name, numbers), fmt, file_name=name,
                                                          actor="ops.wang"))
    assert created and run.status == "reconciled" and run.file_format == fmt
    assert (run.line_count, run.our_count, run.matched_count, run.exception_count, run.open_count) == (3, 4, 2, 2, 2)
    assert run.summary["missing_in_channel"] == 1 and run.summary["amount_under"] == 1
    found = {e.kind: e for e in recon(station, lambda svc: svc.exceptions(run.run_no))}
    assert set(found) == {"missing_in_channel", "amount_under"}
    missing, under = found["missing_in_channel"], found["amount_under"]
    assert (missing.payment_no, missing.our_amount_minor, missing.channel_amount_minor, missing.difference_minor) == (
        numbers["P3"], 2_000, None, -2_000)
    assert (under.payment_no, under.channel_ref, under.our_amount_minor, under.channel_amount_minor,
            under.difference_minor) == (numbers["P2"], "CH20260101000002", 5_000, 4_500, -500)
    assert under.resolution is None
    booked = recon(station, lambda svc: svc.session.scalars(select(ReconLine.booked_at).order_by(ReconLine.line_no)).all())
    assert booked[0] == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)  # stored by the bulk insert, read back by the ORM


@BOTH
def test_every_exception_kind_is_found(station, sim_clock) -> None:
    n = take_payments(station, {"P1": 10_000, "P2": 5_000, "P3": 2_000, "P4": 3_000, "P5": 1_000, "P6": 700})
    shift = sign_in(station, "C001", "1234", "win1")
    cash = service_call(station, lambda svc: svc.record_cash(shift.shift_no, 900, "B-cash", "cash-1"))
    unpaid = service_call(station, lambda svc: svc.create_qr(shift.shift_no, 800, "B-unpaid", "q-unpaid"))
    content = (HEADER
               + f"C1,{n['P1']},100.00,USD,SUCCESS,\n"        # currency mismatch
               + f"C2,{n['P2']},55.00,CNY,SUCCESS,\n"         # amount over
               + f"C3,{n['P3']},19.99,CNY,SUCCESS,\n"         # amount under
               + f"C4,{n['P4']},30.00,CNY,FAILED,\n"          # status mismatch
               + f"C5,{n['P5']},10.00,CNY,SUCCESS,\n"         # matched
               + f"C6,{n['P5']},10.00,CNY,SUCCESS,\n"         # the channel charged it twice
               + "C7,pay_not_ours,12.00,CNY,SUCCESS,\n"        # missing in ours
               + f"C8,{cash.payment_no},9.00,CNY,SUCCESS,\n"  # cash never passes the channel
               )                                               # P6 missing in the channel
    run, _ = recon(station, lambda svc: svc.receive(DAY, content.encode(), "csv", file_name="day.csv", actor="ops"))
    assert run.summary == {"missing_in_channel": 1, "missing_in_ours": 2, "amount_over": 1, "amount_under": 1,
                           "currency_mismatch": 1, "status_mismatch": 1, "duplicate_in_channel": 1}
    assert (run.line_count, run.our_count, run.matched_count, run.exception_count) == (8, 6, 1, 8)
    by_line = {e.line_no: e for e in recon(station, lambda svc: svc.exceptions(run.run_no))}
    assert by_line[2].kind == "currency_mismatch" and by_line[2].difference_minor is None
    assert (by_line[3].kind, by_line[3].difference_minor) == ("amount_over", 500)
    assert (by_line[4].kind, by_line[4].difference_minor) == ("amount_under", -1)
    assert (by_line[5].kind, by_line[5].channel_status, by_line[5].our_status, by_line[5].difference_minor) == (
        "status_mismatch", "failed", "succeeded", -3_000)
    assert (by_line[7].kind, by_line[7].payment_no, by_line[7].difference_minor) == (
        "duplicate_in_channel", n["P5"], 1_000)
    assert (by_line[8].kind, by_line[8].payment_no, by_line[8].difference_minor) == ("missing_in_ours", None, 1_200)
    assert (by_line[9].kind, by_line[9].payment_no) == ("missing_in_ours", None)  # cash is not a channel payment
    [missing] = recon(station, lambda svc: svc.exceptions(run.run_no, kind="missing_in_channel"))
    assert missing.payment_no == n["P6"] and missing.payment_no != unpaid.payment_no  # unpaid: not expected
    with pytest.raises(ValidationFailed):
        recon(station, lambda svc: svc.exceptions(run.run_no, kind="nonsense"))


@BOTH
def test_resolution_writes_off_through_the_ledger_once_and_is_audited(station, sim_clock) -> None:
    numbers = take_payments(station, DAY_PAYMENTS)
    name = "recon_channel_2026-01-01.csv"
    run, _ = recon(station, lambda svc: svc.receive(DAY, sample(name, numbers), "csv", file_name=name, actor="ops.wang"))
    found = {e.kind: e for e in recon(station, lambda svc: svc.exceptions(run.run_no))}
    sim_clock.advance(hours=3)
    written = recon(station, lambda svc: svc.resolve(found["amount_under"].exception_no, "write_off", "ops.li",
                                                     "channel confirmed the short settlement"))
    assert (written.resolution, written.resolved_by, written.resolved_at) == ("write_off", "ops.li", sim_clock.now())
    assert written.ledger_entry_id == f"recon:writeoff:{written.exception_no}"
    balances = ledger_call(station, lambda ledger: (ledger.balance(WRITE_OFF_ACCOUNT), ledger.balance(CLEARING_ACCOUNT),
                                                    ledger.trial_balance("CNY")))
    assert (balances[0].debits_posted_minor, balances[0].credits_posted_minor) == (500, 0)
    assert (balances[1].debits_posted_minor, balances[1].credits_posted_minor) == (0, 500)
    assert balances[2].balanced
    before = counts(station)
    with pytest.raises(AlreadyResolved, match=r"already resolved \(write_off\) by ops\.li"):
        recon(station, lambda svc: svc.resolve(found["amount_under"].exception_no, "accept", "ops.zhao", "again"))
    assert counts(station) == before
    assert ledger_call(station, lambda ledger: ledger.balance(WRITE_OFF_ACCOUNT).debits_posted_minor) == 500

    accepted = recon(station, lambda svc: svc.resolve(found["missing_in_channel"].exception_no, "accept", "ops.zhao",
                                                      "ticket voided at the window; channel never saw it"))
    assert accepted.resolution == "accept" and accepted.ledger_entry_id is None
    for bad in [("nonsense", "ops", "x"), ("accept", "ops wang", "x"), ("accept", "ops", "  ")]:
        with pytest.raises(ValidationFailed):
            recon(station, lambda svc, b=bad: svc.resolve(found["missing_in_channel"].exception_no, *b))
    with pytest.raises(NotFound):
        recon(station, lambda svc: svc.resolve("rec_nothing-L2", "accept", "ops", "x"))
    audit = recon(station, lambda svc: svc.audit(run.run_no))
    assert [(a.action, a.actor) for a in audit] == [("received", "ops.wang"), ("reconciled", "ops.wang"),
                                                     ("write_off", "ops.li"), ("accept", "ops.zhao")]
    assert audit[2].at == sim_clock.now() and audit[2].ledger_entry_id == written.ledger_entry_id
    assert audit[2].note == "channel confirmed the short settlement"
    assert recon(station, lambda svc: svc.get_run(run.run_no)).open_count == 0


@BOTH
def test_write_off_in_both_directions_and_currency_mismatch_cannot_be_written_off(station) -> None:
    n = take_payments(station, {"P1": 10_000, "P2": 5_000})
    content = HEADER + f"C1,{n['P1']},100.00,USD,SUCCESS,\nC2,{n['P2']},50.10,CNY,SUCCESS,\nC3,,7.00,CNY,SUCCESS,\n"
    run, _ = recon(station, lambda svc: svc.receive(DAY, content.encode(), "csv", file_name="f.csv", actor="ops"))
    found = {e.kind: e for e in recon(station, lambda svc: svc.exceptions(run.run_no))}
    with pytest.raises(CannotWriteOff):
        recon(station, lambda svc: svc.resolve(found["currency_mismatch"].exception_no, "write_off", "ops", "x"))
    assert recon(station, lambda svc: svc.get_exception(found["currency_mismatch"].exception_no)).resolution is None
    recon(station, lambda svc: svc.resolve(found["amount_over"].exception_no, "write_off", "ops", "surplus"))
    recon(station, lambda svc: svc.resolve(found["missing_in_ours"].exception_no, "write_off", "ops", "unknown credit"))
    clearing = ledger_call(station, lambda ledger: ledger.balance(CLEARING_ACCOUNT))
    writeoff = ledger_call(station, lambda ledger: ledger.balance(WRITE_OFF_ACCOUNT))
    assert (clearing.debits_posted_minor, clearing.credits_posted_minor) == (10 + 700, 0)
    assert (writeoff.debits_posted_minor, writeoff.credits_posted_minor) == (0, 710)
    assert ledger_call(station, lambda ledger: ledger.verify()) == []


@BOTH
def test_the_same_file_is_the_same_run_and_a_corrected_file_fixes_the_first(station) -> None:
    numbers = take_payments(station, DAY_PAYMENTS)
    name = "recon_channel_2026-01-01.camt053.xml"
    first, created = recon(station, lambda svc: svc.receive(DAY, sample(name, numbers), "camt053", file_name=name,
                                                            actor="ops"))
    before = counts(station)
    again, created_again = recon(station, lambda svc: svc.receive(DAY, sample(name, numbers), "camt053",
                                                                  file_name="renamed.xml", actor="ops2"))
    assert created and not created_again and again.run_no == first.run_no and counts(station) == before
    found = {e.kind: e for e in recon(station, lambda svc: svc.exceptions(first.run_no))}

    # A later file of the same day that still has the difference does not fix it.
    partly = (HEADER + f"C1,{numbers['P1']},100.00,CNY,SUCCESS,\nC2,{numbers['P2']},45.00,CNY,SUCCESS,\n"
              f"C3,{numbers['P3']},20.00,CNY,SUCCESS,\nC4,{numbers['P4']},30.00,CNY,SUCCESS,\n")
    second, _ = recon(station, lambda svc: svc.receive(DAY, partly.encode(), "csv", file_name="v2.csv", actor="ops"))
    assert second.run_no != first.run_no and second.summary["amount_under"] == 1 and second.exception_count == 1
    with pytest.raises(NotFixed, match="still has this difference"):
        recon(station, lambda svc: svc.resolve(found["amount_under"].exception_no, "fixed", "ops", "v2",
                                               later_run_no=second.run_no))
    fixed = recon(station, lambda svc: svc.resolve(found["missing_in_channel"].exception_no, "fixed", "ops",
                                                   "the channel sent v2", later_run_no=second.run_no))
    assert (fixed.resolution, fixed.fixed_by_run_no) == ("fixed", second.run_no)
    with pytest.raises(NotFixed, match="not a later reconciled file"):
        recon(station, lambda svc: svc.resolve(found["amount_under"].exception_no, "fixed", "ops", "self",
                                               later_run_no=first.run_no))
    with pytest.raises(ValidationFailed, match="later_run_no is required"):
        recon(station, lambda svc: svc.resolve(found["amount_under"].exception_no, "fixed", "ops", "x"))
    assert [r.run_no for r in recon(station, lambda svc: svc.list_runs(DAY))] == [second.run_no, first.run_no]


MALFORMED = [
    ("csv", b"channel_ref,payment_ref,amount\nC1,p,1.00\n", "missing column"),
    ("csv", (HEADER + "C1,pay_1,1.00,CNY,SUCCESS,\nC2,pay_2,abc,CNY,SUCCESS,\n").encode(), "line 3: amount 'abc'"),
    ("csv", (HEADER + "C1,pay_1,1.00,ZZZ,SUCCESS,\n").encode(), "currency 'ZZZ'"),
    ("camt053", b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'><BkToCstmrStmt>", "not well-formed"),
    ("camt053", XXE, "not allowed"),
    ("camt053", LAUGHS, "not allowed"),
]


@BOTH
@pytest.mark.parametrize(("fmt", "content", "message"), MALFORMED, ids=[m[2] for m in MALFORMED])
def test_a_malformed_file_is_refused_and_nothing_is_stored(station, fmt, content, message) -> None:
    take_payments(station, {"P1": 10_000})
    before = counts(station)
    with pytest.raises(StatementFileInvalid, match=message):
        recon(station, lambda svc: svc.receive(DAY, content, fmt, file_name="bad", actor="ops"))
    assert counts(station) == before == (0, 0, 0, 0)


def test_bad_requests_are_refused(station) -> None:
    for kwargs, field in [({"file_name": "a/b.csv", "actor": "ops"}, "file_name"),
                          ({"file_name": "a.csv", "actor": "o p s"}, "actor")]:
        with pytest.raises(ValidationFailed) as refused:
            recon(station, lambda svc, k=kwargs: svc.receive(DAY, HEADER.encode(), "csv", **k))
        assert refused.value.details[0]["field"] == field
    with pytest.raises(ValidationFailed, match="after today"):
        recon(station, lambda svc: svc.receive(date(2026, 1, 2), HEADER.encode(), "csv", file_name="a", actor="ops"))
    with pytest.raises(ValidationFailed, match="format must be one of"):
        recon(station, lambda svc: svc.receive(DAY, HEADER.encode(), "mt940", file_name="a", actor="ops"))
    assert counts(station) == (0, 0, 0, 0)


@BOTH
def test_the_daily_job_reconciles_the_received_files_and_fails_without_one(station) -> None:
    numbers = take_payments(station, DAY_PAYMENTS)
    runner = JobRunner(station)
    assert "payments.reconcile" in [job.name for job in runner.jobs("bank")]
    report = runner.run("bank", "payments.reconcile", DAY)
    assert not report.completed and "no channel statement file was received for 2026-01-01" in report.failures[0].error
    name = "recon_channel_2026-01-01.csv"
    received, _ = recon(station, lambda svc: svc.receive(DAY, sample(name, numbers), "csv", file_name=name,
                                                         actor="sftp", reconcile=False))
    assert received.status == "received" and received.matched_count is None
    report = runner.run("bank", "payments.reconcile", DAY)
    assert report.completed
    run = recon(station, lambda svc: svc.get_run(received.run_no))
    assert (run.status, run.matched_count, run.exception_count) == ("reconciled", 2, 2)
    assert [a.actor for a in recon(station, lambda svc: svc.audit(run.run_no))] == ["sftp", "job:payments.reconcile"]


CHANNEL_FILE = "recon_channel_2026-01-01.csv"


def _two_banks_with_a_day_reconciled(make_sceneos, **payments: object) -> tuple[object, object, bytes]:
    """Banks "bank" and "bank2" with one payments configuration; "bank" took the day's payments
    and reconciled the channel's file of them. Answers the app, the run and the file."""
    from core.testing.harness import tenant_config
    from tests.payments.conftest import SETTINGS

    modules = {"party": {}, "payments": {**SETTINGS, **payments}}
    app = make_sceneos({"tenants": {"bank": tenant_config(modules=modules), "bank2": tenant_config(modules=modules)}})
    service_call(app, lambda svc: svc.add_operator(OperatorDraft(employee_no="C001", merchant_id="station1",
                                                                 name="Wang Fang", role="cashier", pin="1234")))
    numbers = take_payments(app, DAY_PAYMENTS)
    content = sample(CHANNEL_FILE, numbers)
    run, _ = recon(app, lambda svc: svc.receive(DAY, content, "csv", file_name=CHANNEL_FILE, actor="ops"))
    return app, run, content


@BOTH
def test_a_bank_never_matches_or_resolves_another_banks_payments(make_sceneos) -> None:
    app, run, content = _two_banks_with_a_day_reconciled(make_sceneos)
    assert run.matched_count == 2

    def in_bank2(fn):
        runtime = app.tenant("bank2").module("payments")
        with runtime.tenant.unit_of_work() as uow:
            return fn(ReconciliationService(uow, runtime.settings))

    # The same file at the other bank: every record names a payment bank2 does not have.
    other, created = in_bank2(lambda svc: svc.receive(DAY, content, "csv", file_name=CHANNEL_FILE, actor="ops"))
    assert created and other.run_no != run.run_no
    assert (other.our_count, other.matched_count, other.summary["missing_in_ours"]) == (0, 0, 3)
    assert [r.run_no for r in in_bank2(lambda svc: svc.list_runs())] == [other.run_no]
    [first] = recon(app, lambda svc: svc.exceptions(run.run_no, limit=1))
    with pytest.raises(NotFound):
        in_bank2(lambda svc: svc.resolve(first.exception_no, "accept", "ops", "not mine"))
    with pytest.raises(NotFound):
        in_bank2(lambda svc: svc.exceptions(run.run_no))
    assert recon(app, lambda svc: svc.get_exception(first.exception_no)).resolution is None


def test_the_write_off_accounts_come_from_configuration(make_sceneos) -> None:
    accounts = {"recon_clearing_account": "gl:1131:alipay_clearing", "recon_write_off_account": "gl:6711:recon_loss"}
    app = make_sceneos(bank_config(**accounts))
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)))
    n = take_payments(app, {"P1": 10_000})
    content = HEADER + f"C1,{n['P1']},99.00,CNY,SUCCESS,\n"
    run, _ = recon(app, lambda svc: svc.receive(DAY, content.encode(), "csv", file_name="f.csv", actor="ops"))
    [short] = recon(app, lambda svc: svc.exceptions(run.run_no))
    recon(app, lambda svc: svc.resolve(short.exception_no, "write_off", "ops", "short settlement"))
    loss = ledger_call(app, lambda ledger: ledger.balance("gl:6711:recon_loss"))
    clearing = ledger_call(app, lambda ledger: ledger.balance("gl:1131:alipay_clearing"))
    assert (loss.debits_posted_minor, clearing.credits_posted_minor) == (100, 100)
    with pytest.raises(Exception, match="recon_clearing_account and recon_write_off_account must be different"):
        make_sceneos(bank_config(recon_clearing_account="gl:x", recon_write_off_account="gl:x"))


@BOTH
def test_refunds_are_reconciled_against_the_channels_debits(station, sim_clock) -> None:
    n = take_payments(station, {"P1": 10_000, "P2": 5_000, "P3": 2_000})
    supervisor = approve(station)
    refunds = {key: service_call(station, lambda svc, k=key, a=amount: svc.refund(n[k], a, supervisor, f"rf-{k}"))
               for key, amount in (("P1", 4_000), ("P2", 1_000), ("P3", 2_000))}
    r1, r2, r3 = (refunds[k].refund_no for k in ("P1", "P2", "P3"))
    # The channel debits the first refund in full, the second at 9.00 instead of 10.00, leaves out
    # the third, and debits a chargeback naming the first payment (no refund of ours).
    content = HEADER + (f"C1,{n['P1']},100.00,CNY,SUCCESS,\nC2,{n['P2']},50.00,CNY,SUCCESS,\n"
                        f"C3,{n['P3']},20.00,CNY,SUCCESS,\nC4,{r1},-40.00,CNY,SUCCESS,\n"
                        f"C5,{r2},-9.00,CNY,SUCCESS,\nC6,{n['P1']},-3.00,CNY,SUCCESS,\n")
    run, _ = recon(station, lambda svc: svc.receive(DAY, content.encode(), "csv", file_name="f.csv", actor="ops"))
    assert (run.line_count, run.our_count, run.matched_count) == (6, 6, 4)
    found = {(e.kind, e.refund_no): e for e in recon(station, lambda svc: svc.exceptions(run.run_no))}
    assert set(found) == {("amount_over", r2), ("missing_in_channel", r3), ("missing_in_ours", None)}
    over = found[("amount_over", r2)]  # the channel took back less than we refunded
    assert (over.payment_no, over.our_amount_minor, over.channel_amount_minor, over.difference_minor) == (
        n["P2"], -1_000, -900, 100)
    missing = found[("missing_in_channel", r3)]
    assert missing.exception_no == f"{run.run_no}-R{r3}" and missing.payment_no == n["P3"]
    assert (missing.our_amount_minor, missing.our_status, missing.difference_minor) == (-2_000, "succeeded", 2_000)
    chargeback = found[("missing_in_ours", None)]
    assert (chargeback.channel_ref, chargeback.difference_minor) == ("C6", -300)
    # The refund the channel has not debited is money it still owes us: written off as a surplus.
    recon(station, lambda svc: svc.resolve(missing.exception_no, "write_off", "ops", "refund never debited"))
    clearing = ledger_call(station, lambda ledger: ledger.balance(CLEARING_ACCOUNT))
    assert (clearing.debits_posted_minor, clearing.credits_posted_minor) == (2_000, 0)
    # A corrected file debits the second refund right and lists the third: they are fixed by it.
    corrected = content.replace(f"C5,{r2},-9.00", f"C5,{r2},-10.00") + f"C7,{r3},-20.00,CNY,SUCCESS,\n"
    later, _ = recon(station, lambda svc: svc.receive(DAY, corrected.encode(), "csv", file_name="g.csv", actor="ops"))
    assert {(e.kind, e.refund_no) for e in recon(station, lambda svc: svc.exceptions(later.run_no))} == {
        ("missing_in_ours", None)}
    fixed = recon(station, lambda svc: svc.resolve(over.exception_no, "fixed", "ops", "corrected file",
                                                   later_run_no=later.run_no))
    assert fixed.fixed_by_run_no == later.run_no
    # The chargeback is still there in the later file: not fixed.
    with pytest.raises(NotFixed):
        recon(station, lambda svc: svc.resolve(chargeback.exception_no, "fixed", "ops", "x", later_run_no=later.run_no))
    assert ledger_call(station, lambda ledger: ledger.verify()) == []


@BOTH
def test_a_reconciled_files_lines_are_purged_after_the_retention_period(make_sceneos, sim_clock) -> None:
    app, run, content = _two_banks_with_a_day_reconciled(make_sceneos, recon_line_retention_days=30)
    # A corrected file received but not matched yet, and the other bank's run of the same file.
    held, _ = recon(app, lambda svc: svc.receive(DAY, content + b"C9,,1.00,CNY,SUCCESS,\n", "csv", file_name="v2.csv",
                                                 actor="sftp", reconcile=False))
    runtime2 = app.tenant("bank2").module("payments")
    with runtime2.tenant.unit_of_work() as uow:
        ReconciliationService(uow, runtime2.settings).receive(DAY, content, "csv", file_name=CHANNEL_FILE, actor="ops")

    def lines_of(run_no: str, tenant_id: str = "bank") -> int:
        with app.tenant(tenant_id).unit_of_work() as uow:
            run_id = uow.session.scalars(select(ReconRun.id).where(ReconRun.run_no == run_no)).one_or_none()
            return uow.session.execute(select(func.count()).select_from(ReconLine)
                                       .where(ReconLine.run_id == run_id)).scalar_one()

    assert (lines_of(run.run_no), lines_of(held.run_no)) == (3, 4)
    runner = JobRunner(app)
    sim_clock.set(datetime(2026, 3, 1, 4, tzinfo=UTC))
    # 30 days after the run's day it is still kept; the day after, its lines go.
    assert runner.run("bank", "payments.recon_purge", date(2026, 1, 31)).summary["runs_purged"] == 0
    assert lines_of(run.run_no) == 3
    report = runner.run("bank", "payments.recon_purge", date(2026, 2, 1))
    assert report.completed and report.summary["runs_purged"] == 1
    assert (lines_of(run.run_no), lines_of(held.run_no)) == (0, 4)  # a run not matched keeps its lines
    with runtime2.tenant.unit_of_work() as uow:
        [other] = ReconciliationService(uow, runtime2.settings).list_runs()
    assert lines_of(other.run_no, "bank2") == 3 and other.lines_purged_at is None  # another bank's job
    # The run, its figures, exceptions and audit stay; an exception is still resolved.
    kept = recon(app, lambda svc: svc.get_run(run.run_no))
    assert kept.lines_purged_at == datetime(2026, 3, 1, 4, tzinfo=UTC)
    assert (kept.line_count, kept.matched_count, kept.exception_count) == (run.line_count, run.matched_count,
                                                                           run.exception_count)
    [first, *_] = recon(app, lambda svc: svc.exceptions(run.run_no))
    assert recon(app, lambda svc: svc.resolve(first.exception_no, "accept", "ops", "checked")).resolution == "accept"
    assert [a.action for a in recon(app, lambda svc: svc.audit(run.run_no))][:3] == [
        "received", "reconciled", "lines_purged"]
    # Later days purge nothing twice.
    assert runner.run("bank", "payments.recon_purge", date(2026, 2, 2)).summary["runs_purged"] == 0


def test_lines_are_kept_for_ever_by_default(station, sim_clock) -> None:
    numbers = take_payments(station, DAY_PAYMENTS)
    name = "recon_channel_2026-01-01.csv"
    recon(station, lambda svc: svc.receive(DAY, sample(name, numbers), "csv", file_name=name, actor="ops"))
    sim_clock.set(datetime(2027, 1, 1, 4, tzinfo=UTC))
    assert JobRunner(station).run("bank", "payments.recon_purge", date(2026, 12, 31)).summary["runs_purged"] == 0
    assert counts(station)[1] == 3
