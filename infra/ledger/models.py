"""Ledger tables. Entries and postings are append-only; the only rows ever updated are a pending
entry's status row (``ledger_pendings``) and a constrained account's balance row
(``ledger_balances``). See :mod:`infra.ledger.service` for why unconstrained accounts have no
balance row.

Every table mixes in :class:`~core.db.TenantOwned`; the kernel's tenant guard stamps and filters
``tenant_id`` on ORM statements, and the service's Core statements set and filter it themselves.
Surrogate keys are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite (the only type SQLite
auto-increments).

No ledger table has the mixin's single-column index on ``tenant_id`` (:func:`tenant_id_column` redeclares
the column without it): every lookup goes through a key that already leads with ``tenant_id``
(``(tenant_id, code)``, ``(tenant_id, entry_id)``) or through a primary key or account id. The
extra index would only cost every insert of the hot path, and on a database without statistics
yet, PostgreSQL's planner picks it over the unique keys and scans a whole tenant.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TenantOwned

# --- vocabulary ----------------------------------------------------------------------------------


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def debit_normal(self) -> bool:
        """Assets and expenses grow with debits; liabilities, equity and income with credits."""
        return self in (AccountType.ASSET, AccountType.EXPENSE)


class OwnerType(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    PARTNER = "partner"
    BANK = "bank"
    OTHER = "other"


class BalanceConstraint(StrEnum):
    """TigerBeetle's account flags: the limit the account's balance must stay within."""

    NONE = "none"
    DEBITS_MUST_NOT_EXCEED_CREDITS = "debits_must_not_exceed_credits"
    CREDITS_MUST_NOT_EXCEED_DEBITS = "credits_must_not_exceed_debits"


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"

    @property
    def opposite(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


class EntryKind(StrEnum):
    STANDARD = "standard"  # posted at once
    PENDING = "pending"  # reserves; resolved later by one of the two below or by expiry
    POST_PENDING = "post_pending"  # posts (all or part of) a pending entry
    VOID_PENDING = "void_pending"  # releases a pending entry; has no postings
    REVERSAL = "reversal"  # mirror of an earlier entry


class EntryStatus(StrEnum):
    """Status of an entry; only a pending entry's status ever changes (in ``ledger_pendings``)."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


# Surrogate keys: BIGINT, except on SQLite where only INTEGER PRIMARY KEY auto-increments.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


def tenant_id_column() -> Mapped[str]:
    """``TenantOwned.tenant_id`` without its own index (see the module docstring)."""
    return mapped_column(String(64))


# --- tables --------------------------------------------------------------------------------------


class LedgerAccount(Base, TenantOwned):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint(_in("type", AccountType), name="type"),
        CheckConstraint(_in("owner_type", OwnerType), name="owner_type"),
        CheckConstraint(_in("balance_constraint", BalanceConstraint), name="balance_constraint"),
    )

    tenant_id: Mapped[str] = tenant_id_column()

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    code: Mapped[str] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(String(3))
    type: Mapped[str] = mapped_column(String(16))
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(128))
    balance_constraint: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


class LedgerBalance(Base, TenantOwned):
    """Running balance of a *constrained* account, updated under a row lock in the posting's
    transaction. Unconstrained accounts have none: their balance is summed from postings."""

    __tablename__ = "ledger_balances"
    __table_args__ = (
        CheckConstraint("debits_posted_minor >= 0", name="debits_posted_minor"),
        CheckConstraint("credits_posted_minor >= 0", name="credits_posted_minor"),
        CheckConstraint("debits_pending_minor >= 0", name="debits_pending_minor"),
        CheckConstraint("credits_pending_minor >= 0", name="credits_pending_minor"),
    )

    tenant_id: Mapped[str] = tenant_id_column()

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), primary_key=True, autoincrement=False
    )
    debits_posted_minor: Mapped[int] = mapped_column(BigInteger)
    credits_posted_minor: Mapped[int] = mapped_column(BigInteger)
    debits_pending_minor: Mapped[int] = mapped_column(BigInteger)
    credits_pending_minor: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class LedgerEntry(Base, TenantOwned):
    """One journal entry (or resolution record), identified by the caller's ``entry_id``.

    ``fingerprint`` is the SHA-256 of the entry's canonical content; a retry with the same id is
    compared against it. A resolution points at its pending entry (``pending_entry_pk``, unique:
    a pending entry resolves at most once); a reversal at the entry it reverses
    (``reverses_entry_pk``, unique: an entry is reversed at most once). Never updated.

    Those two keys are partial unique indexes (``WHERE ... IS NOT NULL``): the same rule, since
    NULLs never conflict, without an index entry for every ordinary entry, where they are NULL.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "entry_id"),
        CheckConstraint(_in("kind", EntryKind), name="kind"),
        Index(
            "uq_ledger_entries_pending_entry_pk",
            "pending_entry_pk",
            unique=True,
            sqlite_where=text("pending_entry_pk IS NOT NULL"),
            postgresql_where=text("pending_entry_pk IS NOT NULL"),
        ),
        Index(
            "uq_ledger_entries_reverses_entry_pk",
            "reverses_entry_pk",
            unique=True,
            sqlite_where=text("reverses_entry_pk IS NOT NULL"),
            postgresql_where=text("reverses_entry_pk IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[str] = tenant_id_column()

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(1000))
    entry_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(64))
    pending_entry_pk: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    reverses_entry_pk: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime]


class LedgerPosting(Base, TenantOwned):
    """One debit or credit of ``amount_minor`` to one account. Never updated.

    ``pending`` postings belong to a pending entry and count as pending while its status row says
    so; posting it writes new, non-pending postings under the resolution entry.
    """

    __tablename__ = "ledger_postings"
    __table_args__ = (
        # (account_id, id): a balance read now sums only an account's postings after the rollup
        # mark (LedgerRollupMark), a range of this index; a read as of an instant filters them.
        Index(None, "account_id", "id"),
        CheckConstraint("amount_minor > 0", name="amount_minor_positive"),
        CheckConstraint(_in("side", Side), name="side"),
    )

    tenant_id: Mapped[str] = tenant_id_column()

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    entry_pk: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    side: Mapped[str] = mapped_column(String(6))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    pending: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class LedgerPending(Base, TenantOwned):
    """Status of a pending entry: the one ledger row that changes after it is written."""

    __tablename__ = "ledger_pendings"
    __table_args__ = (
        Index(None, "status", "expires_at"),
        CheckConstraint(_in("status", EntryStatus), name="status"),
    )

    tenant_id: Mapped[str] = tenant_id_column()

    entry_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_entries.id"), primary_key=True, autoincrement=False
    )
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolution_entry_pk: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))


class LedgerRollup(Base, TenantOwned):
    """An account's posted debits and credits summed over its postings up to its tenant's rollup
    mark (:class:`LedgerRollupMark`), so that a balance read adds only the postings after the
    mark instead of summing the account's whole history. Derived data: written only by
    ``Ledger.roll_up`` in the transaction that moves the mark, checked by ``Ledger.verify``."""

    __tablename__ = "ledger_rollups"
    __table_args__ = (
        CheckConstraint("debits_posted_minor >= 0", name="debits_posted_minor"),
        CheckConstraint("credits_posted_minor >= 0", name="credits_posted_minor"),
    )

    tenant_id: Mapped[str] = tenant_id_column()

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), primary_key=True, autoincrement=False
    )
    debits_posted_minor: Mapped[int] = mapped_column(BigInteger)
    credits_posted_minor: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class LedgerRollupMark(Base, TenantOwned):
    """The highest posting id a tenant's rollups include. Every posting at or below it had
    committed (or aborted) when the mark was set: no transaction can add one below it later.

    ``held_from_posting_id``: the lowest id of a pending posting whose entry was still pending then
    (or the mark + 1). Every pending posting below it belongs to an entry resolved for good, which
    holds nothing any more: a read of what is held starts there, not at the account's first hold."""

    __tablename__ = "ledger_rollup_marks"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    through_posting_id: Mapped[int] = mapped_column(BigInteger)
    held_from_posting_id: Mapped[int] = mapped_column(BigInteger)
    rolled_at: Mapped[datetime]


LEDGER_TABLES = (
    LedgerAccount.__tablename__,
    LedgerBalance.__tablename__,
    LedgerEntry.__tablename__,
    LedgerPosting.__tablename__,
    LedgerPending.__tablename__,
    LedgerRollup.__tablename__,
    LedgerRollupMark.__tablename__,
)
