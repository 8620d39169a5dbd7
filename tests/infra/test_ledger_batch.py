"""``Ledger.post_batch``: many independent entries at once, set-based, on both backends.

Each draft gets its own outcome (an ``EntryResult`` or the ``LedgerError`` it failed with), in
order; entries apply in order, so a later one sees what an earlier one did (and not what a failed
one would have done); an id repeated in the batch is a retry of its first occurrence.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from infra.ledger import (
    CurrencyMismatch,
    EntryDraft,
    EntryExistsWithDifferentContent,
    EntryResult,
    EntryStatus,
    InsufficientFunds,
    InvalidEntry,
    InvalidExpiry,
    Ledger,
    LedgerError,
    Posting,
    Side,
    UnbalancedEntry,
    UnknownAccount,
    UnknownEntry,
)
from infra.ledger import service as ledger_service


def topup(entry_id: str, amount: int, account: str = "cust:42") -> EntryDraft:
    return EntryDraft(entry_id, [Posting.debit("bank:settlement", amount), Posting.credit(account, amount)])


def pay(entry_id: str, amount: int, account: str = "cust:42", **kwargs) -> EntryDraft:
    return EntryDraft(
        entry_id, [Posting.debit(account, amount), Posting.credit("merchant:7", amount)], **kwargs
    )


def fee(entry_id: str, amount: int = 5) -> EntryDraft:  # unconstrained accounts only: no lock
    return EntryDraft(
        entry_id, [Posting.debit("bank:settlement", amount), Posting.credit("bank:income", amount)]
    )


def kinds(outcomes: list) -> list:
    return [o.created if isinstance(o, EntryResult) else type(o) for o in outcomes]


def test_a_batch_posts_in_order_and_a_later_entry_may_spend_an_earlier_credit(chart):
    with chart.ledger() as ledger:
        outcomes = ledger.post_batch([topup("t1", 100), pay("p1", 60), pay("p2", 40), fee("f1")])
        assert kinds(outcomes) == [True, True, True, True]
        assert [o.entry_id for o in outcomes] == ["t1", "p1", "p2", "f1"]
        assert outcomes[1].postings[0].account == "cust:42" and outcomes[1].postings[0].side is Side.DEBIT
        assert outcomes[0].created_at == chart.clock.now()
        assert ledger.balance("cust:42").available_minor == 0
        assert ledger.balance("bank:income").net_posted_minor == 5
    with chart.ledger() as ledger:
        assert ledger.get_entry("p2").postings == outcomes[2].postings
        assert ledger.verify() == []
        assert ledger.trial_balance("CNY").balanced
    assert chart.count("ledger_entries") == 4
    assert chart.count("ledger_postings") == 8


def test_each_entry_fails_alone_and_later_entries_do_not_see_a_failed_one(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("t0", 100))
        outcomes = ledger.post_batch(
            [
                pay("p1", 70),
                pay("p2", 70),  # only 30 left after p1
                topup("t1", 50, account="cust:999"),  # unknown account: its 50 never arrives
                pay("p3", 31),  # so this one still finds 30
                pay("p4", 30),
                EntryDraft("x1", [Posting.debit("bank:settlement", 5), Posting.credit("cust:42", 4)]),
                EntryDraft("x2", [Posting.debit("bank:settlement", 5, "USD"), Posting.credit("cust:42", 5)]),
                pay("h1", 1, pending=True, expires_at=chart.clock.now()),
                fee("f1"),
            ]
        )
        assert kinds(outcomes) == [
            True,
            InsufficientFunds,
            UnknownAccount,
            InsufficientFunds,
            True,
            UnbalancedEntry,
            CurrencyMismatch,
            InvalidExpiry,
            True,
        ]
        assert all(isinstance(o, LedgerError) for o in outcomes if not isinstance(o, EntryResult))
        assert (outcomes[1].available_minor, outcomes[1].needed_minor) == (30, 70)
        assert (outcomes[3].available_minor, outcomes[3].needed_minor) == (30, 31)
        assert outcomes[1].linked_index is None  # only post_linked says where a batch failed
        assert ledger.balance("cust:42").available_minor == 0
        for entry_id in ("p2", "t1", "p3", "x1", "x2", "h1"):
            with pytest.raises(UnknownEntry):
                ledger.get_entry(entry_id)
        assert ledger.verify() == []
    assert chart.count("ledger_entries") == 4


def test_an_id_repeated_in_a_batch_is_a_retry_of_its_first_occurrence(chart):
    with chart.ledger() as ledger:
        outcomes = ledger.post_batch([topup("t1", 100), topup("t1", 100), topup("t1", 101), pay("p1", 10)])
        assert kinds(outcomes) == [True, False, EntryExistsWithDifferentContent, True]
        assert outcomes[1].postings == outcomes[0].postings
        assert outcomes[1].created_at == outcomes[0].created_at
        assert outcomes[2].field == "amount_minor"
        # A repeat of an id whose first occurrence failed is judged on its own.
        again = ledger.post_batch([pay("p2", 1_000), pay("p2", 5)])
        assert kinds(again) == [InsufficientFunds, True]
        assert ledger.balance("cust:42").available_minor == 85
    assert chart.count("ledger_entries") == 3


def test_a_replayed_batch_moves_nothing_and_answers_with_the_stored_results(chart):
    batch = [topup("t1", 100), pay("p1", 60), pay("h1", 30, pending=True), fee("f1")]
    with chart.ledger() as ledger:
        first = ledger.post_batch(batch)
    chart.clock.advance(seconds=30)
    with chart.ledger() as ledger:
        again = ledger.post_batch([*batch, fee("f2"), pay("p1", 61)])
        assert kinds(again) == [False, False, False, False, True, EntryExistsWithDifferentContent]
        for old, new in zip(first, again, strict=False):
            assert (new.entry_id, new.postings, new.created_at, new.kind) == (
                old.entry_id,
                old.postings,
                old.created_at,
                old.kind,
            )
        assert again[2].status is EntryStatus.PENDING
        assert again[5].field == "amount_minor"
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.debits_pending_minor, cust.available_minor) == (60, 30, 10)
        # Even now that the balance could not pay p1 again, a retry is a retry.
        assert not ledger.post_batch([pay("p1", 60)])[0].created
        assert ledger.verify() == []
    assert chart.count("ledger_entries") == 5


def test_pending_entries_in_a_batch_are_held_and_resolved_as_usual(chart):
    expires = chart.clock.now() + timedelta(minutes=5)
    with chart.ledger() as ledger:
        outcomes = ledger.post_batch(
            [topup("t1", 100), pay("h1", 60, pending=True, expires_at=expires), pay("h2", 50, pending=True)]
        )
        assert kinds(outcomes) == [True, True, InsufficientFunds]  # the hold reserves at once
        assert outcomes[1].status is EntryStatus.PENDING and outcomes[1].expires_at == expires
        assert ledger.get_entry("h1").expires_at == expires
        ledger.post_pending("h1", "c1", 45)
        assert ledger.balance("cust:42").available_minor == 55
    chart.clock.advance(minutes=10)
    with chart.ledger() as ledger:
        ledger.post_batch([pay("h3", 55, pending=True, expires_at=chart.clock.now() + timedelta(seconds=1))])
        chart.clock.advance(seconds=1)
        assert ledger.expire_pending() == ["h3"]
        assert ledger.balance("cust:42").available_minor == 55
        assert ledger.verify() == []


def test_long_batches_are_posted_in_chunks_that_see_each_other(chart, monkeypatch):
    monkeypatch.setattr(ledger_service, "MAX_BATCH", 3)
    with chart.ledger() as ledger:
        drafts = [topup("t1", 10)] + [pay(f"p{i}", 1) for i in range(11)] + [topup("t1", 10)]
        outcomes = ledger.post_batch(drafts)
        assert kinds(outcomes) == [True] * 11 + [InsufficientFunds, False]
        assert ledger.balance("cust:42").available_minor == 0
        assert ledger.verify() == []


def test_batch_arguments(chart):
    with chart.ledger() as ledger:
        assert ledger.post_batch([]) == []
        with pytest.raises(InvalidEntry, match="post_batch takes EntryDraft objects"):
            ledger.post_batch([topup("t1", 1), "t2"])  # type: ignore[list-item]
    assert chart.count("ledger_entries") == 0


def test_a_batch_of_one_tenant_cannot_touch_another_tenants_ledger(chart):
    with chart.ledger("bank_a") as a:
        a.post_batch([topup("t1", 100), pay("p1", 10)])
    with chart.ledger("bank_b") as b:
        outcomes = b.post_batch([pay("steal", 10), topup("t1", 100)])
        assert kinds(outcomes) == [UnknownAccount, UnknownAccount]
        b.open_account("bank:settlement", "CNY", "asset")
        b.open_account("cust:42", "CNY", "liability", "customer", "42", "debits_must_not_exceed_credits")
        assert kinds(b.post_batch([topup("t1", 7), topup("t1", 7)])) == [True, False]  # its own "t1"
        assert b.balance("cust:42").credits_posted_minor == 7
        assert b.verify() == []
    with chart.ledger("bank_a") as a:
        assert a.balance("cust:42").available_minor == 90
        assert a.get_entry("t1").postings[0].amount_minor == 100
        assert a.verify() == []


def test_accounts_opened_in_a_rolled_back_savepoint_are_not_remembered(ledger_db):
    """The per-transaction account cache never outlives what it saw: a rollback (of the
    transaction or of a savepoint) drops it."""
    with ledger_db.session() as session:
        ledger = Ledger(session, ledger_db.clock)
        ledger.open_account("bank:settlement", "CNY", "asset")
        savepoint = session.begin_nested()
        ledger.open_account("cust:1", "CNY", "liability", "customer", "1", "debits_must_not_exceed_credits")
        assert ledger.post(topup("t1", 5, account="cust:1")).created
        savepoint.rollback()
        with pytest.raises(UnknownAccount):
            ledger.post(topup("t2", 5, account="cust:1"))
        assert kinds(Ledger(session, ledger_db.clock).post_batch([topup("t3", 5, account="cust:1")])) == [
            UnknownAccount
        ]
    assert ledger_db.count("ledger_accounts") == 1
    assert ledger_db.count("ledger_entries") == 0


# --- concurrency -----------------------------------------------------------------------------------

WAIT = 0.3


def _race(db, first_batch, second_batch):
    """Unit of work A posts ``first_batch`` and stays open; B posts ``second_batch`` meanwhile
    (it must wait for A: a shared balance-row lock or a shared uncommitted id); A commits."""
    outcome: list = []

    def other() -> None:
        try:
            with db.ledger() as ledger:
                outcome.append(ledger.post_batch(second_batch))
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=other)
    with db.ledger() as ledger:
        first = ledger.post_batch(first_batch)
        thread.start()
        time.sleep(WAIT)
        assert thread.is_alive(), "the competing batch should be waiting for the first one"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not isinstance(outcome[0], Exception), outcome[0]
    return first, outcome[0]


@pytest.mark.parametrize("shared", ["constrained", "unconstrained"])
def test_concurrent_batches_sharing_ids_post_each_entry_once(chart, shared, monkeypatch):
    """B's batch shares an id with A's uncommitted one. Constrained: B waits on the balance row
    lock, then finds the id. Unconstrained (no lock): on PostgreSQL B's insert waits on A's
    unique-key entry, skips it, and B plans its batch again, now answering it as a retry."""
    with chart.ledger() as ledger:
        ledger.post(topup("t0", 1_000))
    raced: list[bool] = []
    write_new = ledger_service.Ledger._write_new

    def spy(self, *args):
        written = write_new(self, *args)
        raced.append(not written)
        return written

    monkeypatch.setattr(ledger_service.Ledger, "_write_new", spy)
    make = pay if shared == "constrained" else fee
    first, second = _race(
        chart, [make("a1", 10), make("x", 10)], [make("x", 10), make("b1", 10), make("a1", 11)]
    )
    assert kinds(first) == [True, True]
    assert kinds(second) == [False, True, EntryExistsWithDifferentContent]
    assert second[0].postings == first[1].postings
    # Only an unconstrained batch on PostgreSQL can meet the other's id at the insert.
    assert any(raced) == (shared == "unconstrained" and chart.backend == "postgres")
    with chart.ledger() as ledger:
        assert ledger.verify() == []
        credited = "merchant:7" if shared == "constrained" else "bank:income"
        assert ledger.balance(credited).credits_posted_minor == 30  # a1, x and b1, once each
    assert chart.count("ledger_entries") == 4


def test_a_concurrent_batch_that_drained_a_wallet_is_seen_before_the_limit_is_checked(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("t0", 100))
    first, second = _race(chart, [pay("p1", 100)], [pay("p2", 1), pay("p1", 100)])
    assert kinds(first) == [True]
    assert kinds(second) == [InsufficientFunds, False]
    assert second[0].available_minor == 0
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").available_minor == 0
        assert ledger.verify() == []


def test_amounts_metadata_and_expiry_survive_the_set_based_writes_exactly(chart):
    """The writes pass their rows as JSON documents: integers beyond a double's precision,
    metadata and instants must come back exactly as given."""
    big = 2**62 + 12_345  # not representable as a float
    expires = chart.clock.now() + timedelta(days=3, microseconds=7)
    meta = {"order": "A-1", "items": [1, 2, {"sku": "x"}], "note": "\u4f60\u597d"}
    with chart.ledger() as ledger:
        single = ledger.post(
            EntryDraft("big-1", [Posting.debit("bank:equity", big), Posting.credit("bank:income", big)])
        )
        outcomes = ledger.post_batch(
            [
                EntryDraft("big-2", [Posting.debit("bank:settlement", big), Posting.credit("cust:42", big)]),
                pay("meta-1", 5, metadata=meta, description="with metadata"),
                pay("hold-1", 7, pending=True, expires_at=expires),
            ]
        )
        assert kinds(outcomes) == [True, True, True]
    with chart.ledger() as ledger:
        assert ledger.get_entry("big-1").postings == single.postings
        assert ledger.get_entry("big-2").postings[1].amount_minor == big
        assert ledger.balance("bank:income").credits_posted_minor == big
        assert ledger.balance("cust:42").available_minor == big - 12
        stored = ledger.get_entry("meta-1")
        assert (stored.metadata, stored.description) == (meta, "with metadata")
        assert ledger.get_entry("hold-1").expires_at == expires
        assert not ledger.post(pay("meta-1", 5, metadata=dict(meta), description="with metadata")).created
        assert ledger.verify() == []


def test_a_replayed_batch_judges_its_failed_entries_afresh(chart):
    """Only entries that were written are retries; one that failed is checked again, now."""
    batch = [
        topup("t1", 10),
        pay("h1", 50, pending=True, expires_at=chart.clock.now() + timedelta(seconds=1)),
    ]
    with chart.ledger() as ledger:
        assert kinds(ledger.post_batch(batch)) == [True, InsufficientFunds]
    chart.clock.advance(seconds=2)
    with chart.ledger() as ledger:
        ledger.post(topup("t2", 100))
        assert kinds(ledger.post_batch(batch)) == [False, InvalidExpiry]  # its hold would be past due
        assert kinds(ledger.post_batch([batch[0], pay("h1", 50, pending=True)])) == [False, True]


def test_balances_and_the_audit_read_any_number_of_accounts_in_slices(chart, monkeypatch) -> None:
    """PostgreSQL refuses more than 65,535 bound parameters: ids are asked for in slices (here of 2)."""
    monkeypatch.setattr(ledger_service, "MAX_IDS_PER_STATEMENT", 2)
    with chart.ledger() as ledger:
        for n in range(5):
            ledger.open_account(f"cust:s{n}", "CNY", "liability", "customer", f"s{n}")
        ledger.post_batch([topup(f"t{n}", 10 + n, f"cust:s{n}") for n in range(5)])
    with chart.ledger() as ledger:
        assert ledger.verify() == []
        found = ledger.balances([f"cust:s{n}" for n in range(5)])
        assert [found[f"cust:s{n}"].net_posted_minor for n in range(5)] == [10, 11, 12, 13, 14]
