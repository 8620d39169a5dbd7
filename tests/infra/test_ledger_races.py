"""Two units of work racing on the same id, pending entry or reversal, on both backends.

Unit of work A does its operation and keeps its transaction open; B starts the competing one in a
thread (PostgreSQL: B waits on A's row lock or unique-index entry; SQLite: B waits for the write
lock at BEGIN IMMEDIATE); A commits; B must then answer as the rules say, with nothing lost.
On PostgreSQL, an entry that touches only unconstrained (hot) accounts does not wait at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from infra.ledger import (
    AlreadyReversed,
    EntryDraft,
    EntryResult,
    Ledger,
    PendingAlreadyResolved,
    Posting,
)

WAIT = 0.3  # seconds B is given to reach its wait


def race(db: Any, first: Callable[[Ledger], Any], second: Callable[[Ledger], Any]) -> tuple[Any, Any]:
    """Run ``first`` in an open unit of work, start ``second`` concurrently, then commit the first.
    Returns both outcomes (a result or the exception raised)."""
    outcome: list[Any] = []

    def other() -> None:
        try:
            with db.ledger() as ledger:
                outcome.append(second(ledger))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=other)
    with db.ledger() as ledger:
        result = first(ledger)
        thread.start()
        time.sleep(WAIT)
        assert thread.is_alive(), "the competing unit of work should be waiting for this one"
    thread.join(timeout=30)
    assert not thread.is_alive()
    return result, outcome[0]


def topup(entry_id: str, amount: int = 1_000) -> EntryDraft:
    return EntryDraft(entry_id, [Posting.debit("bank:settlement", amount), Posting.credit("cust:42", amount)])


@pytest.mark.parametrize(
    "draft",
    [
        topup("topup-1"),  # locks cust:42's balance row
        EntryDraft(
            "fee-1", [Posting.debit("bank:settlement", 5), Posting.credit("bank:income", 5)]
        ),  # no lock
    ],
    ids=["constrained", "unconstrained"],
)
def test_concurrent_posts_of_one_id_move_money_once(chart, draft):
    first, second = race(chart, lambda ledger: ledger.post(draft), lambda ledger: ledger.post(draft))
    assert isinstance(second, EntryResult), second
    assert first.created and not second.created
    assert second.postings == first.postings
    with chart.ledger() as ledger:
        assert ledger.balance("bank:settlement").debits_posted_minor == draft.postings[0].amount_minor
        assert ledger.verify() == []
    assert chart.count("ledger_entries") == 1


def test_a_concurrent_retry_of_a_draining_payment_is_a_retry_not_insufficient_funds(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
    pay = EntryDraft("pay-1", [Posting.debit("cust:42", 1_000), Posting.credit("merchant:7", 1_000)])
    first, second = race(chart, lambda ledger: ledger.post(pay), lambda ledger: ledger.post(pay))
    assert isinstance(second, EntryResult), second
    assert first.created and not second.created
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").available_minor == 0
        assert ledger.verify() == []


def test_concurrent_resolutions_resolve_once(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1"))
        ledger.post(
            EntryDraft(
                "hold-1", [Posting.debit("cust:42", 600), Posting.credit("merchant:7", 600)], pending=True
            )
        )
        ledger.post(
            EntryDraft(
                "hold-2", [Posting.debit("cust:42", 100), Posting.credit("merchant:7", 100)], pending=True
            )
        )

    _, other = race(
        chart,
        lambda ledger: ledger.post_pending("hold-1", "capture-1"),
        lambda ledger: ledger.void_pending("hold-1", "void-1"),
    )
    assert isinstance(other, PendingAlreadyResolved), other

    first, same = race(
        chart,
        lambda ledger: ledger.post_pending("hold-2", "capture-2", 40),
        lambda ledger: ledger.post_pending("hold-2", "capture-2", 40),
    )
    assert isinstance(same, EntryResult), same
    assert first.created and not same.created

    with chart.ledger() as ledger:
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.debits_pending_minor) == (640, 0)
        assert ledger.verify() == []


def test_concurrent_reversals_reverse_once(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1"))
    _, other = race(
        chart,
        lambda ledger: ledger.reverse("topup-1", "rev-1", "duplicate"),
        lambda ledger: ledger.reverse("topup-1", "rev-2", "duplicate"),
    )
    assert isinstance(other, AlreadyReversed), other
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").net_posted_minor == 0
        assert ledger.verify() == []


@pytest.mark.parametrize("ledger_db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_hot_unconstrained_account_takes_no_lock_on_postgres(chart):
    """While A's entry on the bank's income account is uncommitted, B posts to the same account
    without waiting; B's entry on A's constrained account does wait."""
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1"))
    fee = lambda entry_id: EntryDraft(  # noqa: E731
        entry_id, [Posting.debit("bank:settlement", 5), Posting.credit("bank:income", 5)]
    )
    with chart.ledger() as a:
        a.post(fee("fee-a"))
        a.post(EntryDraft("pay-a", [Posting.debit("cust:42", 10), Posting.credit("bank:income", 10)]))
        done = threading.Event()

        def hot() -> None:
            with chart.ledger() as b:
                b.post(fee("fee-b"))
            done.set()

        thread = threading.Thread(target=hot)
        thread.start()
        assert done.wait(timeout=5), "a posting to an unconstrained account waited for another transaction"
        thread.join()

        blocked = threading.Event()

        def constrained() -> None:
            with chart.ledger() as b:
                b.post(EntryDraft("pay-b", [Posting.debit("cust:42", 10), Posting.credit("bank:income", 10)]))
            blocked.set()

        thread = threading.Thread(target=constrained)
        thread.start()
        assert not blocked.wait(timeout=WAIT), "a posting to a locked constrained account did not wait"
    thread.join(timeout=30)
    assert blocked.is_set()
    with chart.ledger() as ledger:
        assert ledger.balance("bank:income").net_posted_minor == 30
        assert ledger.balance("cust:42").available_minor == 980
        assert ledger.verify() == []
