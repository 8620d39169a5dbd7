"""Journal entries: balancing, validation, idempotency, constraints, linked entries, reversals."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from infra.ledger import (
    AccountType,
    AlreadyReversed,
    CurrencyMismatch,
    EntryDraft,
    EntryExistsWithDifferentContent,
    EntryKind,
    EntryStatus,
    InsufficientFunds,
    InvalidAmount,
    InvalidEntry,
    LedgerError,
    LedgerInvariantViolated,
    NotReversible,
    Posting,
    Side,
    TooFewPostings,
    UnbalancedEntry,
    UnknownAccount,
    UnknownEntry,
)


def topup(entry_id: str, account: str = "cust:42", amount: int = 10_000) -> EntryDraft:
    return EntryDraft(entry_id, [Posting.debit("bank:settlement", amount), Posting.credit(account, amount)])


def payment(entry_id: str, amount: int, fee: int = 0, *, account: str = "cust:42", **kwargs) -> EntryDraft:
    postings = [Posting.debit(account, amount), Posting.credit("merchant:7", amount - fee)]
    if fee:
        postings.append(Posting.credit("bank:income", fee))
    return EntryDraft(entry_id, postings, **kwargs)


def test_post_moves_money_and_balances(chart):
    with chart.ledger() as ledger:
        result = ledger.post(topup("topup-1", amount=10_000))
        assert result.created
        assert result.kind is EntryKind.STANDARD
        assert result.status is EntryStatus.POSTED
        assert result.created_at == chart.clock.now()
        assert [(p.account, p.side, p.amount_minor, p.currency) for p in result.postings] == [
            ("bank:settlement", Side.DEBIT, 10_000, "CNY"),
            ("cust:42", Side.CREDIT, 10_000, "CNY"),
        ]
        ledger.post(payment("pay-1", 2_500, fee=25, description="coffee", metadata={"order": "A-1"}))

    with chart.ledger() as ledger:
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.credits_posted_minor) == (2_500, 10_000)
        assert cust.net_posted_minor == 7_500  # a liability: credits minus debits
        assert cust.available_minor == 7_500
        assert ledger.balance("bank:settlement").net_posted_minor == 10_000  # an asset: debits minus credits
        assert ledger.balance("merchant:7").net_posted_minor == 2_475
        assert ledger.balance("bank:income").net_posted_minor == 25

        tb = ledger.trial_balance("CNY")
        assert tb.net_minor == 0 and tb.balanced
        assert tb.debits_minor == tb.credits_minor == 12_500
        assert tb.by_type[AccountType.ASSET] == 10_000
        assert tb.by_type[AccountType.LIABILITY] == -9_975
        assert tb.by_type[AccountType.INCOME] == -25
        assert tb.by_type[AccountType.EXPENSE] == 0
        assert ledger.verify() == []

        entry = ledger.get_entry("pay-1")
        assert entry.description == "coffee"
        assert entry.metadata == {"order": "A-1"}
        assert not entry.created


def test_retry_with_same_content_returns_first_result_and_moves_nothing(chart):
    with chart.ledger() as ledger:
        first = ledger.post(topup("topup-1"))
    chart.clock.advance(seconds=30)
    with chart.ledger() as ledger:
        # Same content, postings in another order and the metadata keys too: still the same entry.
        again = ledger.post(
            EntryDraft(
                "topup-1",
                [Posting.credit("cust:42", 10_000), Posting.debit("bank:settlement", 10_000, "cny")],
            )
        )
        assert not again.created
        assert again.created_at == first.created_at
        assert again.postings == first.postings
        assert ledger.balance("cust:42").credits_posted_minor == 10_000
    assert chart.count("ledger_entries") == 1
    assert chart.count("ledger_postings") == 2


def test_metadata_is_part_of_the_content_in_canonical_form(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1"))
        ledger.post(payment("pay-1", 100, metadata={"b": 1, "a": [1, 2]}))
        assert not ledger.post(payment("pay-1", 100, metadata={"a": (1, 2), "b": 1})).created


@pytest.mark.parametrize(
    ("retry", "field"),
    [
        (payment("pay-1", 101, description="coffee"), "amount_minor"),
        (EntryDraft("pay-1", [Posting.debit("cust:43", 100), Posting.credit("merchant:7", 100)]), "postings"),
        (payment("pay-1", 100, fee=1, description="coffee"), "postings"),
        (payment("pay-1", 100, description="tea"), "description"),
        (payment("pay-1", 100, description="coffee", metadata={"x": 1}), "metadata"),
        (payment("pay-1", 100, description="coffee", pending=True), "kind"),
    ],
)
def test_same_id_with_different_content_names_the_field(chart, retry, field):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1"))
        ledger.post(payment("pay-1", 100, description="coffee"))
    with chart.ledger() as ledger:
        with pytest.raises(EntryExistsWithDifferentContent) as info:
            ledger.post(retry)
        assert info.value.field == field
        assert info.value.code == "entry_exists_with_different_content"
        assert f"entry pay-1 exists with different {field}" in str(info.value)
        assert ledger.balance("cust:42").debits_posted_minor == 100


def test_an_entry_id_used_by_a_reversal_cannot_be_reused_for_a_posting(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1"))
        ledger.reverse("topup-1", "rev-1", "wrong customer")
        with pytest.raises(EntryExistsWithDifferentContent) as info:
            ledger.post(topup("rev-1"))
        assert info.value.field == "kind"


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, Decimal("10"), "10", None])
def test_amounts_are_positive_integers(amount):
    with pytest.raises(InvalidAmount) as info:
        Posting("cust:42", amount, "debit")
    assert info.value.code == "amount_must_be_positive_integer"


def test_malformed_entries_are_rejected():
    with pytest.raises(TooFewPostings) as info:
        EntryDraft("e1", [Posting.debit("bank:settlement", 5)])
    assert info.value.code == "entry_needs_two_postings"
    with pytest.raises(TooFewPostings):
        EntryDraft("e1", [])
    with pytest.raises(InvalidEntry, match="side must be 'debit' or 'credit'"):
        Posting("cust:42", 5, "withdrawal")
    with pytest.raises(InvalidEntry, match="entry_id"):
        EntryDraft("", [Posting.debit("a", 5), Posting.credit("b", 5)])
    with pytest.raises(InvalidEntry, match="JSON"):
        EntryDraft("e1", [Posting.debit("a", 5), Posting.credit("b", 5)], metadata={"x": object()})
    with pytest.raises(InvalidEntry, match="metadata must be a mapping"):
        EntryDraft("e1", [Posting.debit("a", 5), Posting.credit("b", 5)], metadata=[1])  # type: ignore[arg-type]


def test_unbalanced_entry_is_rejected(chart):
    with chart.ledger() as ledger:
        with pytest.raises(UnbalancedEntry) as info:
            ledger.post(
                EntryDraft("e1", [Posting.debit("bank:settlement", 100), Posting.credit("cust:42", 90)])
            )
        assert info.value.code == "entry_unbalanced"
        assert "entry e1 is unbalanced in CNY: debits 100, credits 90" in str(info.value)
    assert chart.count("ledger_entries") == 0


def test_entries_balance_per_currency(chart):
    with chart.ledger() as ledger:
        fx = [
            Posting.debit("bank:settlement", 700),
            Posting.credit("cust:42", 700),
            Posting.debit("bank:settlement:usd", 100),
            Posting.credit("cust:42:usd", 100),
        ]
        assert ledger.post(EntryDraft("fx-1", fx)).created
        # Totals balance across currencies (700 + 100 each side) but not within USD.
        with pytest.raises(UnbalancedEntry, match="unbalanced in CNY"):
            ledger.post(
                EntryDraft(
                    "fx-2",
                    [
                        Posting.debit("bank:settlement", 700),
                        Posting.credit("cust:42:usd", 700),
                    ],
                )
            )
        assert ledger.trial_balance("USD").debits_minor == 100
        assert ledger.trial_balance("CNY").debits_minor == 700


def test_posting_currency_must_match_the_account(chart):
    with chart.ledger() as ledger:
        with pytest.raises(CurrencyMismatch) as info:
            ledger.post(
                EntryDraft("e1", [Posting.debit("bank:settlement", 5, "USD"), Posting.credit("cust:42", 5)])
            )
        assert info.value.code == "currency_mismatch"
        assert "posting to account bank:settlement is in USD but the account is in CNY" in str(info.value)
        with pytest.raises(CurrencyMismatch, match="unknown ISO 4217"):
            Posting.debit("bank:settlement", 5, "ABC")


def test_insufficient_funds_names_account_and_amounts_and_writes_nothing(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
    with chart.ledger() as ledger:
        with pytest.raises(InsufficientFunds) as info:
            ledger.post(payment("pay-1", 150, fee=5))
        assert str(info.value) == (
            "insufficient available balance on account cust:42: available 100, needed 150 "
            "(CNY minor units; rule debits_must_not_exceed_credits)"
        )
        assert info.value.code == "insufficient_available_balance"
        assert (info.value.account, info.value.available_minor, info.value.needed_minor) == (
            "cust:42",
            100,
            150,
        )
        assert ledger.balance("cust:42").available_minor == 100
        assert ledger.balance("merchant:7").credits_posted_minor == 0
    assert chart.count("ledger_entries") == 1
    assert chart.count("ledger_postings") == 2


def test_exact_available_balance_can_be_spent(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
        ledger.post(payment("pay-1", 100))
        assert ledger.balance("cust:42").available_minor == 0
        with pytest.raises(InsufficientFunds, match="available 0, needed 1"):
            ledger.post(payment("pay-2", 1))


def test_credits_must_not_exceed_debits(chart):
    with chart.ledger() as ledger:
        # A credit line: drawing debits it, repaying credits it; repaying more than drawn is refused.
        ledger.post(EntryDraft("draw-1", [Posting.debit("loan:42", 300), Posting.credit("cust:42", 300)]))
        ledger.post(EntryDraft("repay-1", [Posting.debit("cust:42", 200), Posting.credit("loan:42", 200)]))
        assert ledger.balance("loan:42").available_minor == 100
        with pytest.raises(InsufficientFunds, match="account loan:42: available 100, needed 101") as info:
            ledger.post(
                EntryDraft("repay-2", [Posting.debit("bank:settlement", 101), Posting.credit("loan:42", 101)])
            )
        assert info.value.constraint == "credits_must_not_exceed_debits"


def test_an_error_rolls_back_only_its_own_operation(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
        with pytest.raises(InsufficientFunds):
            ledger.post(payment("pay-1", 150))
        with pytest.raises(UnknownAccount):
            ledger.post(EntryDraft("pay-2", [Posting.debit("cust:42", 1), Posting.credit("nope", 1)]))
        ledger.post(payment("pay-3", 40))
    # The unit of work committed the two good entries and nothing of the failed ones.
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").available_minor == 60
        with pytest.raises(UnknownEntry):
            ledger.get_entry("pay-1")
        assert ledger.verify() == []
    assert chart.count("ledger_entries") == 2


WRITES = {
    "post": lambda ledger: ledger.post(payment("pay-1", 30)),
    "post_batch": lambda ledger: ledger.post_batch([payment("pay-1", 30), payment("pay-1b", 5)]),
    "post_linked": lambda ledger: ledger.post_linked([payment("pay-1", 30), payment("pay-1b", 5)]),
    "post_pending": lambda ledger: ledger.post_pending("hold-1", "pay-1", 20),
    "void_pending": lambda ledger: ledger.void_pending("hold-1", "pay-1"),
    "reverse": lambda ledger: ledger.reverse("topup-2", "pay-1", "wrong customer"),
}


def _failed_write_leaves_nothing(chart, monkeypatch, how):
    from infra.ledger import service

    original = service.Ledger._update_balances

    def boom(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise RuntimeError("disk on fire")

    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
        ledger.post(topup("topup-2", account="cust:43", amount=100))
        ledger.post(payment("hold-1", 40, pending=True))
    with chart.ledger() as ledger:
        before = ledger.balances(["cust:42", "cust:43"])
        monkeypatch.setattr(service.Ledger, "_update_balances", boom)
        with pytest.raises(RuntimeError):
            WRITES[how](ledger)
        monkeypatch.undo()
        assert ledger.balances(["cust:42", "cust:43"]) == before
        assert ledger.get_entry("hold-1").status is EntryStatus.PENDING
        with pytest.raises(UnknownEntry):
            ledger.get_entry("pay-1")
        ledger.post(payment("pay-2", 10))
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").available_minor == 50
        assert ledger.verify() == []
    assert chart.count("ledger_entries") == 4
    assert chart.count("ledger_postings") == 8


@pytest.mark.parametrize("how", ["reverse"])
def test_a_failed_write_leaves_nothing(chart, monkeypatch, how):
    """A Python error after some rows were written (the entry and its postings inserted, balance
    rows updated) rolls back exactly this operation: nothing half-written, the unit of work usable."""
    _failed_write_leaves_nothing(chart, monkeypatch, how)


@pytest.mark.parametrize("ledger_db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", ["post_pending", "void_pending"])
def test_a_failed_write_of_a_resolution_leaves_nothing(chart, monkeypatch, how):
    """The same for resolving a pending entry, which SQLite writes in several statements.
    (PostgreSQL writes it in one: see test_a_database_failure_in_a_resolution_leaves_nothing.)"""
    _failed_write_leaves_nothing(chart, monkeypatch, how)


@pytest.mark.parametrize("ledger_db", ["postgres"], indirect=True)
@pytest.mark.parametrize("how", ["post_pending", "void_pending"])
def test_a_database_failure_in_a_resolution_leaves_nothing(chart, monkeypatch, how):
    """On PostgreSQL a resolution's writes (entry, postings, status row, balance rows) are one
    statement without a SAVEPOINT: a database error in it (here a balance row its CHECK constraint
    rejects) writes none of them, and the unit of work refuses to commit rather than commit the
    rest of its work without it."""
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
        ledger.post(payment("hold-1", 40, pending=True))
        before = ledger.balances(["cust:42"])
    with pytest.raises(LedgerInvariantViolated, match="cannot commit: a ledger statement failed"):
        with chart.ledger() as ledger:
            ledger.post(payment("pay-0", 1))  # earlier work of the unit of work: not committed
            corrupt_balance_rows(monkeypatch, credits_posted=-1)
            with pytest.raises(IntegrityError):
                WRITES[how](ledger)
            monkeypatch.undo()
    with chart.ledger() as ledger:
        assert ledger.balances(["cust:42"]) == before
        assert ledger.get_entry("hold-1").status is EntryStatus.PENDING
        for missing in ("pay-0", "pay-1"):
            with pytest.raises(UnknownEntry):
                ledger.get_entry(missing)
        WRITES[how](ledger)  # and it resolves afterwards
        assert ledger.get_entry("hold-1").status is not EntryStatus.PENDING
        assert ledger.verify() == []


def corrupt_balance_rows(monkeypatch, **values: int) -> None:
    """Make the new balance rows carry ``values`` the database's CHECK constraints refuse, past the
    ledger's own invariants, as a bug or a disk error would."""
    from infra.ledger import service

    original = service.Ledger._balance_rows

    def corrupt(self, new_rows):
        return [(account_id, replace(new, **values)) for account_id, new in original(self, new_rows)]

    monkeypatch.setattr(service.Ledger, "_balance_rows", corrupt)


@pytest.mark.parametrize("ledger_db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", ["post", "post_batch", "post_linked"])
def test_a_failed_write_of_new_entries_leaves_nothing(chart, monkeypatch, how):
    """The same for new entries, which SQLite writes in several statements. (PostgreSQL writes
    them in one statement: see test_a_database_failure_mid_write_leaves_nothing.)"""
    _failed_write_leaves_nothing(chart, monkeypatch, how)


@pytest.mark.parametrize("how", ["post", "post_batch", "post_linked"])
def test_a_database_failure_mid_write_leaves_nothing(chart, monkeypatch, how):
    """A database error while an operation writes (here: a balance row its CHECK constraint
    rejects, after the entries and postings went in) leaves nothing of the operation. Batches
    write in a SAVEPOINT, so the unit of work stays usable; a single ``post`` on PostgreSQL is one
    statement and no SAVEPOINT (see docs/ledger.md): PostgreSQL aborts the transaction, and the
    unit of work then refuses to commit instead of silently committing nothing."""
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))

    def attempt(ledger):
        corrupt_balance_rows(monkeypatch, debits_posted=-1)
        with pytest.raises(IntegrityError):
            if how == "post":
                ledger.post(payment("pay-1", 30))
            else:
                getattr(ledger, how)([payment("pay-1", 30), payment("pay-1b", 5, account="cust:42")])
        monkeypatch.undo()

    if how == "post" and chart.backend == "postgres":
        with pytest.raises(LedgerInvariantViolated, match="cannot commit: a ledger statement failed"):
            with chart.ledger() as ledger:
                ledger.post(payment("pay-0", 1))  # earlier work of the unit of work: not committed
                attempt(ledger)
    else:
        with chart.ledger() as ledger:
            ledger.post(payment("pay-0", 1))
            attempt(ledger)
            assert ledger.balance("cust:42").available_minor == 99
            with pytest.raises(UnknownEntry):
                ledger.get_entry("pay-1")
            ledger.post(payment("pay-2", 10))
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").available_minor in (89, 100)
        with pytest.raises(UnknownEntry):
            ledger.get_entry("pay-1")
        ledger.post(payment("pay-3", 10))  # a new unit of work is fine
        assert ledger.verify() == []
    assert chart.count("ledger_postings") == 2 * chart.count("ledger_entries")


# --- linked entries ------------------------------------------------------------------------------


def test_linked_entries_all_succeed_in_order(chart):
    with chart.ledger() as ledger:
        # The second spends what the first credits.
        results = ledger.post_linked([topup("topup-1", amount=50), payment("pay-1", 50, fee=1)])
        assert [r.created for r in results] == [True, True]
        assert ledger.balance("cust:42").available_minor == 0
        again = ledger.post_linked([topup("topup-1", amount=50), payment("pay-1", 50, fee=1)])
        assert [r.created for r in again] == [False, False]
    assert chart.count("ledger_entries") == 2


def test_linked_entries_fail_together(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-0", account="cust:43", amount=10))
        with pytest.raises(InsufficientFunds) as info:
            ledger.post_linked(
                [
                    topup("topup-1", amount=50),
                    payment("pay-1", 50),
                    payment("pay-2", 11, account="cust:43"),
                ]
            )
        assert info.value.linked_index == 2
        assert isinstance(info.value, LedgerError)
        ledger.post(payment("pay-3", 5, account="cust:43"))
    with chart.ledger() as ledger:
        assert ledger.balance("cust:42").credits_posted_minor == 0
        assert ledger.balance("merchant:7").credits_posted_minor == 5
        for entry_id in ("topup-1", "pay-1", "pay-2"):
            with pytest.raises(UnknownEntry):
                ledger.get_entry(entry_id)
        assert ledger.verify() == []
    assert chart.count("ledger_entries") == 2


def test_linked_failure_on_unknown_account_or_conflicting_retry(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=50))
        with pytest.raises(UnknownAccount):
            ledger.post_linked(
                [topup("topup-2"), EntryDraft("x", [Posting.debit("cust:42", 1), Posting.credit("nope", 1)])]
            )
        with pytest.raises(EntryExistsWithDifferentContent) as info:
            ledger.post_linked([topup("topup-3"), topup("topup-1", amount=51)])
        assert info.value.linked_index == 1
        assert ledger.post_linked([]) == []
    assert chart.count("ledger_entries") == 1


# --- reversals -----------------------------------------------------------------------------------


def test_reverse_posts_the_mirror_entry(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=1_000))
        ledger.post(payment("pay-1", 300, fee=3))
    chart.clock.advance(minutes=1)
    with chart.ledger() as ledger:
        reversal = ledger.reverse("pay-1", "pay-1-rev", "customer dispute")
        assert reversal.created
        assert reversal.kind is EntryKind.REVERSAL
        assert reversal.reverses_entry_id == "pay-1"
        assert reversal.description == "customer dispute"
        assert [(p.account, p.side, p.amount_minor) for p in reversal.postings] == [
            ("cust:42", Side.CREDIT, 300),
            ("merchant:7", Side.DEBIT, 297),
            ("bank:income", Side.DEBIT, 3),
        ]
        assert ledger.balance("cust:42").available_minor == 1_000
        assert ledger.balance("merchant:7").net_posted_minor == 0
        assert ledger.balance("bank:income").net_posted_minor == 0
        # Idempotent retry, then the rules.
        assert not ledger.reverse("pay-1", "pay-1-rev", "customer dispute").created
        with pytest.raises(EntryExistsWithDifferentContent) as info:
            ledger.reverse("pay-1", "pay-1-rev", "fraud")
        assert info.value.field == "reason"
        with pytest.raises(EntryExistsWithDifferentContent) as info:
            ledger.reverse("topup-1", "pay-1-rev", "customer dispute")
        assert info.value.field == "reverses_entry_id"
        with pytest.raises(
            AlreadyReversed, match="entry pay-1 was already reversed by entry pay-1-rev"
        ) as err:
            ledger.reverse("pay-1", "pay-1-rev-2", "again")
        assert err.value.code == "already_reversed"
        with pytest.raises(UnknownEntry):
            ledger.reverse("nope", "rev-x", "typo")
        with pytest.raises(InvalidEntry, match="needs a reason"):
            ledger.reverse("topup-1", "rev-y", " ")
        assert ledger.verify() == []
        assert ledger.trial_balance("CNY").balanced


def test_a_reversal_cannot_overdraw_a_constrained_account(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
        ledger.post(payment("pay-1", 80))
        with pytest.raises(InsufficientFunds, match="cust:42: available 20, needed 100"):
            ledger.reverse("topup-1", "topup-1-rev", "sent to the wrong customer")
        assert ledger.reverse("pay-1", "pay-1-rev", "refund").created
        assert ledger.reverse("topup-1", "topup-1-rev", "sent to the wrong customer").created
        assert ledger.balance("cust:42").available_minor == 0


def test_pending_entries_are_voided_not_reversed(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=100))
        ledger.post(payment("hold-1", 50, pending=True))
        with pytest.raises(NotReversible, match="void it instead") as info:
            ledger.reverse("hold-1", "rev-1", "oops")
        assert info.value.code == "entry_not_reversible"
        ledger.void_pending("hold-1", "void-1")
        with pytest.raises(NotReversible, match="no postings"):
            ledger.reverse("void-1", "rev-2", "oops")


def test_entries_and_postings_are_never_updated_or_deleted(chart):
    def snapshot() -> tuple[list, list]:
        with chart.engine.connect() as conn:
            entries = conn.execute(text("SELECT * FROM ledger_entries ORDER BY id")).all()
            postings = conn.execute(text("SELECT * FROM ledger_postings ORDER BY id")).all()
        return entries, postings

    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", amount=1_000))
        ledger.post(payment("hold-1", 300, pending=True))
        ledger.post(payment("hold-2", 200, pending=True))
        ledger.post(payment("pay-1", 100))
    entries, postings = snapshot()
    chart.clock.advance(seconds=1)
    with chart.ledger() as ledger:
        ledger.post_pending("hold-1", "cap-1", 250)
        ledger.void_pending("hold-2", "void-2")
        ledger.reverse("pay-1", "rev-1", "refund")
        ledger.reverse("cap-1", "rev-2", "refund")
    entries_after, postings_after = snapshot()
    assert entries_after[: len(entries)] == entries
    assert postings_after[: len(postings)] == postings
    assert len(entries_after) == len(entries) + 4
