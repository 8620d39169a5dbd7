"""Two-phase (pending) entries, expiry, and balances as of past instants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from infra.ledger import (
    EntryDraft,
    EntryExistsWithDifferentContent,
    EntryKind,
    EntryStatus,
    InsufficientFunds,
    InvalidExpiry,
    NotPending,
    PartialPostNotAllowed,
    PendingAlreadyResolved,
    PendingExpired,
    PostAmountExceedsPending,
    Posting,
    UnknownEntry,
)


def topup(entry_id: str, amount: int, account: str = "cust:42") -> EntryDraft:
    return EntryDraft(entry_id, [Posting.debit("bank:settlement", amount), Posting.credit(account, amount)])


def hold(entry_id: str, amount: int, *, expires_at: datetime | None = None, fee: int = 0) -> EntryDraft:
    postings = [Posting.debit("cust:42", amount), Posting.credit("merchant:7", amount - fee)]
    if fee:
        postings.append(Posting.credit("bank:income", fee))
    return EntryDraft(entry_id, postings, pending=True, expires_at=expires_at)


def test_pending_reserves_available_not_posted(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 10_000))
        result = ledger.post(hold("hold-1", 8_000, expires_at=chart.clock.now() + timedelta(minutes=15)))
        assert result.kind is EntryKind.PENDING
        assert result.status is EntryStatus.PENDING
        assert result.expires_at == chart.clock.now() + timedelta(minutes=15)
    with chart.ledger() as ledger:
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.credits_posted_minor) == (0, 10_000)
        assert cust.debits_pending_minor == 8_000
        assert cust.net_posted_minor == 10_000
        assert cust.available_minor == 2_000
        merchant = ledger.balance("merchant:7")
        assert (merchant.credits_posted_minor, merchant.credits_pending_minor) == (0, 8_000)
        assert ledger.trial_balance("CNY").debits_minor == 10_000  # pending is not in the trial balance
        with pytest.raises(InsufficientFunds, match="available 2000, needed 3000"):
            ledger.post(
                EntryDraft("pay-1", [Posting.debit("cust:42", 3_000), Posting.credit("merchant:7", 3_000)])
            )
        with pytest.raises(InsufficientFunds, match="available 2000, needed 2001"):
            ledger.post(hold("hold-2", 2_001))
        assert ledger.verify() == []


def test_post_pending_in_full(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600, fee=6))
    chart.clock.advance(seconds=10)
    with chart.ledger() as ledger:
        posted = ledger.post_pending("hold-1", "capture-1", description="captured")
        assert posted.created
        assert posted.kind is EntryKind.POST_PENDING
        assert posted.pending_entry_id == "hold-1"
        assert [p.amount_minor for p in posted.postings] == [600, 594, 6]
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.debits_pending_minor, cust.available_minor) == (600, 0, 400)
        assert ledger.balance("bank:income").net_posted_minor == 6
        pending = ledger.get_entry("hold-1")
        assert pending.status is EntryStatus.POSTED
        assert pending.resolution_entry_id == "capture-1"
        assert pending.resolved_at == chart.clock.now()
        assert ledger.verify() == []


def test_partial_post_releases_the_rest(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600))
        posted = ledger.post_pending("hold-1", "capture-1", 450)
        assert [p.amount_minor for p in posted.postings] == [450, 450]
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.debits_pending_minor, cust.available_minor) == (450, 0, 550)
        merchant = ledger.balance("merchant:7")
        assert (merchant.credits_posted_minor, merchant.credits_pending_minor) == (450, 0)
        assert ledger.verify() == []


def test_partial_post_needs_a_two_posting_pending(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600, fee=6))
        with pytest.raises(PartialPostNotAllowed) as info:
            ledger.post_pending("hold-1", "capture-1", 300)
        assert info.value.code == "partial_post_needs_two_postings"
        ledger.post(hold("hold-2", 100))
        with pytest.raises(PostAmountExceedsPending, match="cannot post 101 of pending entry hold-2"):
            ledger.post_pending("hold-2", "capture-2", 101)
        assert ledger.post_pending("hold-1", "capture-1").created  # in full is fine


def test_void_releases_the_hold(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600))
        void = ledger.void_pending("hold-1", "void-1", description="order cancelled")
        assert void.kind is EntryKind.VOID_PENDING
        assert void.status is EntryStatus.VOIDED
        assert void.postings == ()
        cust = ledger.balance("cust:42")
        assert (cust.debits_posted_minor, cust.debits_pending_minor, cust.available_minor) == (0, 0, 1_000)
        assert ledger.get_entry("hold-1").status is EntryStatus.VOIDED
        assert not ledger.void_pending("hold-1", "void-1", description="order cancelled").created


def test_a_pending_entry_resolves_at_most_once(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600))
        ledger.post_pending("hold-1", "capture-1", 500)
    with chart.ledger() as ledger:
        retry = ledger.post_pending("hold-1", "capture-1", 500)  # the same resolution: idempotent
        assert not retry.created
        assert [p.amount_minor for p in retry.postings] == [500, 500]
        with pytest.raises(
            PendingAlreadyResolved, match="hold-1 was already posted by entry capture-1"
        ) as info:
            ledger.post_pending("hold-1", "capture-2")
        assert info.value.code == "pending_already_resolved"
        with pytest.raises(PendingAlreadyResolved):
            ledger.void_pending("hold-1", "void-1")
        with pytest.raises(EntryExistsWithDifferentContent) as diff:
            ledger.post_pending("hold-1", "capture-1", 400)
        assert diff.value.field == "amount_minor"
        with pytest.raises(EntryExistsWithDifferentContent) as diff:
            ledger.void_pending("hold-1", "capture-1")
        assert diff.value.field == "kind"
        assert ledger.balance("cust:42").debits_posted_minor == 500
    assert chart.count("ledger_entries") == 3


def test_full_post_by_amount_or_by_default_is_the_same_content(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600))
        ledger.post_pending("hold-1", "capture-1")
        assert not ledger.post_pending("hold-1", "capture-1", 600).created


def test_resolving_what_is_not_pending(chart):
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        with pytest.raises(NotPending) as info:
            ledger.post_pending("topup-1", "capture-1")
        assert info.value.code == "entry_not_pending"
        with pytest.raises(UnknownEntry, match="nope"):
            ledger.void_pending("nope", "void-1")


def test_expiry(chart):
    start = chart.clock.now()
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        ledger.post(hold("hold-1", 600, expires_at=start + timedelta(minutes=10)))
        ledger.post(hold("hold-2", 100, expires_at=start + timedelta(minutes=30)))
        ledger.post(hold("hold-3", 50))  # never expires
        assert ledger.expire_pending() == []
    chart.clock.advance(minutes=10)  # exactly at expires_at: expired
    with chart.ledger() as ledger:
        # Not yet swept: the hold still reserves (conservative), but it can no longer be resolved.
        assert ledger.balance("cust:42").available_minor == 250
        with pytest.raises(
            PendingExpired, match="pending entry hold-1 expired at 2026-01-01T00:10:00"
        ) as info:
            ledger.post_pending("hold-1", "capture-1")
        assert info.value.code == "pending_expired"
        with pytest.raises(PendingExpired):
            ledger.void_pending("hold-1", "void-1")
        assert ledger.expire_pending() == ["hold-1"]
        assert ledger.expire_pending() == []
        assert ledger.balance("cust:42").available_minor == 850
        expired = ledger.get_entry("hold-1")
        assert expired.status is EntryStatus.EXPIRED
        assert expired.resolved_at == chart.clock.now()
        with pytest.raises(PendingAlreadyResolved, match="already expired"):
            ledger.post_pending("hold-1", "capture-1")
    chart.clock.advance(hours=1)
    with chart.ledger() as ledger:
        assert ledger.expire_pending() == ["hold-2"]
        assert ledger.balance("cust:42").available_minor == 950
        assert ledger.get_entry("hold-3").status is EntryStatus.PENDING
        assert ledger.post_pending("hold-3", "capture-3").created
        assert ledger.verify() == []


def test_expires_at_rules(chart):
    with pytest.raises(InvalidExpiry, match="only for pending entries") as info:
        EntryDraft(
            "e1", [Posting.debit("a", 1), Posting.credit("b", 1)], expires_at=datetime(2030, 1, 1, tzinfo=UTC)
        )
    assert info.value.code == "invalid_expires_at"
    with pytest.raises(InvalidExpiry, match="aware datetime"):
        EntryDraft(
            "e1",
            [Posting.debit("a", 1), Posting.credit("b", 1)],
            pending=True,
            expires_at=datetime(2030, 1, 1),
        )
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
        with pytest.raises(InvalidExpiry, match="is not after now"):
            ledger.post(hold("hold-1", 1, expires_at=chart.clock.now()))


def test_balances_as_of_past_instants(chart):
    clock = chart.clock
    t0 = clock.now()
    with chart.ledger() as ledger:
        ledger.post(topup("topup-1", 1_000))
    t1 = clock.advance(minutes=1)
    with chart.ledger() as ledger:
        ledger.post(hold("hold-1", 600, expires_at=t1 + timedelta(minutes=5)))
        ledger.post(hold("hold-2", 100, expires_at=t1 + timedelta(minutes=2)))
    t2 = clock.advance(minutes=1)
    with chart.ledger() as ledger:
        ledger.post_pending("hold-1", "capture-1", 400)
    t3 = clock.advance(minutes=2)
    with chart.ledger() as ledger:
        assert ledger.expire_pending() == ["hold-2"]
    t4 = clock.advance(minutes=1)
    with chart.ledger() as ledger:
        ledger.reverse("capture-1", "refund-1", "returned goods")

    def view(at: datetime) -> tuple[int, int, int]:
        with chart.ledger() as ledger:
            b = ledger.balance("cust:42", as_of=at)
            assert b.as_of == at
            return (b.debits_posted_minor, b.debits_pending_minor, b.available_minor)

    assert view(t0 - timedelta(seconds=1)) == (0, 0, 0)
    assert view(t0) == (0, 0, 1_000)
    assert view(t1 - timedelta(microseconds=1)) == (0, 0, 1_000)
    assert view(t1) == (0, 700, 300)
    assert view(t2) == (400, 100, 500)  # captured 400, released 200; hold-2 still pending
    assert view(t3 - timedelta(seconds=1)) == (400, 100, 500)
    assert view(t3) == (400, 0, 600)  # hold-2 expired (swept) at t3
    assert view(t4) == (400, 0, 1_000)  # the reversal credits back 400 (credits 1400, debits 400)
    with chart.ledger() as ledger:
        later = ledger.balance("cust:42", as_of=t4 + timedelta(days=1))
        now = ledger.balance("cust:42")
        assert replace(later, as_of=None) == now
        assert (now.debits_posted_minor, now.credits_posted_minor, now.available_minor) == (400, 1_400, 1_000)
        merchant = ledger.balance("merchant:7", as_of=t2)
        assert (merchant.credits_posted_minor, merchant.credits_pending_minor) == (400, 100)
        assert ledger.trial_balance("CNY", as_of=t0 - timedelta(seconds=1)).debits_minor == 0
        assert ledger.trial_balance("CNY", as_of=t2).debits_minor == 1_400
        assert ledger.trial_balance("CNY", as_of=t4).debits_minor == 1_800
        everything = ledger.balances(as_of=t2)
        assert everything["cust:42"].debits_posted_minor == 400
        assert sum(b.debits_posted_minor - b.credits_posted_minor for b in everything.values()) == 0
