"""End of day of credit-pay accounts: interest accrual, billing, due-date checks, late fees,
penalty interest, days past due and buckets, charge-off; and the compute job that runs it.

One engine serves both paths, so they cannot disagree:

* the batch job ``credit_pay.end_of_day`` advances every account of a partition to the job's
  business date;
* **inline catch-up**: before anything touches an account (purchase, repayment, query) the service
  advances that account alone through yesterday (``CreditPayService.catch_up``), so a repayment
  never lands on stale balances and a simulation that jumps months ahead is correct without
  running every day.

Each account carries ``processed_through`` (its last business date whose end of day ran): the
engine runs the days after it, in order, and moves it forward, so re-running a date changes
nothing. Ledger entry ids are derived from the account and the date (``credit_pay:interest:
<account_no>:<date>``), so the ledger's own idempotency backs the marker up.

Set-based where it matters: a partition loads its accounts, cycles, open statements and unbilled
transactions in a handful of queries, reads the ledger balances of the accounts that need them
in one call, works day by day in memory, then posts every entry through one ``Ledger.post_batch``
and inserts every transaction row in one statement. An account on which nothing happens (not
revolving, nothing past due, no billing or due day) costs no query of its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from core.errors import ValidationFailed
from core.logging import get_logger
from core.modules import JobSpec
from core.statements import among, insert_rows, update_rows
from infra.ledger import EntryDraft, LedgerError, Posting
from products.credit_pay.models import (
    CreditPayAccount,
    CreditPayApplication,
    CreditPayCycle,
    CreditPayPurchase,
    CreditPayStatement,
    CreditPayTransaction,
)
from products.credit_pay.settings import CreditProduct

if TYPE_CHECKING:
    from products.credit_pay.service import CreditPayService

log = get_logger("sceneos.credit_pay")

COMPONENTS = ("penalty", "fee", "interest", "principal")
MICROS = 1_000_000  # interest is accrued in millionths of a minor unit and posted in whole units
PARTITION_SIZE = 1_000  # accounts (by id range) per end-of-day partition
HOLDS_KEY = "holds"


# --- ledger accounts -----------------------------------------------------------------------------


def interest_account(account_no: str) -> str:
    return f"credit_pay:interest:{account_no}"


def penalty_account(account_no: str) -> str:
    return f"credit_pay:penalty:{account_no}"


def fee_account(account_no: str) -> str:
    return f"credit_pay:fees:{account_no}"


def credit_balance_account(account_no: str) -> str:
    return f"credit_pay:credit:{account_no}"


def interest_income_account(currency: str) -> str:
    return f"credit_pay:interest_income:{currency}"


def penalty_income_account(currency: str) -> str:
    return f"credit_pay:penalty_income:{currency}"


def fee_income_account(currency: str) -> str:
    return f"credit_pay:fee_income:{currency}"


def repayment_clearing_account(currency: str, partner_id: str | None = None) -> str:
    """Where a repayment's money is due from (asset): the bank's own channel's clearing account,
    or, for a repayment a partner collected, that partner's (what it owes the bank until it remits:
    remittance.py)."""
    if partner_id is None:
        return f"credit_pay:repayment_clearing:{currency}"
    return f"credit_pay:repayment_clearing:{currency}:{partner_id}"


def recoveries_account(currency: str) -> str:
    """What is recovered of debts written off (income)."""
    return f"credit_pay:recoveries:{currency}"


def write_off_account(currency: str) -> str:
    return f"credit_pay:write_off:{currency}"


def component_account(component: str, account_no: str) -> str:
    from products.credit_pay.service import receivable_account

    return {
        "principal": receivable_account,
        "interest": interest_account,
        "penalty": penalty_account,
        "fee": fee_account,
    }[component](account_no)


def open_lifecycle_accounts(ledger: Any, account_no: str, currency: str, customer_no: str) -> None:
    """Open the account's receivables and credit balance and the bank's income, clearing and
    write-off accounts (idempotent)."""
    for code in (interest_account, penalty_account, fee_account):
        ledger.open_account(code(account_no), currency, "asset", "customer", customer_no)
    ledger.open_account(credit_balance_account(account_no), currency, "liability", "customer", customer_no)
    for code in (interest_income_account, penalty_income_account, fee_income_account):
        ledger.open_account(code(currency), currency, "income")
    ledger.open_account(repayment_clearing_account(currency), currency, "asset")
    ledger.open_account(write_off_account(currency), currency, "expense")


def read_balances(
    ledger: Any, account_nos: Sequence[str], *, principal_only: bool = False
) -> dict[str, dict[str, int]]:
    """principal, interest, penalty, fee (owed, >= 0) and credit (overpaid) of each account; with
    ``principal_only`` the principal receivable alone (the rest reads 0), a fifth of the read, for
    accounts on which nothing but accrual can happen (``Lifecycle._only_accrues``)."""
    from products.credit_pay.service import receivable_account

    if principal_only:
        found = ledger.balances([receivable_account(no) for no in account_nos]) if account_nos else {}
        return {
            no: {"principal": found[receivable_account(no)].net_posted_minor, "interest": 0, "penalty": 0,
                 "fee": 0, "credit": 0}
            for no in account_nos
        }
    codes: list[str] = []
    for no in account_nos:
        codes += [
            receivable_account(no),
            interest_account(no),
            penalty_account(no),
            fee_account(no),
            credit_balance_account(no),
        ]
    if not codes:
        return {}
    found = ledger.balances(codes)
    return {
        no: {
            "principal": found[receivable_account(no)].net_posted_minor,
            "interest": found[interest_account(no)].net_posted_minor,
            "penalty": found[penalty_account(no)].net_posted_minor,
            "fee": found[fee_account(no)].net_posted_minor,
            "credit": found[credit_balance_account(no)].net_posted_minor,
        }
        for no in account_nos
    }


def line_restorable(ledger: Any, account: CreditPayAccount, principal_minor: int, shortfall_minor: int = 0) -> int:
    """How much of a principal repayment gives the line back: the principal share (interest and
    fees, installment charges included, are billed to their own receivables and never used the
    line), never more than the line in use, plus ``shortfall_minor``, the use a forced lowering left
    uncovered (the caller then absorbs it with ``lines.absorb_line_shortfall`` in the same unit of
    work). The cap matters for accounts billed before installment charges had their own
    receivables: their charges still sit in the principal receivable (docs/credit-pay.md)."""
    from products.credit_pay.service import line_account

    if principal_minor <= 0:
        return 0
    in_use = account.line_minor - ledger.balance(line_account(account.account_no)).net_posted_minor
    return max(min(principal_minor, in_use + max(shortfall_minor, 0)), 0)


def owed(balances: Mapping[str, int]) -> int:
    """What the customer owes net of a credit balance (negative: the bank owes the customer)."""
    return sum(balances[c] for c in COMPONENTS) - balances["credit"]


def next_day_of_month(after: date, day: int) -> date:
    """The first date after ``after`` whose day of the month is ``day`` (1..28)."""
    candidate = after.replace(day=day)
    if candidate <= after:
        year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
        candidate = date(year, month, day)
    return candidate


def minimum_payment(product: CreditProduct, new_balance: int, charges: int, past_due: int) -> int:
    """``minimum_payment_bps`` of the principal part (rounded up), plus this period's charges
    (installments, interest, penalty, fees) and the amount already past due; at least the floor,
    never more than the new balance."""
    if new_balance <= 0:
        return 0
    base = max(new_balance - charges - past_due, 0)
    minimum = math.ceil(base * product.minimum_payment_bps / 10_000) + charges + past_due
    minimum = max(minimum, min(product.minimum_payment_floor_minor, new_balance))
    return min(minimum, new_balance)


def allocate(amount: int, balances: Mapping[str, int], order: Sequence[str]) -> dict[str, int]:
    """Split ``amount`` over the components in ``order``; what is left is a credit balance."""
    allocation: dict[str, int] = {}
    left = amount
    for component in order:
        take = min(left, max(balances[component], 0))
        allocation[component] = take
        left -= take
    allocation["credit"] = left
    return allocation


@dataclass(slots=True)
class CycleRow:
    """A cycle as the batch job reads and writes it: the columns of ``CreditPayCycle`` as plain
    attributes. The engine reads and sets a cycle's attributes a dozen times a day per account;
    on an ORM object each is a descriptor call, and the session then has to forget the objects the
    job wrote itself (``Lifecycle._write_cycles``)."""

    id: int
    account_no: str
    partner_id: str | None
    processed_through: date
    revolving: bool
    interest_carry_micros: int
    penalty_carry_micros: int
    past_due_minor: int
    overdue_since: date | None
    days_past_due: int
    bucket: str
    last_statement_date: date | None
    charged_off_on: date | None
    interest_since_statement_minor: int


# What end of day changes on a cycle (all but its identity).
CYCLE_STATE = tuple(name for name in CycleRow.__dataclass_fields__ if name not in ("id", "account_no", "partner_id"))


# A partition's accounts mostly share their last processed day and their product's billing day:
# date arithmetic, a few microseconds a call in Python, is done once per distinct set of dates.


@lru_cache(maxsize=4096)
def _days_after(processed_through: date, through: date) -> tuple[date, ...]:
    """The days after ``processed_through`` up to ``through``, in order."""
    start = processed_through + timedelta(days=1)
    return tuple(start + timedelta(days=i) for i in range((through - start).days + 1))


@lru_cache(maxsize=4096)
def _billing_day_between(processed_through: date, through: date, billing_day: int) -> bool:
    """A billing day falls in the days after ``processed_through`` up to ``through`` (the first one
    on or after the first of those days is at most a month away: a billing day is 1-28, in every
    month)."""
    start = processed_through + timedelta(days=1)
    if start.day > billing_day:
        start = (start.replace(day=1) + timedelta(days=32)).replace(day=billing_day)
    else:
        start = start.replace(day=billing_day)
    return start <= through


@dataclass
class AccountState:
    """One account during a run: its rows and, when needed, its ledger balances in memory."""

    account: CreditPayAccount
    account_no: str  # the account's, read once: an ORM attribute costs a descriptor call a read
    cycle: CreditPayCycle | CycleRow
    product: CreditProduct
    open_statements: list[CreditPayStatement]
    last_balance_minor: int
    unbilled: list[CreditPayTransaction] = field(default_factory=list)
    new_txns: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, int] | None = None
    # balances holds the principal alone (the rest reads 0): only while nothing but accrual can happen.
    principal_only: bool = False
    has_plans: bool = False


class Lifecycle:
    """Advances accounts day by day within one unit of work (see the module docstring)."""

    def __init__(self, service: CreditPayService, *, batch: bool = False) -> None:
        self.service = service
        # The job's partition (not an inline catch-up, whose cycle the service goes on using).
        self.batch = batch
        self.session = service.session
        self.tenant = service.tenant
        self.uow = service.uow
        self.ledger = service.ledger
        self.dialect = self.session.get_bind().dialect.name
        self.drafts: list[EntryDraft] = []
        # Billed transaction rows to tag with their statement, written in one statement.
        self.tags: list[dict[str, Any]] = []
        self.counts: dict[str, int] = defaultdict(int)

    # --- loading ---------------------------------------------------------------------------------

    def opened_on(self, account: CreditPayAccount) -> date:
        return account.created_at.astimezone(ZoneInfo(self.tenant.timezone)).date()

    def ensure_cycle(self, account: CreditPayAccount) -> CreditPayCycle:
        """The account's cycle row, created (with its ledger accounts) the first time."""
        cycle = self.session.scalars(
            select(CreditPayCycle).where(CreditPayCycle.account_no == account.account_no)
        ).one_or_none()
        if cycle is None:
            cycle = self._new_cycle(account)
        return cycle

    def _new_cycle(self, account: CreditPayAccount) -> CreditPayCycle:
        product = self.service._product(account.product_code)
        open_lifecycle_accounts(self.ledger, account.account_no, account.currency, account.customer_no)
        partner_id = self.session.scalar(
            select(CreditPayApplication.partner_id).where(
                CreditPayApplication.account_no == account.account_no
            )
        )
        cycle = CreditPayCycle(
            account_no=account.account_no,
            partner_id=partner_id or self.service.partner_id,
            processed_through=self.opened_on(account) - timedelta(days=1),
            revolving=not product.interest_free_period,
            interest_carry_micros=0,
            penalty_carry_micros=0,
            past_due_minor=0,
            overdue_since=None,
            days_past_due=0,
            bucket="M0",
            last_statement_date=None,
            charged_off_on=None,
            interest_since_statement_minor=0,
        )
        self.session.add(cycle)
        self.session.flush()
        return cycle

    def load(self, accounts: Sequence[CreditPayAccount], through: date) -> list[AccountState]:
        """The states of the accounts whose end of day has not reached ``through``."""
        if not accounts:
            return []
        nos = [a.account_no for a in accounts]
        cycles: dict[str, CreditPayCycle | CycleRow]
        if self.batch:
            columns = [getattr(CreditPayCycle, name) for name in CycleRow.__dataclass_fields__]
            cycles = {
                row.account_no: CycleRow(*row)
                for row in self.session.execute(
                    select(*columns).where(among(CreditPayCycle.account_no, nos, self.dialect))
                )
            }
        else:
            cycles = {
                c.account_no: c
                for c in self.session.scalars(
                    select(CreditPayCycle)
                    .where(among(CreditPayCycle.account_no, nos, self.dialect))
                    .execution_options(populate_existing=True)
                )
            }
        for account in accounts:
            if account.account_no not in cycles:
                cycles[account.account_no] = self._new_cycle(account)
        behind = [a for a in accounts if cycles[a.account_no].processed_through < through]
        if not behind:
            return []
        nos = [a.account_no for a in behind]
        open_statements: dict[str, list[CreditPayStatement]] = defaultdict(list)
        for row in self.session.scalars(
            select(CreditPayStatement)
            .where(among(CreditPayStatement.account_no, nos, self.dialect), CreditPayStatement.status == "open")
            .order_by(CreditPayStatement.statement_date)
            .execution_options(populate_existing=True)
        ):
            open_statements[row.account_no].append(row)
        last_balance: dict[str, int] = {}
        latest = (
            select(CreditPayStatement.account_no, func.max(CreditPayStatement.statement_date).label("d"))
            .where(among(CreditPayStatement.account_no, nos, self.dialect))
            .group_by(CreditPayStatement.account_no)
            .subquery()
        )
        for no, balance in self.session.execute(
            select(CreditPayStatement.account_no, CreditPayStatement.new_balance_minor).join(
                latest,
                (latest.c.account_no == CreditPayStatement.account_no)
                & (latest.c.d == CreditPayStatement.statement_date),
            )
        ):
            last_balance[no] = balance
        states = [
            AccountState(
                account=a,
                account_no=no,
                cycle=cycles[no],
                product=self.service._product(a.product_code),
                open_statements=open_statements.get(no, []),
                last_balance_minor=last_balance.get(no, 0),
            )
            for a, no in zip(behind, nos, strict=True)
        ]
        by_no = {s.account_no: s for s in states}
        billing = [s.account_no for s in states if self._bills_between(s, through)]
        if billing:
            for row in self.session.scalars(
                select(CreditPayTransaction)
                .where(
                    among(CreditPayTransaction.account_no, billing, self.dialect), CreditPayTransaction.statement_no.is_(None)
                )
                .order_by(CreditPayTransaction.id)
            ):
                by_no[row.account_no].unbilled.append(row)
            for no in self._accounts_with_plans(billing):
                by_no[no].has_plans = True
        needing = [s for s in states if self._needs_balances(s, through)]
        only_accruing = {s.account_no for s in needing if self._only_accrues(s, through)}
        accruing = [s.account_no for s in needing if s.account_no in only_accruing]
        full = [s.account_no for s in needing if s.account_no not in only_accruing]
        for nos_, only in ((accruing, True), (full, False)):
            for no, balances in read_balances(self.ledger, nos_, principal_only=only).items():
                by_no[no].balances = balances
                by_no[no].principal_only = only
        return states

    def _accounts_with_plans(self, account_nos: Sequence[str]) -> set[str]:
        try:
            from products.credit_pay.models import CreditPayInstallmentPlan  # type: ignore[attr-defined]
        except ImportError:  # installment conversion not installed yet
            return set()
        return set(
            self.session.scalars(
                select(CreditPayInstallmentPlan.account_no)
                .where(among(CreditPayInstallmentPlan.account_no, account_nos, self.dialect))
                .distinct()
            )
        )

    @staticmethod
    def _days(state: AccountState, through: date) -> tuple[date, ...]:
        return _days_after(state.cycle.processed_through, through)

    @staticmethod
    def _bills_between(state: AccountState, through: date) -> bool:
        return _billing_day_between(state.cycle.processed_through, through, state.product.billing_day)

    def _only_accrues(self, state: AccountState, through: date) -> bool:
        """Nothing but accrual can happen to the account through ``through``: current (nothing past
        due, in the bucket of day 0), no due date and no billing day in the range. Only then may its
        state hold the principal alone (``AccountState.principal_only``)."""
        cycle = state.cycle
        if cycle.charged_off_on is not None or cycle.past_due_minor > 0 or cycle.overdue_since is not None:
            return False
        if cycle.bucket != state.product.bucket_of(0):
            return False
        if state.product.compound_interest:  # billed interest bears interest: read it too
            return False
        if state.open_statements and self._grace_ends_between(state, through):
            return False
        return not self._bills_between(state, through)

    def _needs_balances(self, state: AccountState, through: date) -> bool:
        cycle = state.cycle
        if cycle.charged_off_on is not None:
            return False
        if cycle.revolving or cycle.past_due_minor > 0:
            return True
        if state.open_statements and self._grace_ends_between(state, through):
            return True
        return self._bills_between(state, through)

    @staticmethod
    def _grace_ends_between(state: AccountState, through: date) -> bool:
        """An open statement's last on-time day falls in the days to run."""
        start = state.cycle.processed_through + timedelta(days=1)
        return any(start <= s.grace_until <= through for s in state.open_statements)

    # --- running ---------------------------------------------------------------------------------

    def advance(self, states: Sequence[AccountState], through: date) -> dict[str, int]:
        """Run every missing day through ``through`` for each account, then write it all."""
        for state in states:
            if state.balances is None and self._needs_balances(state, through):
                state.balances = read_balances(self.ledger, [state.account_no])[state.account_no]
                state.principal_only = False
            for day in self._days(state, through):
                self._day(state, day)
            state.cycle.processed_through = through
            self.counts["accounts"] += 1
        if self.batch:
            self._write_cycles(states)
        self.flush()
        return dict(self.counts)

    def _write_cycles(self, states: Sequence[AccountState]) -> None:
        """Write the partition's cycles in one statement: the session's flush would send one UPDATE
        per account, end of day's largest single cost on PostgreSQL. Only the batch does so: an
        inline catch-up hands its cycle (an ORM object) back to the service. A cycle created in
        this run is an ORM object too: the session forgets it once it is written here."""
        rows = [{"id": s.cycle.id, **{name: getattr(s.cycle, name) for name in CYCLE_STATE}} for s in states]
        update_rows(self.uow, CreditPayCycle.__table__, rows)
        for state in states:
            if isinstance(state.cycle, CreditPayCycle):
                self.session.expunge(state.cycle)

    def flush(self) -> None:
        """Post the queued entries (one batch) and insert the queued transaction rows."""
        if self.drafts:
            outcomes = self.ledger.post_batch(self.drafts)
            for draft, outcome in zip(self.drafts, outcomes, strict=True):
                if isinstance(outcome, LedgerError):
                    raise outcome  # a bug: every entry of end of day is balanced and unconstrained
                del draft
            self.drafts = []
        self.session.flush()
        if self.tags:
            update_rows(self.uow, CreditPayTransaction.__table__, self.tags)
            self.tags = []

    def _txn(
        self, state: AccountState, day: date, kind: str, amount: int, reference: str, entry_id: str
    ) -> None:
        state.new_txns.append(
            {
                "account_no": state.account_no,
                "business_date": day,
                "kind": kind,
                "amount_minor": amount,
                "reference": reference,
                "entry_id": entry_id,
                "statement_no": None,
            }
        )

    def _write_txns(self, states: Sequence[AccountState]) -> None:
        rows = [row for s in states for row in s.new_txns]
        if rows:
            now = self.uow.clock.now()
            for row in rows:
                row["created_at"] = now
            insert_rows(self.uow, CreditPayTransaction.__table__, rows)
        for s in states:
            s.new_txns = []

    def _day(self, state: AccountState, day: date) -> None:
        cycle, product = state.cycle, state.product
        if cycle.charged_off_on is not None:
            return
        self._accrue(state, day)
        for statement in [s for s in state.open_statements if s.grace_until == day]:
            self._check_due(state, statement, day)
        self._age(state, day)
        if cycle.charged_off_on is None and day.day == product.billing_day:
            self._bill(state, day)

    def _accrue(self, state: AccountState, day: date) -> None:
        cycle, balances, account = state.cycle, state.balances, state.account
        if balances is None:
            return
        day_count = state.product.interest_day_count
        base = balances["principal"]
        if state.product.compound_interest:  # and the interest billed, still unpaid
            base += max(balances["interest"] - cycle.interest_since_statement_minor, 0)
        if cycle.revolving and base > 0:
            rate = state.product.revolving_rate_bps(account.annual_rate_bps)
            cycle.interest_carry_micros += base * rate * 100 // day_count
            whole, cycle.interest_carry_micros = divmod(cycle.interest_carry_micros, MICROS)
            if whole > 0:
                self._post_accrued(state, day, "interest", whole, interest_account(state.account_no),
                                   interest_income_account(account.currency), "revolving interest")
        if cycle.past_due_minor > 0 and state.product.penalty_annual_rate_bps > 0:
            rate = state.product.penalty_annual_rate_bps
            cycle.penalty_carry_micros += cycle.past_due_minor * rate * 100 // day_count
            whole, cycle.penalty_carry_micros = divmod(cycle.penalty_carry_micros, MICROS)
            if whole > 0:
                self._post_accrued(state, day, "penalty", whole, penalty_account(state.account_no),
                                   penalty_income_account(account.currency), "penalty interest")

    def _post_accrued(
        self, state: AccountState, day: date, kind: str, whole: int, receivable: str, income: str, description: str
    ) -> None:
        """Queue the day's accrued ``kind`` (interest or penalty), ``whole`` minor units, and its row."""
        assert state.balances is not None
        iso = day.isoformat()
        entry_id = f"credit_pay:{kind}:{state.account_no}:{iso}"
        self.drafts.append(
            EntryDraft(entry_id, [Posting.debit(receivable, whole), Posting.credit(income, whole)],
                       description=description)
        )
        state.balances[kind] += whole
        if kind == "interest":
            state.cycle.interest_since_statement_minor += whole
        self._txn(state, day, kind, whole, iso, entry_id)
        self.counts[f"{kind}_minor"] += whole

    def _check_due(self, state: AccountState, statement: CreditPayStatement, day: date) -> None:
        """The last day a payment counted as on time for ``statement`` has ended."""
        cycle, product, account = state.cycle, state.product, state.account
        assert not state.principal_only, "a due date reads every component"
        state.open_statements.remove(statement)
        if statement.paid_minor >= statement.new_balance_minor:
            statement.status = "paid"
            cycle.revolving = not product.interest_free_period
            return
        cycle.revolving = True
        shortfall = statement.minimum_payment_minor - statement.paid_minor
        if shortfall <= 0:
            statement.status = "minimum_paid"
            return
        statement.status = "past_due"
        first = cycle.past_due_minor == 0
        cycle.past_due_minor = shortfall
        if cycle.overdue_since is None:
            cycle.overdue_since = statement.due_date + timedelta(days=1)
        if product.late_fee_minor > 0 and state.balances is not None:
            entry_id = f"credit_pay:late_fee:{statement.statement_no}"
            self.drafts.append(
                EntryDraft(
                    entry_id,
                    [
                        Posting.debit(fee_account(account.account_no), product.late_fee_minor),
                        Posting.credit(fee_income_account(account.currency), product.late_fee_minor),
                    ],
                    description="late fee",
                    metadata={"statement_no": statement.statement_no},
                )
            )
            state.balances["fee"] += product.late_fee_minor
            self._txn(state, day, "late_fee", product.late_fee_minor, statement.statement_no, entry_id)
            self.counts["late_fees"] += 1
        if first:
            self.uow.publish(
                "credit_pay.account.overdue",
                {
                    "account_no": account.account_no,
                    "partner_id": cycle.partner_id,
                    "statement_no": statement.statement_no,
                    "due_date": statement.due_date.isoformat(),
                    "past_due_minor": shortfall,
                    "currency": account.currency,
                    "business_date": day.isoformat(),
                },
                subject=f"credit_pay_account:{account.account_no}",
            )

    def _age(self, state: AccountState, day: date) -> None:
        cycle, product = state.cycle, state.product
        if cycle.past_due_minor > 0 and cycle.overdue_since is not None:
            days = (day - cycle.overdue_since).days + 1
        else:
            days = 0
        cycle.days_past_due = max(days, 0)
        set_bucket(
            self.service, state.account, cycle, product.bucket_of(cycle.days_past_due), day, state.balances
        )
        if product.charge_off_days_past_due and cycle.days_past_due >= product.charge_off_days_past_due:
            self._charge_off(state, day)

    def _charge_off(self, state: AccountState, day: date) -> None:
        cycle, account, balances = state.cycle, state.account, state.balances
        assert balances is not None, "an account past due always has its balances loaded"
        assert not state.principal_only, "an account past due reads every component"
        # Unbilled installments fall due at once: their principal is written off with the rest.
        balances["principal"] += charge_off_installments(self.service, account)
        amounts = {c: balances[c] for c in COMPONENTS if balances[c] > 0}
        total = sum(amounts.values())
        if total > 0:
            entry_id = f"credit_pay:charge_off:{account.account_no}"
            postings = [Posting.debit(write_off_account(account.currency), total)]
            postings += [
                Posting.credit(component_account(c, account.account_no), a) for c, a in amounts.items()
            ]
            self.drafts.append(EntryDraft(entry_id, postings, description="charge-off (write-off)"))
            for c in amounts:
                balances[c] = 0
            self._txn(state, day, "write_off", -total, day.isoformat(), entry_id)
        cycle.charged_off_on = day
        cycle.revolving = False
        account.status = "charged_off"
        self.counts["charged_off"] += 1
        payload = {
            "account_no": account.account_no,
            "partner_id": cycle.partner_id,
            "written_off_minor": total,
            "days_past_due": cycle.days_past_due,
            "currency": account.currency,
            "business_date": day.isoformat(),
        }
        self.uow.publish(
            "credit_pay.account.charged_off", payload, subject=f"credit_pay_account:{account.account_no}"
        )
        notify(
            self.service,
            "sceneos_credit_pay_bureau_report",
            report=bureau_report(account, cycle, "charged_off", day, outstanding_minor=0),
        )

    def _bill(self, state: AccountState, day: date) -> None:
        account, cycle, product = state.account, state.cycle, state.product
        balances = state.balances
        assert balances is not None, "a billing day always has its balances loaded"
        assert not state.principal_only, "a billing day reads every component"
        installments = 0
        if state.has_plans:
            billed = bill_installments(self.service, account, day)
            installments = sum(b.principal_minor + b.interest_minor + b.fee_minor for b in billed)
            # The same split as the ledger entries bill_installments_due posted.
            balances["principal"] += sum(b.principal_minor for b in billed)
            balances["interest"] += sum(b.interest_minor for b in billed)
            balances["fee"] += sum(b.fee_minor for b in billed)
        if balances["credit"] > 0:
            self._apply_credit(state, day)
        lines = [t for t in state.unbilled if t.business_date <= day]
        new_lines = [t for t in state.new_txns if t["business_date"] <= day and t["statement_no"] is None]
        sums: dict[str, int] = defaultdict(int)
        for t in lines:
            sums[t.kind] += t.amount_minor
        for row in new_lines:
            sums[row["kind"]] += row["amount_minor"]
        previous = state.last_balance_minor
        new_balance = owed(balances)
        if not lines and not new_lines and not installments and previous == 0 and new_balance == 0:
            return  # nothing to say: no statement for an idle account
        purchases = sums["purchase"] + sums["refund"]
        interest, penalty, fees = sums["interest"], sums["penalty"], sums["late_fee"]
        payments = -sums["payment"]
        explained = previous + purchases + installments + interest + penalty + fees - payments
        converted = new_balance - explained
        due_date = next_day_of_month(day, product.due_day)
        statement_no = f"{account.account_no}-{day:%Y%m%d}"
        charges = installments + interest + penalty + fees
        statement = CreditPayStatement(
            statement_no=statement_no,
            account_no=account.account_no,
            currency=account.currency,
            period_start=(cycle.last_statement_date + timedelta(days=1))
            if cycle.last_statement_date
            else self.opened_on(account),
            statement_date=day,
            due_date=due_date,
            grace_until=due_date + timedelta(days=product.grace_days),
            previous_balance_minor=previous,
            purchases_minor=purchases,
            installments_minor=installments,
            converted_minor=converted,
            interest_minor=interest,
            penalty_minor=penalty,
            fees_minor=fees,
            payments_minor=payments,
            new_balance_minor=new_balance,
            minimum_payment_minor=minimum_payment(product, new_balance, charges, cycle.past_due_minor),
            paid_minor=0,
            status="open",
            created_at=self.uow.clock.now(),
        )
        self.session.add(statement)
        if lines:
            self.tags += [{"id": t.id, "statement_no": statement_no} for t in lines]
            state.unbilled = [t for t in state.unbilled if t.business_date > day]
        for row in new_lines:
            row["statement_no"] = statement_no
        state.open_statements.append(statement)
        state.last_balance_minor = new_balance
        cycle.last_statement_date = day
        cycle.interest_since_statement_minor = 0  # all interest owed is billed now
        self.counts["statements"] += 1
        self.uow.publish(
            "credit_pay.statement.issued",
            {
                "account_no": account.account_no,
                "partner_id": cycle.partner_id,
                "statement_no": statement_no,
                "statement_date": day.isoformat(),
                "due_date": due_date.isoformat(),
                "new_balance_minor": new_balance,
                "minimum_payment_minor": statement.minimum_payment_minor,
                "currency": account.currency,
            },
            subject=f"credit_pay_account:{account.account_no}",
        )
        report = bureau_report(account, cycle, "statement", day, outstanding_minor=new_balance)
        report.update(
            statement_no=statement_no,
            new_balance_minor=new_balance,
            minimum_payment_minor=statement.minimum_payment_minor,
            due_date=due_date.isoformat(),
        )
        notify(self.service, "sceneos_credit_pay_bureau_report", report=report)

    def _apply_credit(self, state: AccountState, day: date) -> None:
        """A credit balance settles what is owed (in the allocation order) on the billing day."""
        account, balances = state.account, state.balances
        assert balances is not None
        order = allocation_order(self.service, account)
        allocation = allocate(balances["credit"], balances, order)
        used = balances["credit"] - allocation["credit"]
        if used <= 0:
            return
        from products.credit_pay.service import line_account, lines_granted_account

        entry_id = f"credit_pay:apply_credit:{account.account_no}:{day.isoformat()}"
        postings = [Posting.debit(credit_balance_account(account.account_no), used)]
        for component in COMPONENTS:
            if allocation[component]:
                postings.append(
                    Posting.credit(component_account(component, account.account_no), allocation[component])
                )
                balances[component] -= allocation[component]
        restored = line_restorable(self.ledger, account, allocation["principal"])
        if restored:
            postings += [
                Posting.debit(line_account(account.account_no), restored),
                Posting.credit(lines_granted_account(account.currency), restored),
            ]
        balances["credit"] -= used
        self.drafts.append(EntryDraft(entry_id, postings, description="credit balance applied"))


# --- shared with repayment -----------------------------------------------------------------------


def bill_installments(service: CreditPayService, account: CreditPayAccount, day: date) -> list[Any]:
    """Installments due on the statement of ``day`` (products/credit_pay/installments.py), or none
    while installment conversion is not installed."""
    try:
        from products.credit_pay.installments import bill_installments_due
    except ImportError:
        return []
    return list(bill_installments_due(service.session, service.ledger, account, day))


def charge_off_installments(service: CreditPayService, account: CreditPayAccount) -> int:
    """Close the account's active installment plans at its charge-off (installments.py); the
    unbilled principal moved to the revolving receivable, 0 while conversion is not installed."""
    try:
        from products.credit_pay.installments import InstallmentService
    except ImportError:
        return 0
    return InstallmentService(service).charge_off(account)


def allocation_order(service: CreditPayService, account: CreditPayAccount) -> list[str]:
    product = service._product(account.product_code)
    default = list(product.repayment_allocation)
    chosen = service.hooks.hook.sceneos_credit_pay_allocation_order(
        tenant=service.tenant,
        account_no=account.account_no,
        product=account.product_code,
        default=list(default),
    )
    if chosen is None:
        return default
    if not isinstance(chosen, list | tuple) or sorted(chosen) != sorted(COMPONENTS):
        raise ValidationFailed(
            f"the bank's allocation order {chosen!r} is not a permutation of {', '.join(COMPONENTS)}",
            details=[
                {"field": "allocation", "code": "invalid_allocation_order", "message": "check the plugin"}
            ],
        )
    return list(chosen)


def bureau_report(
    account: CreditPayAccount, cycle: CreditPayCycle | CycleRow, reason: str, day: date, *, outstanding_minor: int
) -> dict[str, Any]:
    return {
        "reason": reason,
        "account_no": account.account_no,
        "customer_no": account.customer_no,
        "product": account.product_code,
        "currency": account.currency,
        "line_minor": account.line_minor,
        "outstanding_minor": outstanding_minor,
        "past_due_minor": cycle.past_due_minor,
        "days_past_due": cycle.days_past_due,
        "bucket": cycle.bucket,
        "business_date": day.isoformat(),
    }


def notify(service: CreditPayService, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of a notification hook; a failing plugin is logged, not fatal."""
    for plugin_name, call in service.hooks.implementations(hook_name):
        try:
            call(tenant=service.tenant, **kwargs)
        except Exception as exc:  # one plugin's failure must not stop end of day
            log.warning(
                "credit_pay.hook_failed", hook=hook_name, plugin=plugin_name, error=type(exc).__name__
            )


def set_bucket(
    service: CreditPayService,
    account: CreditPayAccount,
    cycle: CreditPayCycle | CycleRow,
    bucket: str,
    day: date,
    balances: Mapping[str, int] | None,
) -> None:
    """Move the account to ``bucket``; on a change tell collections, the bureau and partners."""
    previous = cycle.bucket
    if bucket == previous:
        return
    cycle.bucket = bucket
    outstanding = owed(balances) if balances is not None else 0
    case = {
        "account_no": account.account_no,
        "customer_no": account.customer_no,
        "product": account.product_code,
        "bucket": bucket,
        "previous_bucket": previous,
        "days_past_due": cycle.days_past_due,
        "past_due_minor": cycle.past_due_minor,
        "outstanding_minor": outstanding,
        "currency": account.currency,
        "business_date": day.isoformat(),
    }
    notify(service, "sceneos_credit_pay_collections", case=case)
    notify(
        service,
        "sceneos_credit_pay_bureau_report",
        report=bureau_report(account, cycle, "overdue", day, outstanding_minor=outstanding),
    )
    service.uow.publish(
        "credit_pay.account.bucket_changed",
        {k: v for k, v in case.items() if k != "customer_no"} | {"partner_id": cycle.partner_id},
        subject=f"credit_pay_account:{account.account_no}",
    )


def run_through(
    service: CreditPayService, accounts: Sequence[CreditPayAccount], through: date, *, batch: bool = False
) -> dict[str, int]:
    """Bring ``accounts`` to the end of ``through`` (no-op for those already there); ``batch`` when
    the end-of-day job does it (``Lifecycle.batch``)."""
    engine = Lifecycle(service, batch=batch)
    states = engine.load(accounts, through)
    if not states:
        return {"accounts": 0}
    counts = engine.advance(states, through)
    engine._write_txns(states)
    return counts


# --- the compute job -----------------------------------------------------------------------------


def _plan(ctx: Any) -> Sequence[str]:
    low, high = ctx.session.execute(
        select(func.min(CreditPayAccount.id), func.max(CreditPayAccount.id))
    ).one()
    keys = [HOLDS_KEY]
    if low is None:
        return keys
    start = low - (low - 1) % PARTITION_SIZE
    while start <= high:
        keys.append(f"{start:012d}-{start + PARTITION_SIZE - 1:012d}")
        start += PARTITION_SIZE
    return keys


def _run_partition(ctx: Any) -> Mapping[str, Any]:
    if ctx.business_date >= ctx.tenant.business_date():
        raise ValidationFailed(
            f"end of day for {ctx.business_date} cannot run before that day has ended "
            f"(the bank's business date is {ctx.tenant.business_date()})",
            details=[{"field": "business_date", "code": "day_not_ended", "message": "run it tomorrow"}],
        )
    service = ctx.module("credit_pay").container.service(uow=ctx.uow)
    if ctx.key == HOLDS_KEY:
        return expire_holds(service)
    first, last = (int(part) for part in ctx.key.split("-"))
    accounts = list(
        ctx.session.scalars(
            select(CreditPayAccount)
            .join(CreditPayCycle, CreditPayCycle.account_no == CreditPayAccount.account_no, isouter=True)
            .where(
                CreditPayAccount.id.between(first, last),
                (CreditPayCycle.id.is_(None)) | (CreditPayCycle.processed_through < ctx.business_date),
            )
            .order_by(CreditPayAccount.id)
            .with_for_update(of=CreditPayAccount)
        )
    )
    return run_through(service, accounts, ctx.business_date, batch=True)


def expire_holds(service: CreditPayService) -> dict[str, int]:
    """Release authorizations past their expiry (the ledger's holds) and mark the purchases."""
    expired = service.ledger.expire_pending()
    now = service.uow.clock.now()
    result = service.session.execute(
        update(CreditPayPurchase)
        .where(
            CreditPayPurchase.status == "authorized",
            CreditPayPurchase.expires_at.is_not(None),
            CreditPayPurchase.expires_at <= now,
        )
        .values(status="expired", resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return {"holds_expired": len(expired), "purchases_expired": int(getattr(result, "rowcount", 0) or 0)}


END_OF_DAY = JobSpec(
    name="credit_pay.end_of_day",
    partitions=_plan,
    run_partition=_run_partition,
    description="Credit pay end of day: accrue interest, bill, check due dates, late fees and penalty, "
    "age buckets, charge off, expire uncaptured authorizations",
)
