"""Credit pay: activation, purchases on the line, installment trials. No HTTP here.

Obtain a service per unit of work::

    runtime = tenant.module("credit_pay")
    with tenant.unit_of_work() as uow:
        pay = runtime.container.service(uow=uow)
        result = pay.activate(ActivationDraft(request_id="act-1", customer_no="cus_...", consented={...}))
        pay.authorize(PurchaseDraft(purchase_id="p-1", account_no=result.account.account_no,
                                    merchant_id="air_ticketing", amount_minor=186_000))
        pay.capture("p-1"); pay.refund("p-1", "r-1", 186_000)
        pay.trial("standard", 186_000)

Money lives in the ledger. Per credit account:

* ``credit_pay:line:<account_no>`` (asset, ``credits_must_not_exceed_debits``): the line is
  debited when granted; every purchase credits it, so the ledger itself refuses a purchase that
  exceeds the available line, even between concurrent authorizations;
* ``credit_pay:receivable:<account_no>`` (asset): what the customer owes.

A purchase is one entry of four postings (receivable debit, merchant payable credit, line credit,
``credit_pay:lines_granted:<currency>`` debit): pending while authorized, posted on capture,
voided on cancel. A refund posts the mirror for the refunded amount, restoring the line.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, func, inspect, select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, Rejected, ValidationFailed
from core.money import RoundingMode
from core.plugins import TenantHooks
from core.statements import run, tenant_bound, tenant_filter
from core.tenancy import UnitOfWork
from infra.ledger import (
    BalanceConstraint,
    EntryDraft,
    InsufficientFunds,
    Ledger,
    PendingExpired,
    Posting,
    UnknownAccount,
)
from middle.risk.service import AccountInfo, ActivationRequest, PurchaseRequest
from products.credit_pay.calc import Method, Schedule, schedule
from products.credit_pay.models import (
    CreditPayAccount,
    CreditPayApplication,
    CreditPayCycle,
    CreditPayPurchase,
    CreditPayRefund,
    CreditPayTransaction,
)
from products.credit_pay.settings import ID_PATTERN, CreditPaySettings, CreditProduct, MerchantSubsidisedPlan

MODULE = "credit_pay"
ACCOUNT_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

# The unit of work of an activation in progress, so the credit module's internal-history hook
# (called inside the risk decision, with only the tenant) reads this product's rows in the same
# transaction rather than opening a second one (which SQLite's single writer would block).
_active_session: ContextVar[tuple[str, Session] | None] = ContextVar("credit_pay_session", default=None)
# session.info key: account number -> its cycle as read in this unit of work (see catch_up).
_CURRENT_CYCLES_KEY = "credit_pay_current_cycles"

# An authorization's two reads of purchases, as Core statements built once: through the ORM session
# each cost about three times the client CPU, and neither needs an ORM object.
_PURCHASES = CreditPayPurchase.__table__
_PURCHASE_EXISTS = tenant_bound(
    select(_PURCHASES.c.id).where(tenant_filter(_PURCHASES), _PURCHASES.c.purchase_id == bindparam("purchase_id"))
)
_SPENT_TODAY = tenant_bound(
    select(func.coalesce(func.sum(_PURCHASES.c.amount_minor), 0)).where(
        tenant_filter(_PURCHASES),
        _PURCHASES.c.account_no == bindparam("account_no"),
        _PURCHASES.c.business_date == bindparam("today", type_=_PURCHASES.c.business_date.type),
        _PURCHASES.c.status.in_(("authorized", "captured")),
    )
)


def line_account(account_no: str) -> str:
    return f"credit_pay:line:{account_no}"


def receivable_account(account_no: str) -> str:
    return f"credit_pay:receivable:{account_no}"


def lines_granted_account(currency: str) -> str:
    return f"credit_pay:lines_granted:{currency}"


def merchant_account(currency: str, merchant_id: str) -> str:
    return f"credit_pay:merchant:{currency}:{merchant_id}"


def _id_field(description: str) -> Any:
    return Field(min_length=1, max_length=64, pattern=ID_PATTERN, description=description)


# --- inputs --------------------------------------------------------------------------------------


class ActivationDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = _id_field("caller's id of this application; a retry with it returns the same answer")
    customer_no: str = Field(min_length=1, max_length=32)
    product: str = Field(default="standard", min_length=1, max_length=32)
    consented: dict[str, Any] = Field(
        default_factory=dict, description="consented data for the credit decision"
    )
    device_id: str | None = Field(default=None, max_length=128)


class PurchaseDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    purchase_id: str = _id_field("caller's id of the purchase; a retry with it returns the same answer")
    account_no: str = Field(min_length=1, max_length=40)
    merchant_id: str = _id_field("the merchant selling")
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    merchant_category: str | None = Field(default=None, max_length=32)


# --- views ---------------------------------------------------------------------------------------


class AccountView(BaseModel):
    account_no: str
    customer_no: str
    product: str
    display_name: str
    currency: str
    status: str
    line_minor: int
    available_minor: int
    held_minor: int
    outstanding_minor: int
    annual_rate_bps: int
    fee_rate_bps: int
    created_at: datetime
    # The lifecycle (end of day, repayments): what is owed by component, net of a credit balance.
    interest_minor: int = 0
    penalty_minor: int = 0
    fees_minor: int = 0
    credit_balance_minor: int = 0
    balance_minor: int = 0
    past_due_minor: int = 0
    days_past_due: int = 0
    bucket: str = "M0"
    revolving: bool = False
    processed_through: date | None = None


class ActivationView(BaseModel):
    request_id: str
    customer_no: str
    product: str
    outcome: str
    reasons: list[str]
    decision_no: str
    account: AccountView | None
    created: bool = True


class PurchaseView(BaseModel):
    purchase_id: str
    account_no: str
    merchant_id: str
    amount_minor: int
    currency: str
    status: str
    reasons: list[str]
    refunded_minor: int
    decision_no: str | None
    created_at: datetime
    expires_at: datetime | None
    resolved_at: datetime | None
    created: bool = True


class RefundView(BaseModel):
    refund_id: str
    purchase_id: str
    amount_minor: int
    created_at: datetime
    created: bool = True


class InstallmentView(BaseModel):
    number: int
    principal_minor: int
    charge_minor: int
    total_minor: int


class PlanTrial(BaseModel):
    terms: int
    method: str
    period_rate_bps: str
    principal_minor: int
    total_charge_minor: int
    total_minor: int
    annualized_rate_bps: str
    installments: list[InstallmentView]
    # A merchant's interest-free plan (asked with merchant_id): who pays the charges instead of
    # the customer, and how much.
    subsidised_by: str | None = None
    merchant_subsidy_minor: int = 0

    @classmethod
    def of(
        cls, plan_rate_bps: str, result: Schedule, *, subsidised_by: str | None = None, subsidy_minor: int = 0
    ) -> PlanTrial:
        return cls(
            subsidised_by=subsidised_by,
            merchant_subsidy_minor=subsidy_minor,
            terms=result.terms,
            method=result.method.value,
            period_rate_bps=plan_rate_bps,
            principal_minor=result.principal_minor,
            total_charge_minor=result.total_charge_minor,
            total_minor=result.total_minor,
            annualized_rate_bps=str(result.annualized_rate_bps),
            installments=[
                InstallmentView(
                    number=i.number,
                    principal_minor=i.principal_minor,
                    charge_minor=i.charge_minor,
                    total_minor=i.total_minor,
                )
                for i in result.installments
            ],
        )


class TrialView(BaseModel):
    product: str
    currency: str
    amount_minor: int
    annual_rate_ceiling_bps: int
    plans: list[PlanTrial]
    # Plans of the product that this amount would price above the ceiling: never offered.
    withheld: list[str]


@dataclass(frozen=True)
class _Balances:
    line_minor: int
    available_minor: int
    held_minor: int
    outstanding_minor: int


def _check_id(value: str, field: str) -> str:
    if not isinstance(value, str) or not re.match(ID_PATTERN, value):
        raise ValidationFailed(
            f"{field} must be 1 to 64 of A-Z a-z 0-9 _ . : - (starting alphanumeric)",
            details=[{"field": field, "code": "invalid", "message": "not a valid id"}],
        )
    return value


class CreditPayService:
    """Operations of one tenant's credit-pay product within one unit of work."""

    def __init__(
        self, uow: UnitOfWork, settings: CreditPaySettings, hooks: TenantHooks, partner_id: str | None = None
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.tenant = uow.tenant
        self.settings = settings
        self.hooks = hooks
        self.partner_id = partner_id

    @property
    def ledger(self) -> Ledger:
        return self.tenant.module("ledger").container.ledger(session=self.session)

    def _product(self, code: str) -> CreditProduct:
        product = self.settings.product(code)
        if product is None:
            raise NotFound(
                f"no credit product {code!r}",
                details=[{"field": "product", "code": "unknown_product", "message": "not configured"}],
            )
        return product

    # --- activation ---------------------------------------------------------------------------

    def activate(self, draft: ActivationDraft) -> ActivationView:
        """Ask the risk module to decide; on approval open the credit account with its line."""
        product = self._product(draft.product)
        existing = self.session.scalars(
            select(CreditPayApplication).where(CreditPayApplication.request_id == draft.request_id)
        ).one_or_none()
        if existing is not None:
            for name in ("customer_no", "product"):
                stored = existing.customer_no if name == "customer_no" else existing.product_code
                if stored != getattr(draft, name):
                    raise Conflict(
                        f"application {draft.request_id!r} exists with a different {name}",
                        details=[
                            {
                                "field": name,
                                "code": f"exists_with_different_{name}",
                                "message": "differs from the stored application",
                            }
                        ],
                    )
            return self._application_view(existing, created=False)
        if self._account_of(draft.customer_no, draft.product) is not None:
            raise Conflict(
                "the customer already has an account of this product",
                details=[{"field": "customer_no", "code": "account_exists", "message": "already activated"}],
            )
        risk = self.tenant.module("risk").container.service(uow=self.uow)
        request = ActivationRequest(
            customer_no=draft.customer_no,
            consented=dict(draft.consented),
            request_id=f"credit_pay:{draft.request_id}",
            partner_id=self.partner_id,
            product=f"credit_pay:{draft.product}",
            device_id=draft.device_id,
        )
        with self._in_decision():
            decision = risk.decide_activation(request)
        outcome, reasons, account = decision.outcome, list(decision.reasons), None
        if decision.approved:
            refused, account = self._take_offer(
                draft.customer_no, draft.product, product, decision.decision_no, decision.offer
            )
            if refused:
                outcome, reasons = "decline", [refused]
        row = CreditPayApplication(
            request_id=draft.request_id,
            customer_no=draft.customer_no,
            product_code=draft.product,
            partner_id=self.partner_id,
            outcome=outcome,
            reasons=reasons,
            decision_no=decision.decision_no,
            account_no=account.account_no if account else None,
            created_at=self.uow.clock.now(),
        )
        self.session.add(row)
        self.session.flush()
        self._publish_decided(row, account)
        return self._application_view(row, created=True)

    def _take_offer(
        self, customer_no: str, product_code: str, product: CreditProduct, decision_no: str, offer: Any
    ) -> tuple[str | None, CreditPayAccount | None]:
        """An approved decision's offer, checked against the product: the account opened, or the
        reason to decline (no line, another currency, a price above the product's ceiling)."""
        if offer is None or offer.line_minor <= 0:
            return "no_line_offered", None
        if offer.currency != product.currency:
            return "offer_currency_not_product_currency", None
        if product.effective_rate_bps(offer.annual_rate_bps) + offer.fee_rate_bps > product.annual_rate_ceiling_bps:
            return "price_above_product_ceiling", None
        return None, self._open_account(customer_no, product_code, product, decision_no, offer)

    def _publish_decided(
        self, row: CreditPayApplication, account: CreditPayAccount | None, **extra: Any
    ) -> None:
        self.uow.publish(
            "credit_pay.activation.decided",
            {
                "request_id": row.request_id,
                "customer_no": row.customer_no,
                "product": row.product_code,
                "outcome": row.outcome,
                "reasons": list(row.reasons),
                "partner_id": row.partner_id,
                "account_no": row.account_no,
                "line_minor": account.line_minor if account else None,
                **extra,
            },
            subject=f"customer:{row.customer_no}",
        )

    @contextmanager
    def _in_decision(self) -> Iterator[None]:
        token = _active_session.set((self.tenant.id, self.session))
        try:
            yield
        finally:
            _active_session.reset(token)

    def _open_account(
        self, customer_no: str, product_code: str, product: CreditProduct, decision_no: str, offer: Any
    ) -> CreditPayAccount:
        account_no = "cpa_" + "".join(secrets.choice(ACCOUNT_ALPHABET) for _ in range(16))
        row = CreditPayAccount(
            account_no=account_no,
            customer_no=customer_no,
            product_code=product_code,
            currency=product.currency,
            line_minor=offer.line_minor,
            annual_rate_bps=offer.annual_rate_bps,
            fee_rate_bps=offer.fee_rate_bps,
            decision_no=decision_no,
            status="active",
            created_at=self.uow.clock.now(),
        )
        self.session.add(row)
        self.session.flush()
        ledger = self.ledger
        ledger.open_account(lines_granted_account(product.currency), product.currency, "liability")
        ledger.open_account(
            line_account(account_no),
            product.currency,
            "asset",
            "customer",
            customer_no,
            constraint=BalanceConstraint.CREDITS_MUST_NOT_EXCEED_DEBITS,
        )
        ledger.open_account(receivable_account(account_no), product.currency, "asset", "customer", customer_no)
        ledger.post(
            EntryDraft(
                f"credit_pay:grant:{account_no}",
                [
                    Posting.debit(line_account(account_no), offer.line_minor),
                    Posting.credit(lines_granted_account(product.currency), offer.line_minor),
                ],
                description="credit line granted",
                metadata={"decision_no": decision_no},
            )
        )
        from products.credit_pay.end_of_day import Lifecycle

        Lifecycle(self).ensure_cycle(row)
        return row

    def _application_view(self, row: CreditPayApplication, *, created: bool) -> ActivationView:
        account = None
        if row.account_no is not None:
            account = self.account(row.account_no)
        return ActivationView(
            request_id=row.request_id,
            customer_no=row.customer_no,
            product=row.product_code,
            outcome=row.outcome,
            reasons=list(row.reasons),
            decision_no=row.decision_no,
            account=account,
            created=created,
        )

    # --- accounts -----------------------------------------------------------------------------

    def _account_of(self, customer_no: str, product: str) -> CreditPayAccount | None:
        return self.session.scalars(
            select(CreditPayAccount).where(
                CreditPayAccount.customer_no == customer_no, CreditPayAccount.product_code == product
            )
        ).one_or_none()

    def _account_row(self, account_no: str, *, lock: bool = False) -> CreditPayAccount:
        stmt = select(CreditPayAccount).where(CreditPayAccount.account_no == account_no)
        if lock:
            # Serializes one account's authorizations, so the daily limit holds under concurrency.
            stmt = stmt.with_for_update()
        row = self.session.scalars(stmt).one_or_none()
        if row is None:
            raise NotFound(f"no credit account {account_no!r}")
        return row

    def _account_with_cycle(
        self, account_no: str, *, lock: bool = False, owner: str | None = None
    ) -> CreditPayAccount:
        """The account row (``lock``: locked, as ``_account_row(lock=True)``) with its cycle read in
        the same statement and kept for ``catch_up``, which then needs no read while it is current;
        NotFound also when ``owner`` is given and is not its customer (another customer's account
        does not exist for them)."""
        stmt = (
            select(CreditPayAccount, CreditPayCycle)
            .outerjoin(CreditPayCycle, CreditPayCycle.account_no == CreditPayAccount.account_no)
            .where(CreditPayAccount.account_no == account_no)
        )
        if lock:
            stmt = stmt.with_for_update(of=CreditPayAccount)
        found = self.session.execute(stmt).one_or_none()
        if found is None or (owner is not None and found[0].customer_no != owner):
            raise NotFound(f"no credit account {account_no!r}")
        row, cycle = found
        if cycle is not None:
            self.session.info.setdefault(_CURRENT_CYCLES_KEY, {})[account_no] = cycle
        return row

    def _balances(self, row: CreditPayAccount) -> _Balances:
        balances = self.ledger.balances([line_account(row.account_no), receivable_account(row.account_no)])
        line = balances[line_account(row.account_no)]
        receivable = balances[receivable_account(row.account_no)]
        return _Balances(
            line_minor=row.line_minor,
            available_minor=line.available_minor,
            held_minor=line.credits_pending_minor,
            outstanding_minor=receivable.net_posted_minor,
        )

    def _account_view(self, row: CreditPayAccount, cycle: CreditPayCycle | None = None) -> AccountView:
        """``cycle``: the account's cycle if the caller has it (``catch_up`` returns it)."""
        from products.credit_pay.end_of_day import owed, read_balances

        product = self._product(row.product_code)
        if cycle is None:
            cycle = self.session.scalars(
                select(CreditPayCycle).where(CreditPayCycle.account_no == row.account_no)
            ).one_or_none()
        lifecycle: dict[str, Any] = {}
        if cycle is None:
            balances = self._balances(row)
        else:
            # The principal receivable is among the lifecycle balances: read it once, and only the
            # line's balance row besides.
            owed_by = read_balances(self.ledger, [row.account_no])[row.account_no]
            line = self.ledger.balance(line_account(row.account_no))
            balances = _Balances(
                line_minor=row.line_minor,
                available_minor=line.available_minor,
                held_minor=line.credits_pending_minor,
                outstanding_minor=owed_by["principal"],
            )
            lifecycle = {
                "interest_minor": owed_by["interest"],
                "penalty_minor": owed_by["penalty"],
                "fees_minor": owed_by["fee"],
                "credit_balance_minor": owed_by["credit"],
                "balance_minor": owed(owed_by),
                "past_due_minor": cycle.past_due_minor,
                "days_past_due": cycle.days_past_due,
                "bucket": cycle.bucket,
                "revolving": cycle.revolving,
                "processed_through": cycle.processed_through,
            }
        return AccountView(
            **lifecycle,
            account_no=row.account_no,
            customer_no=row.customer_no,
            product=row.product_code,
            display_name=product.display_name(self.partner_id),
            currency=row.currency,
            status=row.status,
            line_minor=row.line_minor,
            available_minor=balances.available_minor,
            held_minor=balances.held_minor,
            outstanding_minor=balances.outstanding_minor,
            annual_rate_bps=row.annual_rate_bps,
            fee_rate_bps=row.fee_rate_bps,
            created_at=row.created_at,
        )

    def account(self, account_no: str) -> AccountView:
        row = self._account_with_cycle(account_no)
        return self._account_view(row, self.catch_up(row))

    # --- lifecycle: catch-up, repayment, statements (end_of_day.py, repayment.py, billing.py) ----

    def catch_up(self, account: CreditPayAccount) -> CreditPayCycle:
        """Run the end-of-day dates the account has missed, through yesterday, before it is
        touched (Fineract's inline close of business). A no-op when it is up to date."""
        from products.credit_pay.end_of_day import Lifecycle, run_through

        through = self.tenant.business_date() - timedelta(days=1)
        # A request touches its account several times (the partner's ownership check, then the
        # operation): a cycle already read in this unit of work is not read again while current.
        # The check is on the row's state now, so a savepoint rolled back never leaves it stale.
        current: dict[str, CreditPayCycle] = self.session.info.setdefault(_CURRENT_CYCLES_KEY, {})
        cycle = current.get(account.account_no)
        if cycle is not None and inspect(cycle).persistent and cycle.processed_through >= through:
            return cycle
        cycle = Lifecycle(self).ensure_cycle(account)
        if cycle.processed_through < through:
            # Behind: take the account's lock (the batch holds it while it works on the account),
            # then the engine re-reads the cycle, so a day is never run twice concurrently.
            run_through(self, [self._account_row(account.account_no, lock=True)], through)
        current[account.account_no] = cycle
        return cycle

    def repay(self, draft: Any) -> Any:
        """Apply a repayment (``repayment.RepaymentDraft``); see ``products/credit_pay/repayment.py``."""
        from products.credit_pay.repayment import repay

        return repay(self, draft)

    def repayments(self, account_no: str) -> list[Any]:
        from products.credit_pay.repayment import repayments

        self._account_row(account_no)
        return repayments(self, account_no)

    def statements(self, account_no: str) -> list[Any]:
        """The account's statements, newest first."""
        from products.credit_pay.billing import statements

        self.catch_up(self._account_row(account_no))
        return statements(self, account_no)

    def statement(self, statement_no: str) -> Any:
        """One statement with its lines."""
        from products.credit_pay.billing import statement

        return statement(self, statement_no)

    def statement_account(self, statement_no: str) -> str:
        from products.credit_pay.billing import statement_account

        return statement_account(self, statement_no)

    def transactions(self, account_no: str) -> list[Any]:
        """Every movement of the account's balance, oldest first."""
        from products.credit_pay.billing import transactions

        self.catch_up(self._account_row(account_no))
        return transactions(self, account_no)

    def _record(self, account_no: str, kind: str, amount_minor: int, reference: str, entry_id: str) -> None:
        self.session.add(
            CreditPayTransaction(
                account_no=account_no,
                business_date=self.tenant.business_date(),
                kind=kind,
                amount_minor=amount_minor,
                reference=reference,
                entry_id=entry_id,
                statement_no=None,
                created_at=self.uow.clock.now(),
            )
        )

    def accounts_of(self, customer_no: str) -> list[AccountView]:
        rows = self.session.scalars(
            select(CreditPayAccount)
            .where(CreditPayAccount.customer_no == customer_no)
            .order_by(CreditPayAccount.id)
        ).all()
        return [self._account_view(row) for row in rows]

    def internal_history(self, customer_no: str) -> dict[str, int] | None:
        """What this product knows of the customer, for the credit module's profile."""
        rows = self.session.scalars(
            select(CreditPayAccount)
            .where(CreditPayAccount.customer_no == customer_no)
            .order_by(CreditPayAccount.id)
        ).all()
        if not rows:
            return None
        line = used = 0
        for row in rows:
            balances = self._balances(row)
            line += row.line_minor
            used += max(row.line_minor - balances.available_minor, 0)
        history = {"existing_line_minor": line, "outstanding_minor": used, "existing_credit_count": len(rows)}
        # Days past due as end of day last left them (the history is read, never caught up here).
        days = list(
            self.session.scalars(
                select(CreditPayCycle.days_past_due).where(
                    CreditPayCycle.account_no.in_([row.account_no for row in rows])
                )
            )
        )
        if days and max(days) > 0:  # absent means current
            history["current_days_past_due"] = max(days)
        return history

    # --- purchases ----------------------------------------------------------------------------

    def authorize(self, draft: PurchaseDraft, *, owner: str | None = None) -> PurchaseView:
        """Hold ``amount_minor`` on the line after the limits and the risk module's purchase check.

        A refusal is an answer, not an error: the purchase is recorded ``declined`` with reasons,
        so a retry with the same ``purchase_id`` gets the same answer. ``owner``: the signed-in
        customer, whose account it must be (NotFound otherwise), checked on the row this reads
        anyway rather than by a read of its own."""
        # The account's lock first: a retry racing the original waits, then finds its answer.
        account = self._account_with_cycle(draft.account_no, lock=True, owner=owner)
        _check_id(draft.purchase_id, "purchase_id")
        if run(self.uow, _PURCHASE_EXISTS, {"purchase_id": draft.purchase_id}).first() is not None:
            existing = self._purchase_row(draft.purchase_id)
            self._same_purchase(existing, draft)
            return self._purchase_view(existing, created=False)
        self.catch_up(account)
        product = self._product(account.product_code)
        if draft.currency is not None and draft.currency.upper() != account.currency:
            raise ValidationFailed(
                f"the account is in {account.currency}, not {draft.currency}",
                details=[
                    {
                        "field": "currency",
                        "code": "currency_mismatch",
                        "message": f"the account is in {account.currency}",
                    }
                ],
            )
        if account.status != "active":
            raise Conflict(f"credit account {account.account_no} is {account.status}")
        now = self.uow.clock.now()
        today = self.tenant.business_date()
        row = CreditPayPurchase(
            purchase_id=draft.purchase_id,
            account_no=account.account_no,
            merchant_id=draft.merchant_id,
            partner_id=self.partner_id,
            amount_minor=draft.amount_minor,
            currency=account.currency,
            status="declined",
            reasons=[],
            decision_no=None,
            refunded_minor=0,
            business_date=today,
            created_at=now,
            expires_at=None,
            resolved_at=None,
        )
        reasons = self._limit_reasons(account, product, draft.amount_minor, today)
        # Only the line's balance row: the receivable (summed from its postings) is not needed here.
        available_minor = self.ledger.balance(line_account(account.account_no)).available_minor
        if not reasons and available_minor < draft.amount_minor:
            reasons = ["insufficient_available_line"]
        if not reasons:
            risk = self.tenant.module("risk").container.service(uow=self.uow)
            decision = risk.authorize_purchase(
                PurchaseRequest(
                    customer_no=account.customer_no,
                    amount_minor=draft.amount_minor,
                    currency=account.currency,
                    merchant_id=draft.merchant_id,
                    merchant_category=draft.merchant_category,
                    account=AccountInfo(line_minor=account.line_minor, available_minor=available_minor),
                    request_id=f"credit_pay:{draft.purchase_id}",
                    partner_id=self.partner_id,
                    product=f"credit_pay:{account.product_code}",
                ),
                # The purchase id was just found new under the account's lock, so is this request id.
                request_id_unseen=True,
            )
            row.decision_no = decision.decision_no
            if not decision.approved:
                reasons = list(decision.reasons) or [f"risk_{decision.outcome}"]
        if not reasons:
            expires_at = now + timedelta(minutes=product.authorization_hold_minutes)
            try:
                self._hold(account, draft, expires_at)
            except InsufficientFunds:
                # A concurrent purchase took the line between the check and the hold.
                reasons = ["insufficient_available_line"]
            else:
                row.status, row.expires_at = "authorized", expires_at
        row.reasons = reasons
        self.session.add(row)
        self.session.flush()
        event = (
            "credit_pay.purchase.authorized" if row.status == "authorized" else "credit_pay.purchase.declined"
        )
        self._publish(event, row)
        return self._purchase_view(row, created=True)

    def _limit_reasons(
        self, account: CreditPayAccount, product: CreditProduct, amount: int, today: Any
    ) -> list[str]:
        if amount > product.max_purchase_minor:
            return ["above_purchase_limit"]
        self.session.flush()  # a Core read: the catch-up's ORM changes (expired holds) go out first
        spent = run(self.uow, _SPENT_TODAY, {"account_no": account.account_no, "today": today}).scalar_one()
        if spent + amount > product.max_daily_minor:
            return ["above_daily_limit"]
        return []

    def _hold(self, account: CreditPayAccount, draft: PurchaseDraft, expires_at: datetime) -> None:
        merchant = merchant_account(account.currency, draft.merchant_id)
        ledger = self.ledger
        amount = draft.amount_minor
        hold = EntryDraft(
            self._auth_entry(draft.purchase_id),
            [
                Posting.debit(receivable_account(account.account_no), amount),
                Posting.credit(merchant, amount),
                Posting.credit(line_account(account.account_no), amount),
                Posting.debit(lines_granted_account(account.currency), amount),
            ],
            description="credit purchase",
            metadata={"purchase_id": draft.purchase_id},
            pending=True,
            expires_at=expires_at,
        )
        try:
            ledger.post(hold)
        except UnknownAccount:
            # The merchant's first purchase: its payable is opened then. Posting first spares every
            # later purchase the account lookup (a post to an unknown account writes nothing).
            ledger.open_account(merchant, account.currency, "liability", "merchant", draft.merchant_id)
            ledger.post(hold)

    @staticmethod
    def _auth_entry(purchase_id: str) -> str:
        return f"credit_pay:purchase:{purchase_id}"

    def capture(self, purchase_id: str) -> PurchaseView:
        """Post the held purchase. Capturing a captured purchase returns it unchanged."""
        row = self._purchase_row(purchase_id, lock=True)
        if row.status == "captured":
            return self._purchase_view(row, created=False)
        self._require_authorized(row, "captured")
        self.catch_up(self._account_row(row.account_no, lock=True))
        try:
            self.ledger.post_pending(self._auth_entry(purchase_id), f"credit_pay:capture:{purchase_id}")
        except PendingExpired:
            raise Conflict(
                f"authorization {purchase_id!r} expired before capture",
                details=[
                    {"field": "purchase_id", "code": "authorization_expired", "message": "authorize again"}
                ],
            ) from None
        row.status, row.resolved_at = "captured", self.uow.clock.now()
        self._record(
            row.account_no, "purchase", row.amount_minor, purchase_id, f"credit_pay:capture:{purchase_id}"
        )
        self.session.flush()
        self._publish("credit_pay.purchase.captured", row)
        return self._purchase_view(row, created=True)

    def cancel(self, purchase_id: str) -> PurchaseView:
        """Release the hold. Cancelling a cancelled (or expired) authorization returns it unchanged."""
        row = self._purchase_row(purchase_id, lock=True)
        if row.status == "cancelled" or self._status(row) == "expired":
            return self._purchase_view(row, created=False)
        if row.status == "captured":
            raise Conflict(
                f"purchase {purchase_id!r} is captured: refund it instead",
                details=[
                    {
                        "field": "purchase_id",
                        "code": "already_captured",
                        "message": "refund a captured purchase",
                    }
                ],
            )
        self._require_authorized(row, "cancelled")
        self.ledger.void_pending(self._auth_entry(purchase_id), f"credit_pay:cancel:{purchase_id}")
        row.status, row.resolved_at = "cancelled", self.uow.clock.now()
        self.session.flush()
        self._publish("credit_pay.purchase.cancelled", row)
        return self._purchase_view(row, created=True)

    def refund(self, purchase_id: str, refund_id: str, amount_minor: int) -> RefundView:
        """Refund all or part of a captured purchase, restoring the line by that amount. The
        installment plan the purchase was converted into is reduced by the refund (its unbilled
        installments scheduled again for what is left) or, refunded in full or by at least its
        unbilled principal, closed (that principal back to the revolving balance, which the refund
        has just credited; nothing more billed)."""
        _check_id(refund_id, "refund_id")
        if type(amount_minor) is not int or amount_minor <= 0:
            raise ValidationFailed(
                "amount_minor must be a positive integer",
                details=[{"field": "amount_minor", "code": "invalid", "message": "must be > 0"}],
            )
        existing = self.session.scalars(
            select(CreditPayRefund).where(CreditPayRefund.refund_id == refund_id)
        ).one_or_none()
        if existing is not None:
            if (existing.purchase_id, existing.amount_minor) != (purchase_id, amount_minor):
                field = "purchase_id" if existing.purchase_id != purchase_id else "amount_minor"
                raise Conflict(
                    f"refund {refund_id!r} exists with a different {field}",
                    details=[
                        {
                            "field": field,
                            "code": f"exists_with_different_{field}",
                            "message": "differs from the stored refund",
                        }
                    ],
                )
            return self._refund_view(existing, created=False)
        row = self._purchase_row(purchase_id, lock=True)
        if row.status != "captured":
            raise Conflict(
                f"purchase {purchase_id!r} is {self._status(row)}; only a captured purchase is refunded",
                details=[
                    {
                        "field": "purchase_id",
                        "code": "not_captured",
                        "message": "cancel an authorization instead",
                    }
                ],
            )
        refundable = row.amount_minor - row.refunded_minor
        if amount_minor > refundable:
            raise Rejected(
                f"refund of {amount_minor} exceeds the refundable {refundable}",
                details=[
                    {
                        "field": "amount_minor",
                        "code": "exceeds_refundable",
                        "message": f"at most {refundable}",
                    }
                ],
            )
        account = self._account_row(row.account_no, lock=True)
        self.catch_up(account)
        self.ledger.post(
            EntryDraft(
                f"credit_pay:refund:{refund_id}",
                [
                    Posting.debit(merchant_account(row.currency, row.merchant_id), amount_minor),
                    Posting.credit(receivable_account(account.account_no), amount_minor),
                    Posting.debit(line_account(account.account_no), amount_minor),
                    Posting.credit(lines_granted_account(row.currency), amount_minor),
                ],
                description="credit purchase refund",
                metadata={"purchase_id": purchase_id, "refund_id": refund_id},
            )
        )
        # A forced line lowering's remainder takes its share of the restored line first.
        from products.credit_pay.lines import absorb_line_shortfall  # lines builds on this module

        absorb_line_shortfall(self.session, self.ledger, account, self.tenant.business_date())
        refund = CreditPayRefund(
            refund_id=refund_id,
            purchase_id=purchase_id,
            amount_minor=amount_minor,
            created_at=self.uow.clock.now(),
        )
        row.refunded_minor += amount_minor
        self._record(account.account_no, "refund", -amount_minor, refund_id, f"credit_pay:refund:{refund_id}")
        self.session.add(refund)
        self.session.flush()
        # A plan the purchase was converted into is reduced by the refund, or closed when nothing
        # of it is left (installments.py).
        from products.credit_pay.installments import InstallmentService  # builds on this module

        InstallmentService(self).apply_refund(
            purchase_id, refund_id, amount_minor, in_full=row.refunded_minor == row.amount_minor
        )
        self.uow.publish(
            "credit_pay.purchase.refunded",
            {
                "purchase_id": purchase_id,
                "refund_id": refund_id,
                "amount_minor": amount_minor,
                "refunded_minor": row.refunded_minor,
                "partner_id": row.partner_id,
                "account_no": row.account_no,
            },
            subject=f"credit_pay_account:{row.account_no}",
        )
        return self._refund_view(refund, created=True)

    def purchase(self, purchase_id: str) -> PurchaseView:
        return self._purchase_view(self._purchase_row(purchase_id))

    def purchase_partner(self, purchase_id: str) -> str | None:
        """The partner through which the purchase was authorized (None: the bank's own channel)."""
        return self._purchase_row(purchase_id).partner_id

    def purchases(self, account_no: str) -> list[PurchaseView]:
        self._account_row(account_no)
        rows = self.session.scalars(
            select(CreditPayPurchase)
            .where(CreditPayPurchase.account_no == account_no)
            .order_by(CreditPayPurchase.id)
        ).all()
        return [self._purchase_view(row) for row in rows]

    def _purchase_row(self, purchase_id: str, *, required: bool = True, lock: bool = False) -> Any:
        _check_id(purchase_id, "purchase_id")
        stmt = select(CreditPayPurchase).where(CreditPayPurchase.purchase_id == purchase_id)
        if lock:
            stmt = stmt.with_for_update()
        row = self.session.scalars(stmt).one_or_none()
        if row is None and required:
            raise NotFound(f"no purchase {purchase_id!r}")
        return row

    def _same_purchase(self, row: CreditPayPurchase, draft: PurchaseDraft) -> None:
        for field in ("account_no", "merchant_id", "amount_minor"):
            if getattr(row, field) != getattr(draft, field):
                raise Conflict(
                    f"purchase {draft.purchase_id!r} exists with a different {field}",
                    details=[
                        {
                            "field": field,
                            "code": f"exists_with_different_{field}",
                            "message": "differs from the stored purchase",
                        }
                    ],
                )

    def _status(self, row: CreditPayPurchase) -> str:
        if (
            row.status == "authorized"
            and row.expires_at is not None
            and row.expires_at <= self.uow.clock.now()
        ):
            return "expired"
        return row.status

    def _require_authorized(self, row: CreditPayPurchase, wanted: str) -> None:
        status = self._status(row)
        if status != "authorized":
            raise Conflict(
                f"purchase {row.purchase_id!r} is {status} and cannot be {wanted}",
                details=[
                    {
                        "field": "purchase_id",
                        "code": f"purchase_{status}",
                        "message": f"the purchase is {status}",
                    }
                ],
            )

    def _purchase_view(self, row: CreditPayPurchase, *, created: bool = True) -> PurchaseView:
        return PurchaseView(
            purchase_id=row.purchase_id,
            account_no=row.account_no,
            merchant_id=row.merchant_id,
            amount_minor=row.amount_minor,
            currency=row.currency,
            status=self._status(row),
            reasons=list(row.reasons),
            refunded_minor=row.refunded_minor,
            decision_no=row.decision_no,
            created_at=row.created_at,
            expires_at=row.expires_at,
            resolved_at=row.resolved_at,
            created=created,
        )

    @staticmethod
    def _refund_view(row: CreditPayRefund, *, created: bool) -> RefundView:
        return RefundView(
            refund_id=row.refund_id,
            purchase_id=row.purchase_id,
            amount_minor=row.amount_minor,
            created_at=row.created_at,
            created=created,
        )

    def _publish(self, type: str, row: CreditPayPurchase) -> None:
        self.uow.publish(
            type,
            {
                "purchase_id": row.purchase_id,
                "account_no": row.account_no,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "status": row.status,
                "reasons": list(row.reasons),
                "partner_id": row.partner_id,
            },
            subject=f"credit_pay_account:{row.account_no}",
        )

    # --- installment trial --------------------------------------------------------------------

    def trial(
        self,
        product_code: str,
        amount_minor: int,
        *,
        terms: int | None = None,
        method: str | None = None,
        merchant_id: str | None = None,
    ) -> TrialView:
        """Every installment of each plan the product offers for ``amount_minor`` (optionally one
        term count or method), with the annualized rate by the IRR method. A plan that this amount
        would price above the product's ceiling is withheld, never shown as an offer. With
        ``merchant_id``, the merchant's interest-free plans offered today come first, each in
        place of the product's plan of the same terms and method (the one a purchase there would
        be converted into)."""
        product = self._product(product_code)
        if type(amount_minor) is not int or amount_minor <= 0:
            raise ValidationFailed(
                "amount_minor must be a positive integer",
                details=[{"field": "amount_minor", "code": "invalid", "message": "must be > 0"}],
            )
        if method is not None and method not in {m.value for m in Method}:
            raise ValidationFailed(
                f"unknown method {method!r}",
                details=[
                    {"field": "method", "code": "invalid", "message": "annuity, equal_principal or flat_fee"}
                ],
            )
        if merchant_id is not None:
            _check_id(merchant_id, "merchant_id")

        def wanted(plan: Any) -> bool:
            return (terms is None or plan.terms == terms) and (method is None or plan.method == method)

        plans, withheld, subsidised = [], [], set()
        if merchant_id is not None:
            today = self.tenant.business_date()
            for offer in product.merchant_subsidised_plans:
                if not wanted(offer) or not offer.offered(merchant_id, today) or (offer.terms, offer.method) in subsidised:
                    continue
                subsidised.add((offer.terms, offer.method))
                customer, merchant = subsidised_schedules(offer, amount_minor, self.tenant.rounding)
                plans.append(
                    PlanTrial.of(
                        "0.00", customer, subsidised_by=merchant_id, subsidy_minor=merchant.total_charge_minor
                    )
                )
        for plan in product.installment_plans:
            if not wanted(plan) or (plan.terms, plan.method) in subsidised:
                continue
            result = schedule(plan.method, amount_minor, plan.terms, plan.period_rate, self.tenant.rounding)
            if result.annualized_rate_bps > product.annual_rate_ceiling_bps:
                withheld.append(f"{plan.terms}x{plan.method.value}")
                continue
            plans.append(PlanTrial.of(str(plan.period_rate_bps), result))
        if not plans and not withheld:
            raise NotFound(f"product {product_code!r} offers no such installment plan")
        return TrialView(
            product=product_code,
            currency=product.currency,
            amount_minor=amount_minor,
            annual_rate_ceiling_bps=product.annual_rate_ceiling_bps,
            plans=plans,
            withheld=withheld,
        )


def subsidised_schedules(
    offer: MerchantSubsidisedPlan, principal_minor: int, rounding: RoundingMode
) -> tuple[Schedule, Schedule]:
    """A merchant's interest-free plan on ``principal_minor``: the customer's schedule (principal
    only, the plan's method at a zero rate) and the schedule whose charges the merchant pays."""
    customer = schedule(offer.method, principal_minor, offer.terms, Decimal(0), rounding)
    merchant = schedule(offer.method, principal_minor, offer.terms, offer.period_rate, rounding)
    return customer, merchant


def history_for_hook(tenant: Any, customer_no: str) -> dict[str, int] | None:
    """The credit module's internal-history hook, answered from the activation's own transaction.

    Called while a credit-pay activation is deciding (the service set the session). A decision
    made directly through the risk module opens its own unit of work on PostgreSQL; on SQLite a
    second writer would wait for the first, so there the hook answers only inside credit pay's
    own activations and otherwise reports nothing (see docs/credit-pay.md)."""
    if not tenant.has_module(MODULE):
        return None
    runtime = tenant.module(MODULE)
    active = _active_session.get()
    if active is not None and active[0] == tenant.id:
        from core.tenancy import UnitOfWork as _UoW

        uow = _UoW(active[1], tenant, tenant.bus)
        return runtime.container.service(uow=uow).internal_history(customer_no)
    from core.db import is_sqlite

    if is_sqlite(tenant.session_factory.kw["bind"]):
        return None
    with tenant.unit_of_work() as uow:
        return runtime.container.service(uow=uow).internal_history(customer_no)
