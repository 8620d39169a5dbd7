"""Model-based property test: random sequences of entries, holds, posts, voids, expiries,
reversals, linked batches, independent batches (``post_batch``, with ids repeated inside a batch
and reused from earlier steps), rollups and retries of earlier calls, checked against a small
in-memory model.

After every step: the trial balance is zero, constrained accounts are within their limits
(available >= 0), the ledger's balances equal the model's (so a replayed id never moved money
twice), balance rows equal the sums of postings. At the end: every balance read "as of" an earlier
step's instant equals what was read at that step.

Each hypothesis example uses a fresh tenant, so examples share one database per backend.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from infra.ledger import (
    AlreadyReversed,
    EntryDraft,
    EntryExistsWithDifferentContent,
    EntryResult,
    InsufficientFunds,
    InvalidExpiry,
    LedgerError,
    NotPending,
    NotReversible,
    PartialPostNotAllowed,
    PendingAlreadyResolved,
    PendingExpired,
    PostAmountExceedsPending,
    Posting,
    UnknownEntry,
)

# code -> (type, constraint)
ACCOUNTS: dict[str, tuple[str, str]] = {
    "cust:a": ("liability", "debits_must_not_exceed_credits"),
    "cust:b": ("liability", "debits_must_not_exceed_credits"),
    "loan:c": ("asset", "credits_must_not_exceed_debits"),
    "bank:settlement": ("asset", "none"),
    "bank:income": ("income", "none"),
    "merchant:m": ("liability", "none"),
}
CODES = sorted(ACCOUNTS)
REVERSIBLE = ("standard", "post_pending", "reversal")

Legs = tuple[tuple[str, str, int], ...]  # (account, side, amount)

amounts = st.integers(1, 400)
customers = st.sampled_from(["cust:a", "cust:b"])
legs_strategy = st.one_of(
    # funding a customer from the bank or from the credit line
    st.builds(lambda c, n: (("bank:settlement", "debit", n), (c, "credit", n)), customers, amounts),
    st.builds(lambda c, n: (("loan:c", "debit", n), (c, "credit", n)), customers, amounts),
    # spending, with or without a fee to the bank's (hot, unconstrained) income account
    st.builds(lambda c, n: ((c, "debit", n), ("merchant:m", "credit", n)), customers, amounts),
    st.builds(
        lambda c, n, f: ((c, "debit", n + f), ("merchant:m", "credit", n), ("bank:income", "credit", f)),
        customers,
        amounts,
        st.integers(1, 20),
    ),
    # repaying the credit line
    st.builds(lambda c, n: ((c, "debit", n), ("loan:c", "credit", n)), customers, amounts),
    # anything at all
    st.builds(
        lambda d, c, n: ((d, "debit", n), (c, "credit", n)),
        st.sampled_from(CODES),
        st.sampled_from(CODES),
        amounts,
    ),
)
transfer_strategy = st.fixed_dictionaries(
    {
        "legs": legs_strategy,
        "pending": st.booleans(),
        "expires_in": st.one_of(st.none(), st.none(), st.integers(1, 12)),
        "description": st.sampled_from(["", "note"]),
    }
)


# --- the model -----------------------------------------------------------------------------------


@dataclass
class MEntry:
    kind: str
    content: tuple[Any, ...]
    legs: Legs  # pending legs for a pending entry, posted legs otherwise
    status: str = "posted"
    expires_at: datetime | None = None
    reversed: bool = False


@dataclass
class Model:
    now: datetime
    entries: dict[str, MEntry] = field(default_factory=dict)

    def balances(self) -> dict[str, tuple[int, int, int, int]]:
        out = {code: [0, 0, 0, 0] for code in CODES}
        for e in self.entries.values():
            if e.kind == "pending":
                if e.status == "pending":
                    for acct, side, n in e.legs:
                        out[acct][2 if side == "debit" else 3] += n
            else:
                for acct, side, n in e.legs:
                    out[acct][0 if side == "debit" else 1] += n
        return {code: (v[0], v[1], v[2], v[3]) for code, v in out.items()}

    def _within_limits_after(self, legs: Legs, *, pending: bool) -> None:
        bal = {code: list(v) for code, v in self.balances().items()}
        for acct, side, n in legs:
            bal[acct][(0 if side == "debit" else 1) + (2 if pending else 0)] += n
        for code, (dp, cp, dpend, cpend) in bal.items():
            constraint = ACCOUNTS[code][1]
            if constraint == "debits_must_not_exceed_credits" and dp + dpend > cp:
                raise InsufficientFunds(
                    code, available_minor=0, needed_minor=0, currency="CNY", constraint=constraint
                )
            if constraint == "credits_must_not_exceed_debits" and cp + cpend > dp:
                raise InsufficientFunds(
                    code, available_minor=0, needed_minor=0, currency="CNY", constraint=constraint
                )

    def _existing(self, entry_id: str, content: tuple[Any, ...]) -> bool:
        """True for an idempotent retry; raises for a conflicting one; False if new."""
        if entry_id not in self.entries:
            return False
        if self.entries[entry_id].content != content:
            raise EntryExistsWithDifferentContent(entry_id, "?", None, None)
        return True

    # Each operation returns ``created`` or raises the error the ledger must raise.

    def transfer(self, t: dict[str, Any]) -> bool:
        legs: Legs = t["legs"]
        expires_at = t["expires_at"]
        kind = "pending" if t["pending"] else "standard"
        content = (kind, tuple(sorted(legs)), expires_at, t["description"])
        if self._existing(t["entry_id"], content):
            return False
        if expires_at is not None and expires_at <= self.now:  # e.g. a replayed batch's failed entry
            raise InvalidExpiry("expires_at is not after now")
        self._within_limits_after(legs, pending=t["pending"])
        status = "pending" if t["pending"] else "posted"
        self.entries[t["entry_id"]] = MEntry(kind, content, legs, status, expires_at)
        return True

    def resolve(self, kind: str, pending_id: str, resolution_id: str, amount: int | None) -> bool:
        target = self.entries.get(pending_id)
        held = target.legs if target is not None and target.kind == "pending" else ()
        canonical: int | None = None
        if kind == "post_pending":
            full = amount is None or (len(held) == 2 and amount == held[0][2])
            canonical = (held[0][2] if len(held) == 2 else None) if full else amount
        content = (kind, pending_id, canonical)
        if self._existing(resolution_id, content):
            return False
        if target is None:
            raise UnknownEntry(pending_id)
        if target.kind != "pending":
            raise NotPending("not pending")
        if target.status != "pending":
            raise PendingAlreadyResolved("resolved")
        if target.expires_at is not None and self.now >= target.expires_at:
            raise PendingExpired("expired")
        legs: Legs = ()
        if kind == "post_pending":
            if amount is not None and len(held) != 2:
                raise PartialPostNotAllowed("partial")
            if amount is not None and amount > held[0][2]:
                raise PostAmountExceedsPending("exceeds")
            legs = tuple((a, s, n if amount is None else amount) for a, s, n in held)
        target.status = "posted" if kind == "post_pending" else "voided"
        self.entries[resolution_id] = MEntry(kind, content, legs)
        return True

    def reverse(self, entry_id: str, reversal_id: str, reason: str) -> bool:
        content = ("reversal", entry_id, reason)
        if self._existing(reversal_id, content):
            return False
        original = self.entries.get(entry_id)
        if original is None:
            raise UnknownEntry(entry_id)
        if original.kind in ("pending", "void_pending"):
            raise NotReversible("not reversible")
        if original.reversed:
            raise AlreadyReversed("reversed")
        legs = tuple((a, "credit" if s == "debit" else "debit", n) for a, s, n in original.legs)
        self._within_limits_after(legs, pending=False)
        original.reversed = True
        self.entries[reversal_id] = MEntry("reversal", content, legs)
        return True

    def expire(self) -> list[str]:
        # In creation order, as the ledger answers (by entry key).
        due = [
            i
            for i, e in self.entries.items()
            if e.status == "pending" and e.expires_at and e.expires_at <= self.now
        ]
        for entry_id in due:
            self.entries[entry_id].status = "expired"
        return due


def draft_of(t: dict[str, Any]) -> EntryDraft:
    return EntryDraft(
        t["entry_id"],
        [Posting(a, n, s) for a, s, n in t["legs"]],
        description=t["description"],
        pending=t["pending"],
        expires_at=t["expires_at"],
    )


def with_expiry(t: dict[str, Any], step_at: datetime) -> dict[str, Any]:
    """Turn the relative ``expires_in`` into an absolute ``expires_at`` (so a replay is exact)."""
    expires_in = t.pop("expires_in")
    t["expires_at"] = step_at + timedelta(seconds=expires_in) if t["pending"] and expires_in else None
    return t


# --- the state machine ---------------------------------------------------------------------------


def make_machine(db: Any) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def open_accounts(self) -> None:
            self.tenant = f"prop_{uuid.uuid4().hex[:12]}"
            self.counter = 0
            self.model = Model(now=db.clock.now())
            self.history: list[tuple[str, tuple[Any, ...]]] = []  # successful calls, for replays
            self.snapshots: list[tuple[datetime, dict[str, tuple[int, int, int, int]]]] = []
            with db.ledger(self.tenant) as ledger:
                for code, (type_, constraint) in ACCOUNTS.items():
                    ledger.open_account(code, "CNY", type_, "bank", "", constraint)
            for n, legs in enumerate(
                [
                    (("bank:settlement", "debit", 800), ("cust:a", "credit", 800)),
                    (("loan:c", "debit", 500), ("cust:b", "credit", 500)),
                ]
            ):
                seed = {
                    "entry_id": f"seed{n}",
                    "legs": legs,
                    "pending": False,
                    "expires_at": None,
                    "description": "",
                }
                self._step("transfer", (seed,))

        # -- running one operation against both ---------------------------------------------------

        def _step(self, op: str, args: tuple[Any, ...]) -> None:
            now = db.clock.advance(seconds=1)
            self.model.now = now
            model_before = copy.deepcopy(self.model)
            try:
                expected: Any = getattr(self, f"_model_{op}")(*args)
            except LedgerError as exc:
                expected = exc
                self.model = model_before  # a failed operation changes nothing
            with db.ledger(self.tenant) as ledger:
                try:
                    actual: Any = getattr(self, f"_ledger_{op}")(ledger, now, *args)
                except LedgerError as exc:
                    actual = exc  # caught inside the unit of work, which then commits
            if isinstance(expected, Exception):
                assert type(actual) is type(expected), f"{op}{args}: expected {expected!r}, got {actual!r}"
            else:
                assert not isinstance(actual, Exception), f"{op}{args}: expected {expected!r}, got {actual!r}"
                assert actual == expected, f"{op}{args}: expected {expected!r}, got {actual!r}"
                self.history.append((op, args))

        def _model_transfer(self, t: dict[str, Any]) -> bool:
            return self.model.transfer(t)

        def _ledger_transfer(self, ledger: Any, now: datetime, t: dict[str, Any]) -> bool:
            return ledger.post(draft_of(t)).created

        def _model_linked(self, ts: list[dict[str, Any]]) -> list[bool]:
            return [self.model.transfer(t) for t in ts]

        def _ledger_linked(self, ledger: Any, now: datetime, ts: list[dict[str, Any]]) -> list[bool]:
            return [r.created for r in ledger.post_linked([draft_of(t) for t in ts])]

        def _model_batch(self, ts: list[dict[str, Any]]) -> list[Any]:
            """Each entry on its own, in order: its ``created`` or the type of its error."""
            outcomes: list[Any] = []
            for t in ts:
                try:
                    outcomes.append(self.model.transfer(t))
                except LedgerError as exc:
                    outcomes.append(type(exc))
            return outcomes

        def _ledger_batch(self, ledger: Any, now: datetime, ts: list[dict[str, Any]]) -> list[Any]:
            return [
                o.created if isinstance(o, EntryResult) else type(o)
                for o in ledger.post_batch([draft_of(t) for t in ts])
            ]

        def _model_post(self, pending_id: str, resolution_id: str, amount: int | None) -> bool:
            return self.model.resolve("post_pending", pending_id, resolution_id, amount)

        def _ledger_post(
            self, ledger: Any, now: datetime, pending_id: str, resolution_id: str, amount: int | None
        ) -> bool:
            return ledger.post_pending(pending_id, resolution_id, amount).created

        def _model_void(self, pending_id: str, resolution_id: str) -> bool:
            return self.model.resolve("void_pending", pending_id, resolution_id, None)

        def _ledger_void(self, ledger: Any, now: datetime, pending_id: str, resolution_id: str) -> bool:
            return ledger.void_pending(pending_id, resolution_id).created

        def _model_reverse(self, entry_id: str, reversal_id: str, reason: str) -> bool:
            return self.model.reverse(entry_id, reversal_id, reason)

        def _ledger_reverse(
            self, ledger: Any, now: datetime, entry_id: str, reversal_id: str, reason: str
        ) -> bool:
            return ledger.reverse(entry_id, reversal_id, reason).created

        def _model_expire(self) -> list[str]:
            return self.model.expire()

        def _ledger_expire(self, ledger: Any, now: datetime) -> list[str]:
            return ledger.expire_pending()

        # -- rules --------------------------------------------------------------------------------

        @staticmethod
        def _next_step_at() -> datetime:
            return db.clock.now() + timedelta(seconds=1)  # _step advances the clock by one second

        def _new_id(self, data: st.DataObject) -> str:
            """Mostly a fresh id; sometimes one already used (by any kind of entry)."""
            if self.model.entries and data.draw(st.integers(0, 5), label="reuse id") == 0:
                return data.draw(st.sampled_from(sorted(self.model.entries)), label="reused id")
            self.counter += 1
            return f"e{self.counter}"

        def _target(self, data: st.DataObject, wanted: Callable[[MEntry], bool]) -> str:
            """Mostly an entry the operation applies to; sometimes any id, known or not."""
            fitting = [i for i, e in self.model.entries.items() if wanted(e)]
            if fitting and data.draw(st.integers(0, 5), label="any target") != 0:
                return data.draw(st.sampled_from(fitting), label="target")
            return data.draw(st.sampled_from([*sorted(self.model.entries), "nope"]), label="any id")

        # (Hypothesis orders rules by their number of arguments, then name, and favours the first:
        # the cheap clock tick has the most arguments so that it does not crowd out the others.)

        @rule(data=st.data())
        def transfer(self, data: st.DataObject) -> None:
            t = data.draw(transfer_strategy, label="transfer")
            t = with_expiry({**t, "entry_id": self._new_id(data)}, self._next_step_at())
            self._step("transfer", (t,))

        @rule(data=st.data(), size=st.integers(2, 3))
        def linked(self, data: st.DataObject, size: int) -> None:
            ts = [data.draw(transfer_strategy, label="linked") for _ in range(size)]
            at = self._next_step_at()
            self._step("linked", ([with_expiry({**t, "entry_id": self._new_id(data)}, at) for t in ts],))

        @rule(data=st.data(), size=st.integers(1, 6))
        def batch(self, data: st.DataObject, size: int) -> None:
            """Independent entries in one call; now and then an id of the batch comes again, with
            the same content (a retry inside the batch) or another (a conflict)."""
            at = self._next_step_at()
            ts: list[dict[str, Any]] = []
            for _ in range(size):
                if ts and data.draw(st.integers(0, 3), label="repeat an id of the batch") == 0:
                    previous = data.draw(st.sampled_from(ts), label="repeated")
                    if data.draw(st.booleans(), label="same content"):
                        ts.append(dict(previous))
                        continue
                    t = {
                        **data.draw(transfer_strategy, label="other content"),
                        "entry_id": previous["entry_id"],
                    }
                else:
                    t = {**data.draw(transfer_strategy, label="batched"), "entry_id": self._new_id(data)}
                ts.append(with_expiry(t, at))
            self._step("batch", (ts,))

        def _has_pending(self) -> bool:
            return any(e.kind == "pending" and e.status == "pending" for e in self.model.entries.values())

        def _has_reversible(self) -> bool:
            return any(e.kind in REVERSIBLE and not e.reversed for e in self.model.entries.values())

        @precondition(_has_pending)
        @rule(data=st.data())
        def post_pending(self, data: st.DataObject) -> None:
            pending_id = self._target(data, lambda e: e.kind == "pending" and e.status == "pending")
            held = self.model.entries[pending_id].legs if pending_id in self.model.entries else ()
            top = max((n for _, _, n in held), default=400)
            amount = data.draw(st.one_of(st.none(), st.integers(1, top + 10)), label="amount")
            self._step("post", (pending_id, self._new_id(data), amount))

        @precondition(_has_pending)
        @rule(data=st.data())
        def void_pending(self, data: st.DataObject) -> None:
            pending_id = self._target(data, lambda e: e.kind == "pending" and e.status == "pending")
            self._step("void", (pending_id, self._new_id(data)))

        @precondition(_has_reversible)
        @rule(data=st.data(), reason=st.sampled_from(["refund", "error"]))
        def reverse(self, data: st.DataObject, reason: str) -> None:
            entry_id = self._target(data, lambda e: e.kind in REVERSIBLE and not e.reversed)
            self._step("reverse", (entry_id, self._new_id(data), reason))

        @rule(seconds=st.integers(0, 8), sweep=st.booleans(), unused=st.none())
        def tick_and_expire(self, seconds: int, sweep: bool, unused: None) -> None:
            """Let time pass; maybe run the expiry sweep (else past-due holds wait unswept)."""
            db.clock.advance(seconds=seconds)
            self.model.now = db.clock.now()
            if sweep:
                self._step("expire", ())

        @rule()
        def roll_up(self) -> None:
            """Roll the postings so far into the rollups: no balance, read now or as of, may change."""
            if not hasattr(self, "model"):
                return
            with db.ledger(self.tenant) as ledger:
                ledger.roll_up()

        @rule()
        def much_later(self) -> None:
            """Ten minutes pass: reads as of the instants after a rollup's margin use that rollup."""
            db.clock.advance(seconds=600)
            self.model.now = db.clock.now()

        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            """Retry an earlier successful call exactly: it must answer created=False, move nothing."""
            if not self.history:
                return
            op, args = data.draw(st.sampled_from(self.history))
            if op == "expire":
                return
            self._step(op, args)

        # -- invariants ---------------------------------------------------------------------------

        @invariant()
        def ledger_agrees_with_model(self) -> None:
            if not hasattr(self, "model"):
                return
            with db.ledger(self.tenant) as ledger:
                balances = ledger.balances()
                tb = ledger.trial_balance("CNY")
                problems = ledger.verify()
            assert tb.net_minor == 0 and tb.balanced, tb
            assert problems == []
            observed = {
                code: (
                    b.debits_posted_minor,
                    b.credits_posted_minor,
                    b.debits_pending_minor,
                    b.credits_pending_minor,
                )
                for code, b in balances.items()
            }
            assert observed == self.model.balances()
            for code, b in balances.items():
                if ACCOUNTS[code][1] != "none":
                    assert b.available_minor >= 0, b
            self.snapshots.append((db.clock.now(), observed))

        def teardown(self) -> None:
            if not getattr(self, "snapshots", None):
                return
            with db.ledger(self.tenant) as ledger:
                for at, observed in self.snapshots:
                    then = ledger.balances(as_of=at)
                    assert {
                        c: (
                            b.debits_posted_minor,
                            b.credits_posted_minor,
                            b.debits_pending_minor,
                            b.credits_pending_minor,
                        )
                        for c, b in then.items()
                    } == observed, f"as of {at}"

    return LedgerMachine


def test_random_ledger_histories_keep_the_invariants(ledger_db):
    default = 30
    examples = int(os.environ.get("SCENEOS_HYPOTHESIS_EXAMPLES", default))
    run_state_machine_as_test(
        make_machine(ledger_db),
        settings=settings(
            max_examples=examples,
            stateful_step_count=20,
            deadline=None,
            database=None,  # keep no example database in the repository
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
