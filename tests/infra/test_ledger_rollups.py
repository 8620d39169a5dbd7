"""Rollups: a balance read sums an account's rollup and its postings after the tenant's mark.

Rolling up changes no balance, reads really use the rollup (a tampered rollup shows, and the
audit names it), a rollup on PostgreSQL waits for a transaction that took a lower posting id and
has not committed, one rollup per tenant runs at a time, and the ``ledger.rollup`` job runs it.
The model-based property test (test_ledger_properties.py) rolls up at random steps too.
"""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import text

from core.testing.harness import make_app, tenant_config
from infra.compute import JobRunner
from infra.ledger import EntryDraft, Ledger, Posting, RollupBusy


def _balances(ledger: Ledger) -> dict[str, tuple[int, int, int, int]]:
    return {
        code: (b.debits_posted_minor, b.credits_posted_minor, b.debits_pending_minor, b.credits_pending_minor)
        for code, b in ledger.balances().items()
    }


def _fund(ledger: Ledger, entry_id: str, amount: int) -> None:
    ledger.post(EntryDraft(entry_id, [Posting.debit("bank:settlement", amount), Posting.credit("cust:42", amount)]))


def _spend(ledger: Ledger, entry_id: str, amount: int) -> None:
    ledger.post(EntryDraft(entry_id, [Posting.debit("cust:42", amount), Posting.credit("merchant:7", amount)]))


def test_a_rollup_changes_no_balance_and_reads_use_it(chart) -> None:
    with chart.ledger() as ledger:
        _fund(ledger, "fund-1", 10_000)
        _spend(ledger, "buy-1", 2_500)
        ledger.post(EntryDraft("hold-1", [Posting.debit("cust:42", 700), Posting.credit("merchant:7", 700)],
                               pending=True))
    with chart.ledger() as ledger:
        before = _balances(ledger)
        tb_before = ledger.trial_balance("CNY")
        rollup = ledger.roll_up()
    assert rollup.accounts == 3  # settlement, the customer, the merchant (the hold is not posted)
    with chart.ledger() as ledger:
        assert _balances(ledger) == before and before["merchant:7"][3] == 700  # the hold still counts
        assert ledger.trial_balance("CNY") == tb_before and tb_before.balanced
        assert ledger.verify() == []
    with chart.engine.begin() as conn:  # reads of held amounts start at the open hold
        marks = conn.execute(text("SELECT through_posting_id, held_from_posting_id FROM ledger_rollup_marks")).all()
        hold_ids = conn.execute(text("SELECT min(id) FROM ledger_postings WHERE pending")).scalar_one()
    assert marks == [(rollup.through_posting_id, hold_ids)]
    with chart.ledger() as ledger:
        # Later postings, a resolved hold and a reversal add to the rolled-up sums.
        _spend(ledger, "buy-2", 1_000)
        ledger.post_pending("hold-1", "hold-1-post")
        ledger.reverse("buy-1", "buy-1-rev", "refund")
    with chart.ledger() as ledger:
        after = _balances(ledger)
        assert after["merchant:7"][:2] == (2_500, 2_500 + 1_000 + 700)
        assert after["cust:42"] == (2_500 + 1_000 + 700, 10_000 + 2_500, 0, 0)
        again = ledger.roll_up()
        assert again.through_posting_id > rollup.through_posting_id and again.accounts == 2
        assert ledger.roll_up().accounts == 0  # nothing posted since
    with chart.ledger() as ledger:
        assert _balances(ledger) == after and ledger.verify() == []
        # The hold was resolved before this rollup: reads of held amounts now start past it.
        ledger.post(EntryDraft("hold-2", [Posting.debit("cust:42", 50), Posting.credit("merchant:7", 50)],
                               pending=True))
    with chart.engine.begin() as conn:  # a mark that skipped an open hold is named by the audit
        conn.execute(text("UPDATE ledger_rollup_marks SET held_from_posting_id = held_from_posting_id + 100"))
    with chart.ledger() as ledger:
        assert any(p.startswith("pending entry hold-2 holds posting") for p in ledger.verify())
    with chart.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_rollup_marks SET held_from_posting_id = held_from_posting_id - 100"))
    # The merchant's balance comes from its rollup, not from summing its postings: tampered, it shows.
    with chart.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_rollups SET credits_posted_minor = credits_posted_minor + 5 "
                          "WHERE account_id = (SELECT id FROM ledger_accounts WHERE code = 'merchant:7')"))
    with chart.ledger() as ledger:
        assert ledger.balance("merchant:7").credits_posted_minor == after["merchant:7"][1] + 5
        assert ledger.verify()[0].startswith("rollup of merchant:7 is (2500, 4205) but its postings through the mark sum to (2500, 4200)")


def test_balances_as_of_an_instant_use_a_rollup_made_well_before_it(chart) -> None:
    from datetime import timedelta

    with chart.ledger() as ledger:
        _fund(ledger, "fund-1", 10_000)
        ledger.post(EntryDraft("hold-1", [Posting.debit("cust:42", 300), Posting.credit("merchant:7", 300)],
                               pending=True))
        ledger.post(EntryDraft("hold-2", [Posting.debit("cust:42", 200), Posting.credit("merchant:7", 200)],
                               pending=True))
        ledger.void_pending("hold-1", "hold-1-void")
    start = chart.clock.now()
    chart.clock.advance(seconds=60)
    with chart.ledger() as ledger:
        ledger.roll_up()
        rolled_at = chart.clock.now()
    chart.clock.advance(minutes=10)
    with chart.ledger() as ledger:
        _spend(ledger, "buy-1", 1_000)
        ledger.post_pending("hold-2", "hold-2-post")
    chart.clock.advance(minutes=10)
    # Well after the rollup: the rollup plus the postings since; just after it or before it: summed.
    instants = (chart.clock.now(), rolled_at + timedelta(minutes=6), rolled_at + timedelta(minutes=1), start)
    reference = {at: _summed_as_of(chart, at) for at in instants}
    with chart.ledger() as ledger:
        now = _balances(ledger)
        for at in instants:
            assert _balances_as_of(ledger, at) == reference[at], at
        assert _balances_as_of(ledger, chart.clock.now()) == now
        assert _balances_as_of(ledger, rolled_at + timedelta(minutes=6))["merchant:7"] == (0, 0, 0, 200)
    # The rollup is used: tampered, a read long after it shows the change; one just after it does not.
    with chart.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_rollups SET credits_posted_minor = credits_posted_minor + 5 "
                          "WHERE account_id = (SELECT id FROM ledger_accounts WHERE code = 'cust:42')"))
    with chart.ledger() as ledger:
        assert _balances_as_of(ledger, chart.clock.now())["cust:42"][1] == now["cust:42"][1] + 5
        assert _balances_as_of(ledger, rolled_at + timedelta(minutes=1))["cust:42"][1] == 10_000


def _balances_as_of(ledger: Ledger, at: object) -> dict[str, tuple[int, int, int, int]]:
    return {
        code: (b.debits_posted_minor, b.credits_posted_minor, b.debits_pending_minor, b.credits_pending_minor)
        for code, b in ledger.balances(as_of=at).items()
    }


def _summed_as_of(chart, at) -> dict[str, tuple[int, int, int, int]]:
    """What the postings alone say as of ``at`` (no rollup): the reference."""
    with chart.engine.begin() as conn:
        saved = conn.execute(text("SELECT tenant_id, through_posting_id, held_from_posting_id, rolled_at "
                                  "FROM ledger_rollup_marks")).all()
        conn.execute(text("DELETE FROM ledger_rollup_marks"))
    try:
        with chart.ledger() as ledger:
            return _balances_as_of(ledger, at)
    finally:
        with chart.engine.begin() as conn:
            for row in saved:
                conn.execute(text("INSERT INTO ledger_rollup_marks VALUES (:t, :m, :h, :r)"),
                             {"t": row[0], "m": row[1], "h": row[2], "r": row[3]})


def test_tenants_roll_up_apart(chart) -> None:
    with chart.ledger() as ledger:
        _fund(ledger, "fund-1", 500)
        ledger.roll_up()
    with chart.ledger("bank_b") as other:
        other.open_account("bank:settlement", "CNY", "asset")
        other.open_account("cust:1", "CNY", "liability", "customer", "1")
        other.post(EntryDraft("f", [Posting.debit("bank:settlement", 9), Posting.credit("cust:1", 9)]))
        assert other.balance("bank:settlement").debits_posted_minor == 9
        assert other.roll_up().accounts == 2
        assert other.verify() == []
    with chart.ledger() as ledger:
        assert ledger.balance("bank:settlement").debits_posted_minor == 500 and ledger.verify() == []


@pytest.mark.postgres
def test_a_rollup_waits_for_a_transaction_holding_a_lower_posting_id(chart) -> None:
    if chart.backend != "postgres":
        pytest.skip("SQLite serializes writers: no transaction can be running beside the rollup")
    with chart.ledger() as slow:
        _fund(slow, "slow-1", 300)  # takes posting ids, not committed yet
        with chart.ledger() as ledger:  # higher ids, committed: the snapshot's highest
            ledger.post(EntryDraft("fast-1", [Posting.debit("bank:settlement", 40), Posting.credit("merchant:7", 40)]))
        with chart.ledger() as ledger, pytest.raises(RollupBusy, match=r"did not end within 0\.3 s"):
            ledger.roll_up(wait_seconds=0.3)
        outcome: dict[str, object] = {}

        def roll() -> None:
            with chart.ledger() as ledger:
                outcome["rollup"] = ledger.roll_up(wait_seconds=30)

        waiting = threading.Thread(target=roll)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # waiting for the slow transaction
    waiting.join(30)
    assert not waiting.is_alive() and outcome["rollup"].accounts == 3
    with chart.ledger() as ledger:
        assert ledger.balance("bank:settlement").debits_posted_minor == 340
        assert ledger.verify() == []


@pytest.mark.postgres
def test_a_rollup_waits_for_a_younger_transaction_below_an_older_ones_postings(chart) -> None:
    """The case a snapshot's own list of running transactions misses: the committed postings above
    the slow transaction's belong to an *older* transaction, so the snapshot's xmax (past the
    latest ended transaction) does not reach the slow one, which is then not listed as running."""
    if chart.backend != "postgres":
        pytest.skip("SQLite serializes writers: no transaction can be running beside the rollup")
    older_cm, younger_cm = chart.ledger(), chart.ledger()
    older = older_cm.__enter__()
    older.open_account("bank:extra", "CNY", "asset")  # takes its transaction id first
    younger = younger_cm.__enter__()
    _fund(younger, "late-1", 300)  # lower posting ids, a younger transaction, not committed
    older.post(EntryDraft("early-1", [Posting.debit("bank:settlement", 40), Posting.credit("merchant:7", 40)]))
    older_cm.__exit__(None, None, None)  # commits: its postings are the highest the rollup sees
    try:
        with chart.ledger() as ledger, pytest.raises(RollupBusy, match="did not end"):
            ledger.roll_up(wait_seconds=0.3)
    finally:
        younger_cm.__exit__(None, None, None)
    with chart.ledger() as ledger:
        assert ledger.roll_up().accounts == 3
        assert ledger.balance("bank:settlement").debits_posted_minor == 340
        assert ledger.verify() == []


@pytest.mark.postgres
def test_one_rollup_of_a_tenant_at_a_time(chart) -> None:
    if chart.backend != "postgres":
        pytest.skip("SQLite serializes the units of work themselves")
    with chart.ledger() as ledger:
        _fund(ledger, "fund-1", 500)
    with chart.ledger() as first:
        first.roll_up()
        with chart.ledger() as second, pytest.raises(RollupBusy, match="already running"):
            second.roll_up()
        # Another tenant's rollup is not refused by this one's lock; it waits for this transaction
        # like any other that was running when it read the highest posting id.
        with chart.ledger("bank_b") as other_tenant, pytest.raises(RollupBusy, match="did not end"):
            other_tenant.roll_up(wait_seconds=0.3)
    with chart.ledger("bank_b") as other_tenant:
        assert other_tenant.roll_up().accounts == 0


def test_the_rollup_job_rolls_up_each_day(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    chart = {"accounts": [{"code": "bank:settlement", "type": "asset"}, {"code": "bank:income", "type": "income"}]}
    app = make_app({"database": {"url": url}, "tenants": {"bank": tenant_config(modules={"ledger": chart})}},
                   database_url=url)
    try:
        tenant = app.tenant("bank")
        for day in (1, 2):
            with tenant.unit_of_work() as uow:
                ledger = tenant.module("ledger").container.ledger(session=uow.session)
                ledger.post(EntryDraft(f"fee-{day}", [Posting.debit("bank:settlement", 100),
                                                      Posting.credit("bank:income", 100)]))
            report = JobRunner(app).run("bank", "ledger.rollup", date(2026, 3, day))
            assert report.completed
            assert JobRunner(app).run("bank", "ledger.rollup", date(2026, 3, day)).ran == 0
        with tenant.unit_of_work() as uow:
            ledger = tenant.module("ledger").container.ledger(session=uow.session)
            assert ledger.balance("bank:income").credits_posted_minor == 200
            assert ledger.roll_up().accounts == 0 and ledger.verify() == []
    finally:
        app.close()
