"""The double-entry ledger every product posts money and points through.

Model
=====
An *account* (per tenant, unique ``code``) has a currency, a type and an optional balance
constraint. A *journal entry* (caller-given ``entry_id``, unique per tenant) holds two or more
*postings*, each a debit or a credit of ``amount_minor`` (integer minor units, > 0) to one account,
balancing per currency. Entries and postings are append-only; a mistake is corrected by
:meth:`Ledger.reverse`, never by an update.

Two-phase entries (TigerBeetle's pending transfers): a pending entry's postings count as *pending*
(they reduce the available balance, not the posted one) until it is resolved exactly once: posted
(:meth:`Ledger.post_pending`, all of it or, for a two-posting entry, part of it with the rest
released), voided (:meth:`Ledger.void_pending`) or expired at ``expires_at``
(:meth:`Ledger.expire_pending`). Resolving writes the pending entry's status row and, for a post,
a new entry of ordinary postings; the pending postings themselves never change.

Idempotency: every operation that has a caller id (entry, resolution, reversal) is an entry row
with a SHA-256 ``fingerprint`` of its canonical content. The same id with the same content returns
the stored result with ``created=False`` and moves nothing; the same id with other content raises
:class:`EntryExistsWithDifferentContent` naming the first differing field (``kind``,
``postings``, ``amount_minor``, ``expires_at``, ``pending_entry_id``, ``reverses_entry_id``,
``reason``, ``description``, ``metadata``).

Hot accounts and locking
========================
The bank's own accounts (settlement, income, the points pool) take part in almost every entry.
If every entry locked and rewrote one balance row of such an account, all traffic of a tenant
would queue behind that row lock, and the ledger's throughput would be one transaction at a time.

So the ledger keeps a running balance row only where it needs one to *decide* something:

* A **constrained** account (``debits_must_not_exceed_credits`` / ``credits_must_not_exceed_debits``:
  a customer's wallet, a credit line) must be checked against its limit atomically with the write.
  It has a ``ledger_balances`` row that every entry touching it reads with ``SELECT ... FOR NO KEY
  UPDATE`` and updates in the same transaction. Locks are taken in ascending account id order
  (for :meth:`Ledger.post_linked`, for every account of the whole batch up front), so two entries
  that share accounts never wait on each other in a cycle. Contention is per customer account,
  which is what a wallet's semantics need anyway.
* An **unconstrained** account (the bank's settlement, income, the merchant payable...) has no
  limit to check, so an entry takes no lock on it and writes nothing but its posting rows: inserts
  from many processes do not conflict. Its balance is *derived* from postings by an indexed sum
  (``ix_ledger_postings_account_id`` on ``(account_id, created_at)``). A rollup (periodic
  checkpoint plus the postings after it) can make those reads O(new postings) later without
  changing this write path.

Why row locks and not ``SERIALIZABLE`` with retry: the only decision that needs isolation is "does
this account stay within its limit", which is exactly one row per constrained account. Locking
that row makes concurrent writers of the *same* account wait (never fail), while writers of
different accounts, and every writer of an unconstrained hot account, proceed in parallel under
READ COMMITTED. Serializable isolation would detect the same conflicts after the fact by aborting
and would also abort on false positives (predicate locks on the shared posting index of a hot
account), so under load the hot account would turn into a retry storm. On SQLite the kernel's
engine takes ``BEGIN IMMEDIATE`` on every transaction, so writers are serialized and ``FOR
UPDATE`` (which SQLite does not have) is not needed.

Duplicate ids racing on PostgreSQL hit the ``(tenant_id, entry_id)`` unique constraint; the
losing writer's savepoint is rolled back and it answers like a retry. Double resolution of a pending
entry is prevented by locking its status row (and by a unique key on the resolution's reference),
double reversal by a unique key on the reversal's reference.

Atomicity: every operation runs all its checks before writing and writes inside a SAVEPOINT
(``Session.begin_nested``), so an error leaves the caller's unit of work as it was. The service
never commits: the caller owns the session (usually ``core.db.tenant_session``), whose tenant guard
stamps and filters every row.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import Clock
from core.db import tenant_of
from core.money import validate_currency
from infra.ledger.errors import (
    AccountExistsWithDifferentAttributes,
    AlreadyReversed,
    CurrencyMismatch,
    EntryExistsWithDifferentContent,
    InsufficientFunds,
    InvalidAccount,
    InvalidAmount,
    InvalidEntry,
    InvalidExpiry,
    LedgerError,
    LedgerInvariantViolated,
    LedgerNeedsTenant,
    NotPending,
    NotReversible,
    PartialPostNotAllowed,
    PendingAlreadyResolved,
    PendingExpired,
    PostAmountExceedsPending,
    TooFewPostings,
    UnbalancedEntry,
    UnknownAccount,
    UnknownEntry,
)
from infra.ledger.models import (
    AccountType,
    BalanceConstraint,
    EntryKind,
    EntryStatus,
    LedgerAccount,
    LedgerBalance,
    LedgerEntry,
    LedgerPending,
    LedgerPosting,
    OwnerType,
    Side,
)

T = TypeVar("T")

MAX_AMOUNT_MINOR = 2**63 - 1  # BIGINT
MAX_ID_LENGTH = 128
MAX_DESCRIPTION_LENGTH = 1000


# --- inputs --------------------------------------------------------------------------------------


def _check_amount(value: Any, what: str) -> int:
    if type(value) is not int:  # rejects bool (a subclass of int), float, Decimal
        raise InvalidAmount(f"{what}: amount_minor must be an integer number of minor units, not {value!r}")
    if value <= 0:
        raise InvalidAmount(f"{what}: amount_minor must be greater than zero, not {value}")
    if value > MAX_AMOUNT_MINOR:
        raise InvalidAmount(f"{what}: amount_minor {value} exceeds the maximum {MAX_AMOUNT_MINOR}")
    return value


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEntry(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEntry(f"{what} {value[:40]!r}... is longer than {MAX_ID_LENGTH} characters")
    return value


def _check_description(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidEntry(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidEntry(f"{what} is longer than {MAX_DESCRIPTION_LENGTH} characters")
    return value


def _canonical_metadata(value: Any, what: str) -> dict[str, Any] | None:
    """JSON round trip with sorted keys, so the stored value compares equal to a retry's."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEntry(f"{what}: metadata must be a mapping (JSON object), not {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), sort_keys=True, allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise InvalidEntry(f"{what}: metadata must be JSON-serializable: {exc}") from None


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidExpiry(f"{what} must be an aware datetime (take time from the clock), not {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Posting:
    """One debit or credit of ``amount_minor`` to the account with code ``account``.

    ``currency`` is optional; when given it must equal the account's currency (a caller stating
    what it thinks it moves is checked, as TigerBeetle checks a transfer's ledger).
    """

    account: str
    amount_minor: int
    side: Side
    currency: str | None = None

    def __post_init__(self) -> None:
        _check_id(self.account, "posting account")
        _check_amount(self.amount_minor, f"posting to {self.account}")
        try:
            object.__setattr__(self, "side", Side(self.side))
        except ValueError:
            raise InvalidEntry(
                f"posting to {self.account}: side must be 'debit' or 'credit', not {self.side!r}"
            ) from None
        if self.currency is not None:
            try:
                object.__setattr__(self, "currency", validate_currency(str(self.currency)))
            except ValueError as exc:
                raise CurrencyMismatch(f"posting to {self.account}: {exc}") from None

    @classmethod
    def debit(cls, account: str, amount_minor: int, currency: str | None = None) -> Posting:
        return cls(account, amount_minor, Side.DEBIT, currency)

    @classmethod
    def credit(cls, account: str, amount_minor: int, currency: str | None = None) -> Posting:
        return cls(account, amount_minor, Side.CREDIT, currency)


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """A journal entry to post. ``pending=True`` reserves (two-phase); ``expires_at`` is only for
    pending entries. ``metadata`` is a JSON object stored with the entry and part of its content."""

    entry_id: str
    postings: Sequence[Posting]
    description: str = ""
    metadata: Mapping[str, Any] | None = None
    pending: bool = False
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_id(self.entry_id, "entry_id")
        postings = tuple(self.postings)
        for posting in postings:
            if not isinstance(posting, Posting):
                raise InvalidEntry(
                    f"entry {self.entry_id}: postings must be Posting objects, not {posting!r}"
                )
        if len(postings) < 2:
            raise TooFewPostings(
                f"entry {self.entry_id} has {len(postings)} posting(s); an entry needs at least 2"
            )
        object.__setattr__(self, "postings", postings)
        _check_description(self.description, f"entry {self.entry_id}: description")
        object.__setattr__(self, "metadata", _canonical_metadata(self.metadata, f"entry {self.entry_id}"))
        if not isinstance(self.pending, bool):
            raise InvalidEntry(f"entry {self.entry_id}: pending must be a bool")
        if self.expires_at is not None:
            if not self.pending:
                raise InvalidExpiry(f"entry {self.entry_id}: expires_at is only for pending entries")
            object.__setattr__(
                self, "expires_at", _utc(self.expires_at, f"entry {self.entry_id}: expires_at")
            )


# --- outputs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    code: str
    currency: str
    type: AccountType
    owner_type: OwnerType
    owner_id: str
    constraint: BalanceConstraint
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PostingResult:
    account: str
    side: Side
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class EntryResult:
    """A stored entry. ``created`` is False when the call was a retry of an existing id.

    ``status`` is the entry's current status: a pending entry is ``pending`` until resolved, then
    ``posted``, ``voided`` or ``expired``; a void record is ``voided``; every other kind ``posted``.
    For a pending entry, ``resolution_entry_id`` names the post/void entry that resolved it.
    """

    entry_id: str
    created: bool
    kind: EntryKind
    status: EntryStatus
    postings: tuple[PostingResult, ...]
    created_at: datetime
    description: str = ""
    metadata: dict[str, Any] | None = None
    expires_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution_entry_id: str | None = None
    pending_entry_id: str | None = None
    reverses_entry_id: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's balance now (``as_of`` None) or as of an instant. Amounts in minor units.

    ``net_posted_minor`` is signed in the account's normal direction (debits minus credits for
    assets and expenses, credits minus debits for liabilities, equity and income).
    ``available_minor`` is what the account's constraint still allows (for
    ``debits_must_not_exceed_credits``: credits posted - debits posted - debits pending; symmetric
    for the other); for an unconstrained account, the normal-direction balance less pending
    outflows.
    """

    account: str
    currency: str
    type: AccountType
    constraint: BalanceConstraint
    debits_posted_minor: int
    credits_posted_minor: int
    debits_pending_minor: int
    credits_pending_minor: int
    as_of: datetime | None = None

    @property
    def net_posted_minor(self) -> int:
        net = self.debits_posted_minor - self.credits_posted_minor
        return net if self.type.debit_normal else -net

    @property
    def available_minor(self) -> int:
        if self.constraint is BalanceConstraint.DEBITS_MUST_NOT_EXCEED_CREDITS:
            credit_side = True
        elif self.constraint is BalanceConstraint.CREDITS_MUST_NOT_EXCEED_DEBITS:
            credit_side = False
        else:
            credit_side = not self.type.debit_normal
        if credit_side:
            return self.credits_posted_minor - self.debits_posted_minor - self.debits_pending_minor
        return self.debits_posted_minor - self.credits_posted_minor - self.credits_pending_minor


@dataclass(frozen=True, slots=True)
class TrialBalance:
    """Posted debits and credits of every account of the tenant in one currency.
    ``by_type`` holds debits minus credits per account type; ``net_minor`` is always 0."""

    currency: str
    debits_minor: int
    credits_minor: int
    by_type: Mapping[AccountType, int] = field(default_factory=dict)
    as_of: datetime | None = None

    @property
    def net_minor(self) -> int:
        return self.debits_minor - self.credits_minor

    @property
    def balanced(self) -> bool:
        return self.net_minor == 0 and sum(self.by_type.values()) == 0


# --- internals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Acct:
    """Immutable snapshot of an account row (accounts never change once opened)."""

    id: int
    code: str
    currency: str
    type: AccountType
    constraint: BalanceConstraint

    @property
    def constrained(self) -> bool:
        return self.constraint is not BalanceConstraint.NONE


@dataclass(slots=True)
class _Delta:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def add(self, side: Side, amount: int, *, pending: bool) -> None:
        if side is Side.DEBIT:
            if pending:
                self.debits_pending += amount
            else:
                self.debits_posted += amount
        elif pending:
            self.credits_pending += amount
        else:
            self.credits_posted += amount


_PlannedPosting = tuple[_Acct, Side, int]  # account, side, amount_minor

_FIELD_ORDER = (
    "kind",
    "pending_entry_id",
    "reverses_entry_id",
    "postings",
    "amount_minor",
    "expires_at",
    "reason",
    "description",
    "metadata",
)


def _fingerprint(content: Mapping[str, Any]) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _postings_content(postings: Iterable[tuple[str, str, int]]) -> list[list[Any]]:
    return sorted([account, str(side), amount] for account, side, amount in postings)


def _first_difference(entry_id: str, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Raise EntryExistsWithDifferentContent for the first field (in a fixed order) that differs."""
    for name in _FIELD_ORDER:
        if name not in stored and name not in given:
            continue
        old, new = stored.get(name), given.get(name)
        if old == new:
            continue
        if name == "postings" and old is not None and new is not None:
            # Same accounts and sides but other amounts: say "amount_minor", like TigerBeetle.
            if [p[:2] for p in old] == [p[:2] for p in new]:
                raise EntryExistsWithDifferentContent(entry_id, "amount_minor", old, new)
        raise EntryExistsWithDifferentContent(entry_id, name, old, new)
    raise LedgerInvariantViolated(
        f"entry {entry_id}: fingerprints differ but the canonical content is equal (fingerprint changed?)"
    )


def _invariant(condition: bool, message: str) -> None:
    """TigerBeetle-style assertion that stays on under ``python -O``."""
    if not condition:
        raise LedgerInvariantViolated(f"ledger invariant violated: {message}")


def _int(value: Any) -> int:
    return 0 if value is None else int(value)  # PostgreSQL's SUM(bigint) is numeric


# --- the service ---------------------------------------------------------------------------------


class Ledger:
    """The ledger of the session's tenant. Never commits; the caller owns the unit of work."""

    def __init__(self, session: Session, clock: Clock) -> None:
        tenant_id = tenant_of(session)
        if not tenant_id:
            raise LedgerNeedsTenant(
                "the ledger needs a tenant-bound session (core.db.tenant_session); got one without a tenant"
            )
        self.session = session
        self.clock = clock
        self.tenant_id = tenant_id
        self._by_code: dict[str, _Acct] = {}
        self._by_id: dict[int, _Acct] = {}

    # --- accounts --------------------------------------------------------------------------------

    def open_account(
        self,
        code: str,
        currency: str,
        type: AccountType | str,
        owner_type: OwnerType | str = OwnerType.BANK,
        owner_id: str = "",
        constraint: BalanceConstraint | str = BalanceConstraint.NONE,
    ) -> Account:
        """Open an account, or return it if ``code`` exists with the same attributes.

        Raises :class:`AccountExistsWithDifferentAttributes` (naming the field) if it exists with
        other attributes, :class:`InvalidAccount` for malformed ones.
        """
        wanted = self._account_attributes(code, currency, type, owner_type, owner_id, constraint)
        existing = self._account_row(code)
        if existing is not None:
            return self._same_account(existing, wanted)
        now = self.clock.now()

        def write() -> Account:
            row = LedgerAccount(created_at=now, **wanted)
            self.session.add(row)
            self.session.flush()
            if wanted["balance_constraint"] != BalanceConstraint.NONE:
                self.session.add(
                    LedgerBalance(
                        account_id=row.id,
                        debits_posted_minor=0,
                        credits_posted_minor=0,
                        debits_pending_minor=0,
                        credits_pending_minor=0,
                        updated_at=now,
                    )
                )
                self.session.flush()
            self._remember(row)
            return self._account(row)

        def on_conflict() -> Account | None:
            row = self._account_row(code)
            return None if row is None else self._same_account(row, wanted)

        return self._write(write, on_conflict)

    def get_account(self, code: str) -> Account:
        row = self._account_row(code)
        if row is None:
            raise UnknownAccount(code)
        return self._account(row)

    def accounts(self) -> list[Account]:
        rows = self.session.scalars(select(LedgerAccount).order_by(LedgerAccount.code)).all()
        return [self._account(row) for row in rows]

    # --- entries ---------------------------------------------------------------------------------

    def post(self, draft: EntryDraft) -> EntryResult:
        """Post an entry (or a pending one). Idempotent on ``draft.entry_id``."""
        if not isinstance(draft, EntryDraft):
            raise InvalidEntry(f"post takes an EntryDraft, not {type(draft).__name__}")
        return self._post_draft(draft, self.clock.now(), locked=None)

    def post_linked(self, drafts: Sequence[EntryDraft]) -> list[EntryResult]:
        """Post entries that succeed or fail together, in order (a later one may spend what an
        earlier one credited). On any error nothing of the batch is written and the error carries
        ``linked_index``, the position of the failing entry."""
        drafts = list(drafts)
        for draft in drafts:
            if not isinstance(draft, EntryDraft):
                raise InvalidEntry(f"post_linked takes EntryDraft objects, not {type(draft).__name__}")
        if not drafts:
            return []
        now = self.clock.now()
        codes = {p.account for d in drafts for p in d.postings}
        known = self._accounts(codes, strict=False)
        with self.session.begin_nested():
            # Lock every constrained account of the batch up front, in id order, so two linked
            # batches sharing accounts cannot deadlock.
            locked = self._lock_balances(a.id for a in known.values() if a.constrained)
            results: list[EntryResult] = []
            for index, draft in enumerate(drafts):
                try:
                    results.append(self._post_draft(draft, now, locked=locked))
                except LedgerError as exc:
                    exc.linked_index = index
                    raise
            return results

    def post_pending(
        self,
        pending_entry_id: str,
        resolution_id: str,
        amount_minor: int | None = None,
        *,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> EntryResult:
        """Post a pending entry, fully (``amount_minor`` None) or partially (two-posting entries
        only; the rest is released). Writes entry ``resolution_id`` of ordinary postings."""
        _check_id(pending_entry_id, "pending_entry_id")
        _check_id(resolution_id, "resolution_id")
        if amount_minor is not None:
            _check_amount(amount_minor, f"post of pending entry {pending_entry_id}")
        _check_description(description, f"entry {resolution_id}: description")
        meta = _canonical_metadata(metadata, f"entry {resolution_id}")
        return self._resolve(
            EntryKind.POST_PENDING, pending_entry_id, resolution_id, amount_minor, description, meta
        )

    def void_pending(
        self,
        pending_entry_id: str,
        resolution_id: str,
        *,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> EntryResult:
        """Release a pending entry. Writes a record ``resolution_id`` (a void has no postings)."""
        _check_id(pending_entry_id, "pending_entry_id")
        _check_id(resolution_id, "resolution_id")
        _check_description(description, f"entry {resolution_id}: description")
        meta = _canonical_metadata(metadata, f"entry {resolution_id}")
        return self._resolve(EntryKind.VOID_PENDING, pending_entry_id, resolution_id, None, description, meta)

    def expire_pending(self) -> list[str]:
        """Expire every pending entry whose ``expires_at`` is at or before the clock's now and
        release its amounts. Returns the expired entry ids. Safe to run concurrently."""
        now = self.clock.now()
        due = self.session.execute(
            select(LedgerPending, LedgerEntry.entry_id)
            .join(LedgerEntry, LedgerEntry.id == LedgerPending.entry_pk)
            .where(LedgerPending.status == EntryStatus.PENDING, LedgerPending.expires_at <= now)
            .order_by(LedgerPending.entry_pk)
            .with_for_update(of=LedgerPending)
            .execution_options(populate_existing=True)
        ).all()
        # PostgreSQL re-checks the WHERE clause of a row it waited for, but be explicit.
        due = [(row, entry_id) for row, entry_id in due if row.status == EntryStatus.PENDING]
        if not due:
            return []
        by_entry = self._postings_of([row.entry_pk for row, _ in due])
        deltas: dict[int, _Delta] = defaultdict(_Delta)
        for row, _ in due:
            for acct, side, amount in by_entry.get(row.entry_pk, []):
                deltas[acct.id].add(side, -amount, pending=True)

        def write() -> list[str]:
            locked = self._lock_balances(deltas)
            new_rows = self._checked_balances(locked, deltas)
            for row, _ in due:
                row.status = EntryStatus.EXPIRED
                row.resolved_at = now
            self._apply_balances(locked, new_rows, now)
            self.session.flush()
            return [entry_id for _, entry_id in due]

        return self._write(write, lambda: None)

    def reverse(self, entry_id: str, reversal_id: str, reason: str) -> EntryResult:
        """Post the mirror of entry ``entry_id`` as entry ``reversal_id``. An entry is reversed at
        most once; pending entries are voided instead."""
        _check_id(entry_id, "entry_id")
        _check_id(reversal_id, "reversal_id")
        _check_description(reason, f"reversal {reversal_id}: reason")
        if not reason.strip():
            raise InvalidEntry(f"reversal {reversal_id} of entry {entry_id} needs a reason")
        now = self.clock.now()
        content = {"kind": str(EntryKind.REVERSAL), "reverses_entry_id": entry_id, "reason": reason}
        fingerprint = _fingerprint(content)
        existing = self._entry_row(reversal_id)
        if existing is not None:
            return self._replay(existing, content, fingerprint)
        original = self._entry_row(entry_id)
        if original is None:
            raise UnknownEntry(entry_id)
        if original.kind in (EntryKind.PENDING, EntryKind.VOID_PENDING):
            hint = "void it instead" if original.kind == EntryKind.PENDING else "it has no postings"
            raise NotReversible(f"entry {entry_id} is a {original.kind} entry and cannot be reversed; {hint}")
        self._check_not_reversed(original)
        planned = [
            (acct, side.opposite, amount)
            for acct, side, amount in self._postings_of([original.id])[original.id]
        ]
        deltas = self._deltas(planned, pending=False)

        def write() -> EntryResult:
            locked = self._lock_balances(deltas)
            if locked:  # we may have waited for a concurrent reversal: check again under the lock
                again = self._entry_row(reversal_id)
                if again is not None:
                    return self._replay(again, content, fingerprint)
                self._check_not_reversed(original)
            new_rows = self._checked_balances(locked, deltas)
            entry = self._insert_entry(
                reversal_id, EntryKind.REVERSAL, reason, None, fingerprint, now, reverses_entry_pk=original.id
            )
            self._insert_postings(entry, planned, pending=False, now=now)
            self._apply_balances(locked, new_rows, now)
            self.session.flush()
            return self._new_result(entry, planned, EntryStatus.POSTED, reverses_entry_id=entry_id)

        def on_conflict() -> EntryResult | None:
            again = self._entry_row(reversal_id)
            if again is not None:
                return self._replay(again, content, fingerprint)
            self._check_not_reversed(original)
            return None

        return self._write(write, on_conflict)

    def get_entry(self, entry_id: str) -> EntryResult:
        row = self._entry_row(entry_id)
        if row is None:
            raise UnknownEntry(entry_id)
        return self._stored_result(row, created=False)

    # --- balances --------------------------------------------------------------------------------

    def balance(self, account: str, *, as_of: datetime | None = None) -> Balance:
        return self.balances([account], as_of=as_of)[account]

    def balances(
        self, accounts: Iterable[str] | None = None, *, as_of: datetime | None = None
    ) -> dict[str, Balance]:
        """Balances of the given accounts (all of the tenant's when None), now or ``as_of``.

        Now: a constrained account's balance row; an unconstrained account's sums of postings.
        As of an instant: every account's sums of postings created at or before it, with pending
        amounts counted while their entry was pending at that instant.
        """
        if accounts is None:
            rows = self.session.scalars(select(LedgerAccount)).all()
            accts = {row.code: self._remember(row) for row in rows}
        else:
            accts = self._accounts(list(accounts), strict=True)
        if as_of is not None:
            as_of = _utc(as_of, "as_of")
        sums: dict[int, _Delta] = {}
        derive = [a for a in accts.values() if as_of is not None or not a.constrained]
        if derive:
            sums.update(self._derived([a.id for a in derive], as_of))
        stored = [a.id for a in accts.values() if as_of is None and a.constrained]
        if stored:
            fresh = (
                select(LedgerBalance)
                .where(LedgerBalance.account_id.in_(stored))
                .execution_options(populate_existing=True)
            )
            for row in self.session.scalars(fresh):
                sums[row.account_id] = _Delta(
                    row.debits_posted_minor,
                    row.credits_posted_minor,
                    row.debits_pending_minor,
                    row.credits_pending_minor,
                )
        result: dict[str, Balance] = {}
        for code, acct in accts.items():
            s = sums.get(acct.id, _Delta())
            result[code] = Balance(
                account=code,
                currency=acct.currency,
                type=acct.type,
                constraint=acct.constraint,
                debits_posted_minor=s.debits_posted,
                credits_posted_minor=s.credits_posted,
                debits_pending_minor=s.debits_pending,
                credits_pending_minor=s.credits_pending,
                as_of=as_of,
            )
        return result

    def trial_balance(self, currency: str, *, as_of: datetime | None = None) -> TrialBalance:
        """Posted debits and credits over all of the tenant's accounts in ``currency``."""
        try:
            currency = validate_currency(currency)
        except ValueError as exc:
            raise CurrencyMismatch(str(exc)) from None
        stmt = (
            select(LedgerAccount.type, LedgerPosting.side, func.sum(LedgerPosting.amount_minor))
            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .where(LedgerPosting.currency == currency, LedgerPosting.pending.is_(False))
            .group_by(LedgerAccount.type, LedgerPosting.side)
        )
        if as_of is not None:
            as_of = _utc(as_of, "as_of")
            stmt = stmt.where(LedgerPosting.created_at <= as_of)
        by_type = dict.fromkeys(AccountType, 0)
        debits = credits = 0
        for type_, side, total in self.session.execute(stmt):
            amount = _int(total)
            if side == Side.DEBIT:
                debits += amount
                by_type[AccountType(type_)] += amount
            else:
                credits += amount
                by_type[AccountType(type_)] -= amount
        return TrialBalance(currency, debits, credits, by_type, as_of)

    def verify(self) -> list[str]:
        """Audit the tenant's ledger; returns the problems found (empty when sound): balance rows
        equal to the sums of postings, every entry balanced per currency, every trial balance 0."""
        problems: list[str] = []
        rows = {r.account_id: r for r in self.session.scalars(select(LedgerBalance))}
        if rows:
            derived = self._derived(list(rows), None)
            for account_id, row in rows.items():
                d = derived.get(account_id, _Delta())
                stored = (
                    row.debits_posted_minor,
                    row.credits_posted_minor,
                    row.debits_pending_minor,
                    row.credits_pending_minor,
                )
                summed = (d.debits_posted, d.credits_posted, d.debits_pending, d.credits_pending)
                if stored != summed:
                    code = self._account_by_id(account_id).code
                    problems.append(f"balance row of {code} is {stored} but its postings sum to {summed}")
        signed = case(
            (LedgerPosting.side == Side.DEBIT, LedgerPosting.amount_minor), else_=-LedgerPosting.amount_minor
        )
        unbalanced = self.session.execute(
            select(LedgerEntry.entry_id, LedgerPosting.currency, func.sum(signed))
            .join(LedgerEntry, LedgerEntry.id == LedgerPosting.entry_pk)
            .group_by(LedgerEntry.entry_id, LedgerPosting.currency)
            .having(func.sum(signed) != 0)
        ).all()
        problems += [f"entry {e} is unbalanced in {c} by {_int(n)}" for e, c, n in unbalanced]
        currencies = self.session.scalars(select(LedgerPosting.currency).distinct()).all()
        for currency in currencies:
            tb = self.trial_balance(currency)
            if not tb.balanced:
                problems.append(f"trial balance in {currency} is off by {tb.net_minor}")
        return problems

    # --- posting internals -----------------------------------------------------------------------

    def _post_draft(
        self, draft: EntryDraft, now: datetime, *, locked: dict[int, LedgerBalance] | None
    ) -> EntryResult:
        kind = EntryKind.PENDING if draft.pending else EntryKind.STANDARD
        content = {
            "kind": str(kind),
            "postings": _postings_content((p.account, p.side, p.amount_minor) for p in draft.postings),
            "expires_at": _iso(draft.expires_at),
            "description": draft.description,
            "metadata": draft.metadata,
        }
        fingerprint = _fingerprint(content)
        existing = self._entry_row(draft.entry_id)
        if existing is not None:
            return self._replay(existing, content, fingerprint)

        accts = self._accounts([p.account for p in draft.postings], strict=True)
        planned: list[_PlannedPosting] = []
        for p in draft.postings:
            acct = accts[p.account]
            if p.currency is not None and p.currency != acct.currency:
                raise CurrencyMismatch(
                    f"currency mismatch in entry {draft.entry_id}: posting to account {acct.code} is in "
                    f"{p.currency} but the account is in {acct.currency}"
                )
            planned.append((acct, p.side, p.amount_minor))
        self._check_balanced(draft.entry_id, planned)
        if draft.expires_at is not None and draft.expires_at <= now:
            raise InvalidExpiry(
                f"entry {draft.entry_id}: expires_at {_iso(draft.expires_at)} is not after now ({_iso(now)})"
            )
        pending = draft.pending
        deltas = self._deltas(planned, pending=pending)

        def write() -> EntryResult:
            rows = locked if locked is not None else {}
            missing = [i for i in deltas if self._account_by_id(i).constrained and i not in rows]
            if missing:
                rows = {**rows, **self._lock_balances(missing)}
                # We may have waited for another writer, which may have posted this very id.
                again = self._entry_row(draft.entry_id)
                if again is not None:
                    return self._replay(again, content, fingerprint)
            new_rows = self._checked_balances(rows, deltas)
            entry = self._insert_entry(
                draft.entry_id, kind, draft.description, draft.metadata, fingerprint, now
            )
            self._insert_postings(entry, planned, pending=pending, now=now)
            if pending:
                self.session.add(
                    LedgerPending(
                        entry_pk=entry.id,
                        status=EntryStatus.PENDING,
                        expires_at=draft.expires_at,
                        created_at=now,
                    )
                )
            self._apply_balances(rows, new_rows, now)
            self.session.flush()
            status = EntryStatus.PENDING if pending else EntryStatus.POSTED
            return self._new_result(entry, planned, status, expires_at=draft.expires_at)

        def on_conflict() -> EntryResult | None:
            again = self._entry_row(draft.entry_id)
            return None if again is None else self._replay(again, content, fingerprint)

        return self._write(write, on_conflict)

    def _resolve(
        self,
        kind: EntryKind,
        pending_entry_id: str,
        resolution_id: str,
        amount_minor: int | None,
        description: str,
        metadata: dict[str, Any] | None,
    ) -> EntryResult:
        now = self.clock.now()
        existing = self._entry_row(resolution_id)
        target = self._entry_row(pending_entry_id)
        held = (
            self._postings_of([target.id])[target.id]
            if target is not None and target.kind == EntryKind.PENDING
            else []
        )
        content: dict[str, Any] = {"kind": str(kind), "pending_entry_id": pending_entry_id}
        if kind == EntryKind.POST_PENDING:
            # Canonical amount: what is actually posted for a two-posting entry (None = all of a
            # multi-posting one), so "full" and the explicit full amount are the same content.
            full = amount_minor is None or (len(held) == 2 and amount_minor == held[0][2])
            content["amount_minor"] = (held[0][2] if len(held) == 2 else None) if full else amount_minor
        content["description"] = description
        content["metadata"] = metadata
        fingerprint = _fingerprint(content)
        if existing is not None:
            return self._replay(existing, content, fingerprint)
        if target is None:
            raise UnknownEntry(pending_entry_id)
        if target.kind != EntryKind.PENDING:
            raise NotPending(f"entry {pending_entry_id} is a {target.kind} entry, not a pending one")

        status_row = self.session.scalars(
            select(LedgerPending)
            .where(LedgerPending.entry_pk == target.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if status_row.status != EntryStatus.PENDING:
            if status_row.resolution_entry_pk is not None:
                winner = self.session.get(LedgerEntry, status_row.resolution_entry_pk)
                if winner is not None and winner.entry_id == resolution_id:  # raced with our own retry
                    return self._replay(winner, content, fingerprint)
            by = ""
            if status_row.resolution_entry_pk is not None:
                winner = self.session.get(LedgerEntry, status_row.resolution_entry_pk)
                by = f" by entry {winner.entry_id}" if winner is not None else ""
            raise PendingAlreadyResolved(
                f"pending entry {pending_entry_id} was already {status_row.status}{by}; "
                f"a pending entry resolves at most once"
            )
        if status_row.expires_at is not None and now >= status_row.expires_at:
            raise PendingExpired(
                f"pending entry {pending_entry_id} expired at {_iso(status_row.expires_at)}; "
                f"it can no longer be {'posted' if kind == EntryKind.POST_PENDING else 'voided'}"
            )

        planned: list[_PlannedPosting] = []
        if kind == EntryKind.POST_PENDING:
            if amount_minor is not None and len(held) != 2:
                raise PartialPostNotAllowed(
                    f"pending entry {pending_entry_id} has {len(held)} postings; only a two-posting "
                    f"pending entry can be posted partially (give no amount to post it all)"
                )
            if amount_minor is not None and amount_minor > held[0][2]:
                raise PostAmountExceedsPending(
                    f"cannot post {amount_minor} of pending entry {pending_entry_id}: it holds only "
                    f"{held[0][2]} ({held[0][0].currency} minor units)"
                )
            planned = [
                (acct, side, amount if amount_minor is None else amount_minor) for acct, side, amount in held
            ]
            self._check_balanced(resolution_id, planned)
        deltas = self._deltas(planned, pending=False)
        for acct, side, amount in held:
            deltas[acct.id].add(side, -amount, pending=True)

        def write() -> EntryResult:
            locked = self._lock_balances(deltas)
            new_rows = self._checked_balances(locked, deltas)
            entry = self._insert_entry(
                resolution_id, kind, description, metadata, fingerprint, now, pending_entry_pk=target.id
            )
            self._insert_postings(entry, planned, pending=False, now=now)
            status_row.status = EntryStatus.POSTED if kind == EntryKind.POST_PENDING else EntryStatus.VOIDED
            status_row.resolved_at = now
            status_row.resolution_entry_pk = entry.id
            self._apply_balances(locked, new_rows, now)
            self.session.flush()
            status = EntryStatus.POSTED if kind == EntryKind.POST_PENDING else EntryStatus.VOIDED
            return self._new_result(entry, planned, status, pending_entry_id=pending_entry_id)

        def on_conflict() -> EntryResult | None:
            again = self._entry_row(resolution_id)
            if again is not None:
                return self._replay(again, content, fingerprint)
            raise PendingAlreadyResolved(f"pending entry {pending_entry_id} was resolved concurrently")

        return self._write(write, on_conflict)

    def _check_balanced(self, entry_id: str, planned: Sequence[_PlannedPosting]) -> None:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for acct, side, amount in planned:
            totals[acct.currency][0 if side is Side.DEBIT else 1] += amount
        for currency, (debits, credits) in sorted(totals.items()):
            if debits != credits:
                raise UnbalancedEntry(
                    f"entry {entry_id} is unbalanced in {currency}: debits {debits}, credits {credits} "
                    f"({currency} minor units); debits and credits must be equal per currency"
                )

    @staticmethod
    def _deltas(planned: Iterable[_PlannedPosting], *, pending: bool) -> defaultdict[int, _Delta]:
        deltas: defaultdict[int, _Delta] = defaultdict(_Delta)
        for acct, side, amount in planned:
            deltas[acct.id].add(side, amount, pending=pending)
        return deltas

    def _lock_balances(self, account_ids: Iterable[int]) -> dict[int, LedgerBalance]:
        """``SELECT ... FOR NO KEY UPDATE`` of the balance rows of the constrained accounts among
        ``account_ids``, in ascending id order (the global lock order)."""
        ids = sorted({i for i in account_ids if self._account_by_id(i).constrained})
        if not ids:
            return {}
        rows = self.session.scalars(
            select(LedgerBalance)
            .where(LedgerBalance.account_id.in_(ids))
            .order_by(LedgerBalance.account_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).all()
        found = {row.account_id: row for row in rows}
        _invariant(
            set(found) == set(ids),
            f"constrained accounts {sorted(set(ids) - set(found))} have no balance row",
        )
        return found

    def _checked_balances(
        self, locked: Mapping[int, LedgerBalance], deltas: Mapping[int, _Delta]
    ) -> dict[int, _Delta]:
        """New balances of the locked constrained accounts after ``deltas``; raises
        :class:`InsufficientFunds` if one would pass its limit. Writes nothing."""
        new_rows: dict[int, _Delta] = {}
        for account_id in sorted(deltas):
            acct = self._account_by_id(account_id)
            if not acct.constrained:
                continue
            row = locked.get(account_id)
            _invariant(
                row is not None, f"account {acct.code} is constrained but its balance row is not locked"
            )
            assert row is not None
            d = deltas[account_id]
            old = _Delta(
                row.debits_posted_minor,
                row.credits_posted_minor,
                row.debits_pending_minor,
                row.credits_pending_minor,
            )
            new = _Delta(
                old.debits_posted + d.debits_posted,
                old.credits_posted + d.credits_posted,
                old.debits_pending + d.debits_pending,
                old.credits_pending + d.credits_pending,
            )
            if acct.constraint is BalanceConstraint.DEBITS_MUST_NOT_EXCEED_CREDITS:
                available = old.credits_posted - old.debits_posted - old.debits_pending
                needed = (d.debits_posted + d.debits_pending) - d.credits_posted
            else:
                available = old.debits_posted - old.credits_posted - old.credits_pending
                needed = (d.credits_posted + d.credits_pending) - d.debits_posted
            if needed > 0 and needed > available:
                raise InsufficientFunds(
                    acct.code,
                    available_minor=available,
                    needed_minor=needed,
                    currency=acct.currency,
                    constraint=str(acct.constraint),
                )
            new_rows[account_id] = new
        return new_rows

    def _apply_balances(
        self, locked: Mapping[int, LedgerBalance], new_rows: Mapping[int, _Delta], now: datetime
    ) -> None:
        for account_id, new in new_rows.items():
            acct = self._account_by_id(account_id)
            _invariant(
                min(new.debits_posted, new.credits_posted, new.debits_pending, new.credits_pending) >= 0,
                f"balance of {acct.code} would go negative: {new}",
            )
            if acct.constraint is BalanceConstraint.DEBITS_MUST_NOT_EXCEED_CREDITS:
                within = new.debits_posted + new.debits_pending <= new.credits_posted
            else:
                within = new.credits_posted + new.credits_pending <= new.debits_posted
            _invariant(within, f"account {acct.code} would pass its limit {acct.constraint}: {new}")
            row = locked[account_id]
            row.debits_posted_minor = new.debits_posted
            row.credits_posted_minor = new.credits_posted
            row.debits_pending_minor = new.debits_pending
            row.credits_pending_minor = new.credits_pending
            row.updated_at = now

    def _insert_entry(
        self,
        entry_id: str,
        kind: EntryKind,
        description: str,
        metadata: dict[str, Any] | None,
        fingerprint: str,
        now: datetime,
        *,
        pending_entry_pk: int | None = None,
        reverses_entry_pk: int | None = None,
    ) -> LedgerEntry:
        entry = LedgerEntry(
            entry_id=entry_id,
            kind=kind,
            description=description,
            entry_metadata=metadata,
            fingerprint=fingerprint,
            pending_entry_pk=pending_entry_pk,
            reverses_entry_pk=reverses_entry_pk,
            created_at=now,
        )
        self.session.add(entry)
        self.session.flush()  # the entry's id, and the unique (tenant, entry_id) check, now
        return entry

    def _insert_postings(
        self, entry: LedgerEntry, planned: Sequence[_PlannedPosting], *, pending: bool, now: datetime
    ) -> None:
        if not planned:
            _invariant(
                entry.kind == EntryKind.VOID_PENDING,
                f"entry {entry.entry_id} of kind {entry.kind} has no postings",
            )
            return
        _invariant(len(planned) >= 2, f"entry {entry.entry_id} has fewer than two postings")
        _invariant(
            all(type(amount) is int and 0 < amount <= MAX_AMOUNT_MINOR for _, _, amount in planned),
            f"entry {entry.entry_id} has a non-positive or non-integer amount",
        )
        net: dict[str, int] = defaultdict(int)
        for acct, side, amount in planned:
            net[acct.currency] += amount if side is Side.DEBIT else -amount
        _invariant(all(v == 0 for v in net.values()), f"entry {entry.entry_id} is unbalanced: {dict(net)}")
        self.session.add_all(
            LedgerPosting(
                entry_pk=entry.id,
                account_id=acct.id,
                side=side,
                amount_minor=amount,
                currency=acct.currency,
                pending=pending,
                created_at=now,
            )
            for acct, side, amount in planned
        )

    def _write(self, write: Callable[[], T], on_conflict: Callable[[], T | None]) -> T:
        """Run ``write`` in a SAVEPOINT. A unique-key race (PostgreSQL) rolls back the savepoint and
        asks ``on_conflict`` to answer as a retry would; anything else propagates."""
        try:
            with self.session.begin_nested():
                return write()
        except IntegrityError:
            answer = on_conflict()
            if answer is None:
                raise
            return answer

    # --- idempotency -----------------------------------------------------------------------------

    def _replay(self, row: LedgerEntry, content: Mapping[str, Any], fingerprint: str) -> EntryResult:
        if row.fingerprint != fingerprint:
            _first_difference(row.entry_id, self._stored_content(row), content)
        return self._stored_result(row, created=False)

    def _stored_content(self, row: LedgerEntry) -> dict[str, Any]:
        """The canonical content of a stored entry, rebuilt from its rows."""
        kind = EntryKind(row.kind)
        if kind == EntryKind.REVERSAL:
            original = self.session.get(LedgerEntry, row.reverses_entry_pk)
            return {
                "kind": str(kind),
                "reverses_entry_id": original.entry_id if original else None,
                "reason": row.description,
            }
        content: dict[str, Any] = {"kind": str(kind)}
        if kind in (EntryKind.STANDARD, EntryKind.PENDING):
            postings = self._postings_of([row.id]).get(row.id, [])
            content["postings"] = _postings_content((a.code, s, n) for a, s, n in postings)
            status_row = self.session.get(LedgerPending, row.id) if kind == EntryKind.PENDING else None
            content["expires_at"] = _iso(status_row.expires_at) if status_row else None
        else:
            target = self.session.get(LedgerEntry, row.pending_entry_pk)
            content["pending_entry_id"] = target.entry_id if target else None
            if kind == EntryKind.POST_PENDING:
                held = (
                    self._postings_of([row.pending_entry_pk]).get(row.pending_entry_pk, []) if target else []
                )
                posted = self._postings_of([row.id]).get(row.id, [])
                content["amount_minor"] = posted[0][2] if len(held) == 2 else None
        content["description"] = row.description
        content["metadata"] = row.entry_metadata
        return content

    def _check_not_reversed(self, original: LedgerEntry) -> None:
        by = self.session.scalars(
            select(LedgerEntry).where(LedgerEntry.reverses_entry_pk == original.id)
        ).first()
        if by is not None:
            raise AlreadyReversed(
                f"entry {original.entry_id} was already reversed by entry {by.entry_id}; "
                f"an entry is reversed at most once"
            )

    # --- results ---------------------------------------------------------------------------------

    @staticmethod
    def _new_result(
        entry: LedgerEntry,
        planned: Sequence[_PlannedPosting],
        status: EntryStatus,
        *,
        expires_at: datetime | None = None,
        pending_entry_id: str | None = None,
        reverses_entry_id: str | None = None,
    ) -> EntryResult:
        return EntryResult(
            entry_id=entry.entry_id,
            created=True,
            kind=EntryKind(entry.kind),
            status=status,
            postings=tuple(PostingResult(a.code, s, n, a.currency) for a, s, n in planned),
            created_at=entry.created_at,
            description=entry.description,
            metadata=copy.deepcopy(entry.entry_metadata),
            expires_at=expires_at,
            pending_entry_id=pending_entry_id,
            reverses_entry_id=reverses_entry_id,
        )

    def _stored_result(self, row: LedgerEntry, *, created: bool) -> EntryResult:
        kind = EntryKind(row.kind)
        postings = self._postings_of([row.id]).get(row.id, [])
        status = EntryStatus.VOIDED if kind == EntryKind.VOID_PENDING else EntryStatus.POSTED
        expires_at = resolved_at = None
        resolution_entry_id = pending_entry_id = reverses_entry_id = None
        if kind == EntryKind.PENDING:
            status_row = self.session.get(LedgerPending, row.id)
            _invariant(status_row is not None, f"pending entry {row.entry_id} has no status row")
            assert status_row is not None
            status = EntryStatus(status_row.status)
            expires_at, resolved_at = status_row.expires_at, status_row.resolved_at
            if status_row.resolution_entry_pk is not None:
                resolution = self.session.get(LedgerEntry, status_row.resolution_entry_pk)
                resolution_entry_id = resolution.entry_id if resolution else None
        if row.pending_entry_pk is not None:
            target = self.session.get(LedgerEntry, row.pending_entry_pk)
            pending_entry_id = target.entry_id if target else None
        if row.reverses_entry_pk is not None:
            original = self.session.get(LedgerEntry, row.reverses_entry_pk)
            reverses_entry_id = original.entry_id if original else None
        return EntryResult(
            entry_id=row.entry_id,
            created=created,
            kind=kind,
            status=status,
            postings=tuple(PostingResult(a.code, s, n, a.currency) for a, s, n in postings),
            created_at=row.created_at,
            description=row.description,
            metadata=copy.deepcopy(row.entry_metadata),
            expires_at=expires_at,
            resolved_at=resolved_at,
            resolution_entry_id=resolution_entry_id,
            pending_entry_id=pending_entry_id,
            reverses_entry_id=reverses_entry_id,
        )

    # --- reads -----------------------------------------------------------------------------------

    def _entry_row(self, entry_id: str) -> LedgerEntry | None:
        return self.session.scalars(select(LedgerEntry).where(LedgerEntry.entry_id == entry_id)).first()

    def _postings_of(self, entry_pks: Sequence[int]) -> dict[int, list[_PlannedPosting]]:
        rows = self.session.execute(
            select(
                LedgerPosting.entry_pk,
                LedgerPosting.account_id,
                LedgerPosting.side,
                LedgerPosting.amount_minor,
            )
            .where(LedgerPosting.entry_pk.in_(entry_pks))
            .order_by(LedgerPosting.id)
        ).all()
        out: dict[int, list[_PlannedPosting]] = defaultdict(list)
        for entry_pk, account_id, side, amount in rows:
            out[entry_pk].append((self._account_by_id(account_id), Side(side), int(amount)))
        return out

    def _derived(self, account_ids: Sequence[int], as_of: datetime | None) -> dict[int, _Delta]:
        """Sums of postings per account: posted ones, and pending ones whose entry is (or, as of an
        instant, was then) still pending."""
        posted: Select[Any] = (
            select(LedgerPosting.account_id, LedgerPosting.side, func.sum(LedgerPosting.amount_minor))
            .where(LedgerPosting.account_id.in_(account_ids), LedgerPosting.pending.is_(False))
            .group_by(LedgerPosting.account_id, LedgerPosting.side)
        )
        held: Select[Any] = (
            select(LedgerPosting.account_id, LedgerPosting.side, func.sum(LedgerPosting.amount_minor))
            .join(LedgerPending, LedgerPending.entry_pk == LedgerPosting.entry_pk)
            .where(LedgerPosting.account_id.in_(account_ids), LedgerPosting.pending.is_(True))
            .group_by(LedgerPosting.account_id, LedgerPosting.side)
        )
        if as_of is None:
            held = held.where(LedgerPending.status == EntryStatus.PENDING)
        else:
            posted = posted.where(LedgerPosting.created_at <= as_of)
            held = held.where(
                LedgerPosting.created_at <= as_of,
                or_(LedgerPending.resolved_at.is_(None), LedgerPending.resolved_at > as_of),
            )
        out: dict[int, _Delta] = defaultdict(_Delta)
        for stmt, is_pending in ((posted, False), (held, True)):
            for account_id, side, total in self.session.execute(stmt):
                out[account_id].add(Side(side), _int(total), pending=is_pending)
        return out

    # --- account internals -----------------------------------------------------------------------

    def _account_attributes(
        self, code: Any, currency: Any, type_: Any, owner_type: Any, owner_id: Any, constraint: Any
    ) -> dict[str, Any]:
        if not isinstance(code, str) or not code.strip() or len(code) > MAX_ID_LENGTH:
            raise InvalidAccount(
                f"account code must be a non-empty string of at most {MAX_ID_LENGTH} characters, not {code!r}"
            )
        try:
            currency = validate_currency(str(currency))
        except ValueError as exc:
            raise InvalidAccount(f"account {code}: {exc}") from None

        def pick(enum: Any, value: Any, what: str) -> Any:
            try:
                return enum(value)
            except ValueError:
                allowed = ", ".join(v.value for v in enum)
                raise InvalidAccount(
                    f"account {code}: {what} must be one of {allowed}, not {value!r}"
                ) from None

        if not isinstance(owner_id, str) or len(owner_id) > MAX_ID_LENGTH:
            raise InvalidAccount(
                f"account {code}: owner_id must be a string of at most {MAX_ID_LENGTH} characters"
            )
        return {
            "code": code,
            "currency": currency,
            "type": pick(AccountType, type_, "type"),
            "owner_type": pick(OwnerType, owner_type, "owner_type"),
            "owner_id": owner_id,
            "balance_constraint": pick(BalanceConstraint, constraint, "constraint"),
        }

    def _same_account(self, row: LedgerAccount, wanted: Mapping[str, Any]) -> Account:
        for column, name in (
            ("currency", "currency"),
            ("type", "type"),
            ("owner_type", "owner_type"),
            ("owner_id", "owner_id"),
            ("balance_constraint", "constraint"),
        ):
            if getattr(row, column) != wanted[column]:
                raise AccountExistsWithDifferentAttributes(
                    row.code, name, getattr(row, column), str(wanted[column])
                )
        self._remember(row)
        return self._account(row)

    def _account_row(self, code: str) -> LedgerAccount | None:
        return self.session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).first()

    @staticmethod
    def _account(row: LedgerAccount) -> Account:
        return Account(
            code=row.code,
            currency=row.currency,
            type=AccountType(row.type),
            owner_type=OwnerType(row.owner_type),
            owner_id=row.owner_id,
            constraint=BalanceConstraint(row.balance_constraint),
            created_at=row.created_at,
        )

    def _remember(self, row: LedgerAccount) -> _Acct:
        acct = _Acct(
            row.id, row.code, row.currency, AccountType(row.type), BalanceConstraint(row.balance_constraint)
        )
        self._by_code[acct.code] = acct
        self._by_id[acct.id] = acct
        return acct

    def _accounts(self, codes: Iterable[str], *, strict: bool) -> dict[str, _Acct]:
        """Accounts by code (cached: accounts never change). ``strict`` raises UnknownAccount for
        the first unknown code, in the order given."""
        codes = list(dict.fromkeys(codes))
        missing = [c for c in codes if c not in self._by_code]
        if missing:
            for row in self.session.scalars(select(LedgerAccount).where(LedgerAccount.code.in_(missing))):
                self._remember(row)
        if strict:
            for code in codes:
                if code not in self._by_code:
                    raise UnknownAccount(code)
        return {c: self._by_code[c] for c in codes if c in self._by_code}

    def _account_by_id(self, account_id: int) -> _Acct:
        acct = self._by_id.get(account_id)
        if acct is None:
            row = self.session.get(LedgerAccount, account_id)
            _invariant(row is not None, f"account id {account_id} not found in this tenant")
            assert row is not None
            acct = self._remember(row)
        return acct


__all__ = [
    "Account",
    "Balance",
    "EntryDraft",
    "EntryResult",
    "Ledger",
    "Posting",
    "PostingResult",
    "TrialBalance",
]
