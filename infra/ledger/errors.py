"""Ledger errors. Each names the rule that was broken in its stable ``code`` and, in its message,
the account or entry it was broken on, so an HTTP or CLI layer can render it without a trace.

Every class subclasses :class:`LedgerError` (catch-all for ledger rules) and the matching kernel
class (:class:`~core.errors.ValidationFailed`, :class:`~core.errors.NotFound`,
:class:`~core.errors.Conflict`, :class:`~core.errors.Rejected`), which carries the HTTP status.
"""

from __future__ import annotations

from typing import Any

from core.errors import (
    Conflict,
    NotFound,
    Rejected,
    SceneOSError,
    TenantIsolationError,
    ValidationFailed,
)


class LedgerError(SceneOSError):
    """Base of every error the ledger raises on purpose. ``linked_index`` is set when the error
    failed a :meth:`~infra.ledger.service.Ledger.post_linked` batch: the failing entry's position."""

    code = "ledger_error"
    linked_index: int | None = None


class LedgerNeedsTenant(LedgerError, TenantIsolationError):
    """The ledger was given a session that is not bound to one tenant."""

    code = "ledger_needs_tenant_session"


class LedgerInvariantViolated(LedgerError):
    """An internal invariant failed after all checks passed: a bug, never a user error."""

    code = "ledger_invariant_violated"
    http_status = 500


# --- input shape ---------------------------------------------------------------------------------


class InvalidAccount(LedgerError, ValidationFailed):
    """An account's attributes are malformed (code, currency, type, owner or constraint)."""

    code = "invalid_account"


class InvalidAmount(LedgerError, ValidationFailed):
    """Amounts are integer minor units greater than zero (never bool, float or Decimal)."""

    code = "amount_must_be_positive_integer"


class InvalidEntry(LedgerError, ValidationFailed):
    """An entry or a posting is malformed (empty id, unknown side, bad metadata...)."""

    code = "invalid_entry"


class TooFewPostings(InvalidEntry):
    code = "entry_needs_two_postings"


class InvalidExpiry(InvalidEntry):
    """``expires_at`` is only for pending entries and must be an aware instant in the future."""

    code = "invalid_expires_at"


class UnbalancedEntry(LedgerError, ValidationFailed):
    """Debits and credits of an entry differ in at least one currency."""

    code = "entry_unbalanced"


class CurrencyMismatch(LedgerError, ValidationFailed):
    """A posting's currency differs from its account's currency."""

    code = "currency_mismatch"


# --- lookups -------------------------------------------------------------------------------------


class UnknownAccount(LedgerError, NotFound):
    code = "unknown_account"

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"unknown account {account!r}")


class UnknownEntry(LedgerError, NotFound):
    code = "unknown_entry"

    def __init__(self, entry_id: str) -> None:
        self.entry_id = entry_id
        super().__init__(f"unknown entry {entry_id!r}")


# --- idempotency ---------------------------------------------------------------------------------


class AccountExistsWithDifferentAttributes(LedgerError, Conflict):
    """``open_account`` with a code that exists with other attributes; ``field`` names the first."""

    code = "account_exists_with_different_attributes"

    def __init__(self, account: str, field: str, existing: Any, given: Any) -> None:
        self.account = account
        self.field = field
        super().__init__(
            f"account {account} exists with different {field}: existing {existing!r}, given {given!r}",
            details=[{"field": field, "code": f"exists_with_different_{field}", "message": "differs"}],
        )


class EntryExistsWithDifferentContent(LedgerError, Conflict):
    """An entry id is reused with other content; ``field`` names the first field that differs."""

    code = "entry_exists_with_different_content"

    def __init__(self, entry_id: str, field: str, existing: Any, given: Any) -> None:
        self.entry_id = entry_id
        self.field = field
        super().__init__(
            f"entry {entry_id} exists with different {field}: existing {existing!r}, given {given!r}",
            details=[{"field": field, "code": f"exists_with_different_{field}", "message": "differs"}],
        )


# --- balance constraints -------------------------------------------------------------------------


class InsufficientFunds(LedgerError, Rejected):
    """Applying the entry would take a constrained account past its limit."""

    code = "insufficient_available_balance"

    def __init__(
        self, account: str, *, available_minor: int, needed_minor: int, currency: str, constraint: str
    ) -> None:
        self.account = account
        self.available_minor = available_minor
        self.needed_minor = needed_minor
        self.currency = currency
        self.constraint = constraint
        super().__init__(
            f"insufficient available balance on account {account}: available {available_minor}, "
            f"needed {needed_minor} ({currency} minor units; rule {constraint})"
        )


# --- two-phase -----------------------------------------------------------------------------------


class NotPending(LedgerError, ValidationFailed):
    """Only a pending entry can be posted or voided."""

    code = "entry_not_pending"


class PendingAlreadyResolved(LedgerError, Conflict):
    """A pending entry resolves at most once (posted, voided or expired)."""

    code = "pending_already_resolved"


class PendingExpired(LedgerError, Conflict):
    """The pending entry reached its ``expires_at``; it can no longer be posted or voided."""

    code = "pending_expired"


class PartialPostNotAllowed(LedgerError, ValidationFailed):
    """A partial amount can only be posted from a pending entry of exactly two postings."""

    code = "partial_post_needs_two_postings"


class PostAmountExceedsPending(LedgerError, ValidationFailed):
    code = "post_amount_exceeds_pending"


# --- corrections ---------------------------------------------------------------------------------


class NotReversible(LedgerError, ValidationFailed):
    """Pending entries are voided, not reversed; void records have nothing to reverse."""

    code = "entry_not_reversible"


class AlreadyReversed(LedgerError, Conflict):
    code = "already_reversed"


# --- rollups -------------------------------------------------------------------------------------


class RollupBusy(LedgerError, Conflict):
    """A rollup of the tenant is already running, or transactions that may still add postings
    below the new mark did not end within the wait: nothing was rolled up; run it again later."""

    code = "ledger_rollup_busy"
