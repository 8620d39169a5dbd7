"""PostgreSQL under concurrency: 8 real processes post against one constrained customer account
(with a limit) and one unconstrained hot bank account. The account is never overdrawn, no update
is lost, and the final balances equal the sums of the entries that were accepted."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import pytest

from core.clock import SystemClock
from core.db import create_db_engine, make_session_factory, tenant_session
from infra.ledger import EntryDraft, InsufficientFunds, Ledger, Posting

WORKERS = 8
ROUNDS = 30
FUNDING = 60_000
PAYMENT = 700
FEE = 7
SHUFFLE = 300


def _worker(url: str, tenant: str, worker: int, start: Any) -> dict[str, Any]:
    """One process: payments from the shared wallet (each also credits the hot income account),
    holds captured later, and transfers between two constrained wallets in both directions (which
    lock both rows: the sorted lock order is what keeps them from deadlocking)."""
    engine = create_db_engine(url, pool_size=1)
    factory = make_session_factory(engine)
    clock = SystemClock()
    accepted: list[tuple[str, str, int]] = []  # (kind, entry id, amount)
    rejected = 0
    start.wait(timeout=60)
    try:
        for i in range(ROUNDS):
            kind = ("pay", "hold", "shuffle")[i % 3]
            entry_id = f"w{worker}-{i}"
            try:
                with tenant_session(factory, tenant) as session:
                    ledger = Ledger(session, clock)
                    if kind == "shuffle":
                        src, dst = ("cust:hot", "cust:other") if worker % 2 else ("cust:other", "cust:hot")
                        ledger.post(
                            EntryDraft(entry_id, [Posting.debit(src, SHUFFLE), Posting.credit(dst, SHUFFLE)])
                        )
                        accepted.append((f"shuffle-{src}", entry_id, SHUFFLE))
                        continue
                    payment = EntryDraft(
                        entry_id,
                        [
                            Posting.debit("cust:hot", PAYMENT),
                            Posting.credit("merchant:1", PAYMENT - FEE),
                            Posting.credit("bank:income", FEE),
                        ],
                        pending=kind == "hold",
                    )
                    ledger.post(payment)
                if kind == "hold":  # capture in a second unit of work, as a card network would
                    with tenant_session(factory, tenant) as session:
                        Ledger(session, clock).post_pending(entry_id, f"{entry_id}-capture")
                accepted.append(("pay", entry_id, PAYMENT))
            except InsufficientFunds:
                rejected += 1
    finally:
        engine.dispose()
    return {"accepted": accepted, "rejected": rejected}


@pytest.mark.postgres
def test_many_processes_never_overdraw_and_lose_nothing(ledger_postgres_url):
    tenant = f"conc_{uuid.uuid4().hex[:8]}"
    engine = create_db_engine(ledger_postgres_url)
    factory = make_session_factory(engine)
    clock = SystemClock()
    with tenant_session(factory, tenant) as session:
        ledger = Ledger(session, clock)
        ledger.open_account("bank:settlement", "CNY", "asset")
        ledger.open_account("bank:income", "CNY", "income")
        ledger.open_account("merchant:1", "CNY", "liability", "merchant", "1")
        for code in ("cust:hot", "cust:other"):
            ledger.open_account(code, "CNY", "liability", "customer", code, "debits_must_not_exceed_credits")
        for code in ("cust:hot", "cust:other"):
            ledger.post(
                EntryDraft(
                    f"fund-{code}", [Posting.debit("bank:settlement", FUNDING), Posting.credit(code, FUNDING)]
                )
            )

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Manager().Event()
    began = time.monotonic()
    with ctx.Pool(WORKERS) as pool:
        pending = [pool.apply_async(_worker, (ledger_postgres_url, tenant, w, start)) for w in range(WORKERS)]
        start.set()
        results = [p.get(timeout=120) for p in pending]
    elapsed = time.monotonic() - began

    accepted = [a for r in results for a in r["accepted"]]
    rejected = sum(r["rejected"] for r in results)
    payments = sum(n for kind, _, n in accepted if kind == "pay")
    to_other = sum(n for kind, _, n in accepted if kind == "shuffle-cust:hot")
    to_hot = sum(n for kind, _, n in accepted if kind == "shuffle-cust:other")
    n_payments = sum(1 for kind, _, _ in accepted if kind == "pay")

    with tenant_session(factory, tenant) as session:
        ledger = Ledger(session, clock)
        balances = ledger.balances()
        hot, other = balances["cust:hot"], balances["cust:other"]
        # The wallet was drained (the test is meaningful) and never went below zero.
        assert rejected > 0, "the limit was never reached; raise ROUNDS"
        assert hot.available_minor >= 0 and other.available_minor >= 0
        assert hot.debits_pending_minor == 0
        assert hot.net_posted_minor == FUNDING - payments - to_other + to_hot
        assert other.net_posted_minor == FUNDING - to_hot + to_other
        assert balances["bank:income"].net_posted_minor == FEE * n_payments
        assert balances["merchant:1"].net_posted_minor == (PAYMENT - FEE) * n_payments
        assert ledger.trial_balance("CNY").balanced
        assert ledger.verify() == []  # balance rows equal the sums of postings: no lost update
        for _, entry_id, _ in accepted:
            ledger.get_entry(entry_id)
    engine.dispose()
    assert elapsed < 60, f"took {elapsed:.1f}s"


BATCH_ROUNDS = 14
BATCH_SIZE = 6


def _shared_payment(round_: int, j: int) -> EntryDraft:
    """A payment every worker posts with the same id and content: exactly one may create it."""
    amount = 300 + 7 * j
    return EntryDraft(
        f"shared-{round_}-{j}",
        [
            Posting.debit("cust:hot", amount),
            Posting.credit("merchant:1", amount - 3),
            Posting.credit("bank:income", 3),
        ],
    )


def _batch_worker(url: str, tenant: str, worker: int, start: Any) -> dict[str, Any]:
    """One process: ``post_batch`` of payments from the shared wallet (some with ids that every
    worker posts too), transfers between the two wallets in both directions in the same batch
    (two balance rows locked in one sorted statement), and fees on the unconstrained accounts."""
    engine = create_db_engine(url, pool_size=1)
    factory = make_session_factory(engine)
    clock = SystemClock()
    created: list[tuple[str, str, int]] = []  # (kind, entry id, amount), as this worker created them
    refused = 0
    start.wait(timeout=60)
    try:
        for r in range(BATCH_ROUNDS):
            src, dst = ("cust:hot", "cust:other") if (worker + r) % 2 else ("cust:other", "cust:hot")
            drafts = [
                _shared_payment(r, worker % 3),
                EntryDraft(
                    f"b{worker}-{r}-pay", [Posting.debit("cust:hot", 700), Posting.credit("merchant:1", 700)]
                ),
                EntryDraft(f"b{worker}-{r}-move", [Posting.debit(src, 200), Posting.credit(dst, 200)]),
                EntryDraft(
                    f"b{worker}-{r}-fee",
                    [Posting.debit("bank:settlement", 1), Posting.credit("bank:income", 1)],
                ),
                _shared_payment(r, (worker + 1) % 3),
                EntryDraft(f"b{worker}-{r}-back", [Posting.debit(dst, 100), Posting.credit(src, 100)]),
            ]
            assert len(drafts) == BATCH_SIZE
            with tenant_session(factory, tenant) as session:
                outcomes = Ledger(session, clock).post_batch(drafts)
            for draft, outcome in zip(drafts, outcomes, strict=True):
                if isinstance(outcome, InsufficientFunds):
                    refused += 1
                    continue
                assert not isinstance(outcome, Exception), outcome
                if outcome.created:
                    kind = draft.entry_id.split("-")[-1] if draft.entry_id.startswith("b") else "shared"
                    debit = next(p for p in draft.postings if p.side == "debit")
                    created.append((f"{kind}:{debit.account}", draft.entry_id, debit.amount_minor))
    finally:
        engine.dispose()
    return {"created": created, "refused": refused}


@pytest.mark.postgres
def test_many_processes_posting_batches_never_overdraw_and_post_each_id_once(ledger_postgres_url):
    tenant = f"batch_{uuid.uuid4().hex[:8]}"
    engine = create_db_engine(ledger_postgres_url)
    factory = make_session_factory(engine)
    clock = SystemClock()
    with tenant_session(factory, tenant) as session:
        ledger = Ledger(session, clock)
        for code, type_ in (
            ("bank:settlement", "asset"),
            ("bank:income", "income"),
            ("merchant:1", "liability"),
        ):
            ledger.open_account(code, "CNY", type_)
        for code in ("cust:hot", "cust:other"):
            ledger.open_account(code, "CNY", "liability", "customer", code, "debits_must_not_exceed_credits")
        ledger.post_batch(
            [
                EntryDraft(
                    f"fund-{code}", [Posting.debit("bank:settlement", FUNDING), Posting.credit(code, FUNDING)]
                )
                for code in ("cust:hot", "cust:other")
            ]
        )

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(WORKERS) as pool:
        pending = [
            pool.apply_async(_batch_worker, (ledger_postgres_url, tenant, w, start)) for w in range(WORKERS)
        ]
        start.set()
        results = [p.get(timeout=180) for p in pending]

    created = [c for r in results for c in r["created"]]
    ids = [entry_id for _, entry_id, _ in created]
    assert len(ids) == len(set(ids)), "an id was created twice"
    assert sum(r["refused"] for r in results) > 0, "the limit was never reached; raise BATCH_ROUNDS"
    assert any(kind == "shared:cust:hot" for kind, _, _ in created)

    def total(*kinds: str) -> int:
        return sum(n for kind, _, n in created if kind in kinds)

    with tenant_session(factory, tenant) as session:
        ledger = Ledger(session, clock)
        balances = ledger.balances()
        hot, other = balances["cust:hot"], balances["cust:other"]
        assert hot.available_minor >= 0 and other.available_minor >= 0
        out_of_hot = total("shared:cust:hot", "pay:cust:hot", "move:cust:hot", "back:cust:hot")
        into_hot = total("move:cust:other", "back:cust:other")
        assert hot.net_posted_minor == FUNDING - out_of_hot + into_hot
        assert other.net_posted_minor == FUNDING - into_hot + total("move:cust:hot", "back:cust:hot")
        shared = [entry_id for kind, entry_id, _ in created if kind == "shared:cust:hot"]
        assert balances["bank:income"].net_posted_minor == 3 * len(shared) + total("fee:bank:settlement")
        assert ledger.trial_balance("CNY").balanced
        assert ledger.verify() == []
        for entry_id in shared:  # every worker that posted a shared id got the same stored entry
            assert ledger.get_entry(entry_id).postings[0].account == "cust:hot"
    engine.dispose()
