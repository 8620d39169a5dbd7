"""Installment plans: converting a captured purchase, or part of the revolving (statement) balance,
into one of the plans the product offers; billing each installment with its statement; early payoff
and cancellation. No HTTP here.

Obtain it on a credit-pay service (one unit of work)::

    pay = runtime.container.service(uow=uow)
    plans = InstallmentService(pay)
    plan = plans.convert_purchase(PurchaseConversion(plan_id="inst-1", purchase_id="flight-1",
                                                     terms=6, method="annuity"))
    plans.pay_off(plan.plan_no)   # or plans.cancel(plan.plan_no) before its first billing

Accounting. Converting moves the principal from ``credit_pay:receivable:<account_no>`` (the
revolving balance, on which revolving interest accrues) to ``credit_pay:installment:<account_no>``
(an asset too: still owed, but not revolving). :func:`bill_installments_due`, called by billing for
each statement, moves each installment's principal back into the revolving receivable (it becomes
part of the statement balance) and books its interest to the interest receivable
(``credit_pay:interest:<account_no>``) against ``credit_pay:installment_interest_income:<currency>``,
its fee to the fee receivable (``credit_pay:fees:<account_no>``) against
``credit_pay:installment_fee_income:<currency>``: repayment allocates to them as interest and fees,
and only the principal share gives line back. Early payoff bills every remaining principal at once (with the charges the product's
``early_payoff`` setting names); cancellation returns the principal to the revolving receivable.
The line is untouched by all of this: the amount stays used until it is repaid.

Merchant-subsidised (interest-free) plans: a purchase at a merchant that runs an interest-free
plan for the terms and method asked (the product's ``merchant_subsidised_plans``, on the business
date of the conversion) is converted at a zero rate, and the merchant pays the plan's charges at
once: ``credit_pay:installment_subsidy:<plan_id>`` debits its payable
(``credit_pay:merchant:<currency>:<merchant_id>``) and credits
``credit_pay:installment_subsidy_unearned:<currency>`` (a liability: income received in advance).
It is earned as the plan runs, the share of each installment (the charge the merchant's rate puts on
it, ``subsidy_minor``) moving to ``credit_pay:installment_subsidy_income:<currency>`` in the entry
that bills it, and what is left all at once when the plan closes early (payoff, refund, the
account's charge-off: ``credit_pay:installment_subsidy_earned:<plan_no>``). Cancelling the plan
reverses the merchant's payment (nothing is earned before the first billing); the other ends keep
it (the subsidy was the merchant's price for the sale).

Installment ``k`` of a plan falls due on the ``k``-th billing date (the product's ``billing_day``)
strictly after the business date of the conversion.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, Rejected, ValidationFailed
from core.money import RoundingMode
from infra.ledger import EntryDraft, Ledger, Posting
from products.credit_pay.calc import Method, schedule
from products.credit_pay.end_of_day import fee_account, interest_account
from products.credit_pay.models import (
    CreditPayAccount,
    CreditPayInstallment,
    CreditPayInstallmentPlan,
    CreditPayPurchase,
)
from products.credit_pay.service import (
    ACCOUNT_ALPHABET,
    ID_PATTERN,
    CreditPayService,
    merchant_account,
    receivable_account,
    subsidised_schedules,
)


def installment_account(account_no: str) -> str:
    """Principal converted into installments and not yet billed (asset)."""
    return f"credit_pay:installment:{account_no}"


def installment_interest_income_account(currency: str) -> str:
    return f"credit_pay:installment_interest_income:{currency}"


def installment_fee_income_account(currency: str) -> str:
    return f"credit_pay:installment_fee_income:{currency}"


def installment_subsidy_income_account(currency: str) -> str:
    """What merchants paid for their interest-free plans, as it is earned (income)."""
    return f"credit_pay:installment_subsidy_income:{currency}"


def installment_subsidy_unearned_account(currency: str) -> str:
    """What merchants paid for interest-free plans not yet earned (liability: income in advance)."""
    return f"credit_pay:installment_subsidy_unearned:{currency}"


# --- inputs --------------------------------------------------------------------------------------


def _id_field(description: str) -> Any:
    return Field(min_length=1, max_length=64, pattern=ID_PATTERN, description=description)


class PurchaseConversion(BaseModel):
    """Convert what is left of a captured purchase (its amount less refunds) into a plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = _id_field("caller's id of the plan; a retry with it returns the same plan")
    purchase_id: str = _id_field("the captured purchase to convert")
    terms: int = Field(ge=1, le=360)
    method: Method


class BalanceConversion(BaseModel):
    """Convert part of the account's revolving balance (a "bill installment") into a plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = _id_field("caller's id of the plan; a retry with it returns the same plan")
    account_no: str = Field(min_length=1, max_length=40)
    amount_minor: int = Field(gt=0, le=10**15)
    terms: int = Field(ge=1, le=360)
    method: Method
    statement_ref: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN)


# --- outputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BilledInstallment:
    """What one installment put on a statement (billing calls :func:`bill_installments_due`)."""

    plan_no: str
    term_no: int
    principal_minor: int
    interest_minor: int
    fee_minor: int

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.interest_minor + self.fee_minor


class ScheduledInstallmentView(BaseModel):
    term_no: int
    due_on: date
    principal_minor: int
    interest_minor: int
    fee_minor: int
    total_minor: int
    status: str
    billed_principal_minor: int | None
    billed_interest_minor: int | None
    billed_fee_minor: int | None
    billed_on: date | None


class PlanView(BaseModel):
    plan_no: str
    plan_id: str
    account_no: str
    source: str
    purchase_id: str | None
    statement_ref: str | None
    currency: str
    method: str
    terms: int
    period_rate_bps: str
    principal_minor: int
    total_charge_minor: int
    annualized_rate_bps: str
    # A merchant's interest-free plan: the merchant that paid its charges, and how much.
    subsidised_by: str | None
    merchant_subsidy_minor: int
    status: str
    # Principal a refund of the purchase took out of the plan (reduced, or closed as refunded).
    refunded_principal_minor: int
    remaining_principal_minor: int
    business_date: date
    created_at: datetime
    closed_at: datetime | None
    installments: list[ScheduledInstallmentView]
    created: bool = True


# --- billing (called by the statement run) -------------------------------------------------------


def bill_installments_due(
    session: Session, ledger: Ledger, account: CreditPayAccount, statement_date: date
) -> list[BilledInstallment]:
    """Bill every installment of ``account`` falling due on or before ``statement_date`` and not
    billed yet, and answer the installments the statement of ``statement_date`` billed.

    Idempotent: a second call for the same ``statement_date`` posts nothing and answers the same
    list. Installments an early payoff billed are not in it: the payoff posted them at once (they
    are already in the revolving balance when the statement reads it). Each installment posts one
    entry ``credit_pay:installment_bill:<plan_no>:<term_no>``: principal from the installment
    receivable to the revolving receivable, interest to the interest receivable and fee to the fee
    receivable, each against its income."""
    account_no = account.account_no
    due = session.scalars(
        select(CreditPayInstallment)
        .where(
            CreditPayInstallment.account_no == account_no,
            CreditPayInstallment.status == "scheduled",
            CreditPayInstallment.due_on <= statement_date,
        )
        .order_by(CreditPayInstallment.due_on, CreditPayInstallment.plan_no, CreditPayInstallment.term_no)
        .with_for_update()
    ).all()
    touched_plans: set[str] = set()
    for row in due:
        _post_bill(
            ledger,
            account,
            f"credit_pay:installment_bill:{row.plan_no}:{row.term_no}",
            row.principal_minor,
            row.interest_minor,
            row.fee_minor,
            {"plan_no": row.plan_no, "term_no": row.term_no, "due_on": row.due_on.isoformat()},
            "installment billed",
            subsidy=row.subsidy_minor,
        )
        row.status = "billed"
        row.billed_principal_minor = row.principal_minor
        row.billed_interest_minor = row.interest_minor
        row.billed_fee_minor = row.fee_minor
        row.billed_on = statement_date
        row.reported_on = statement_date
        touched_plans.add(row.plan_no)
    session.flush()
    for plan in session.scalars(
        select(CreditPayInstallmentPlan).where(CreditPayInstallmentPlan.plan_no.in_(sorted(touched_plans)))
    ).all():
        _complete_if_done(session, plan, ledger.clock.now())
    reported = session.scalars(
        select(CreditPayInstallment)
        .where(
            CreditPayInstallment.account_no == account_no, CreditPayInstallment.reported_on == statement_date
        )
        .order_by(CreditPayInstallment.due_on, CreditPayInstallment.plan_no, CreditPayInstallment.term_no)
    ).all()
    return [
        BilledInstallment(
            plan_no=row.plan_no,
            term_no=row.term_no,
            principal_minor=row.billed_principal_minor or 0,
            interest_minor=row.billed_interest_minor or 0,
            fee_minor=row.billed_fee_minor or 0,
        )
        for row in reported
    ]


def _post_bill(
    ledger: Ledger,
    account: CreditPayAccount,
    entry_id: str,
    principal: int,
    interest: int,
    fee: int,
    metadata: dict[str, Any],
    description: str,
    *,
    subsidy: int = 0,
) -> None:
    """``subsidy``: the merchant's share of the installments billed, earned now."""
    assert principal >= 0 and interest >= 0 and fee >= 0 and subsidy >= 0
    no, currency = account.account_no, account.currency
    postings = _subsidy_earned(ledger, currency, subsidy)
    if principal:
        postings += [
            Posting.debit(receivable_account(no), principal),
            Posting.credit(installment_account(no), principal),
        ]
    # Charges go to the receivables end of day keeps for revolving interest and fees, never to the
    # principal receivable: only principal used the line, so only a principal repayment may give
    # line back, and revolving interest accrues on principal only (no interest on interest).
    if interest:
        ledger.open_account(interest_account(no), currency, "asset", "customer", account.customer_no)
        ledger.open_account(installment_interest_income_account(currency), currency, "income")
        postings += [
            Posting.debit(interest_account(no), interest),
            Posting.credit(installment_interest_income_account(currency), interest),
        ]
    if fee:
        ledger.open_account(fee_account(no), currency, "asset", "customer", account.customer_no)
        ledger.open_account(installment_fee_income_account(currency), currency, "income")
        postings += [
            Posting.debit(fee_account(no), fee),
            Posting.credit(installment_fee_income_account(currency), fee),
        ]
    if postings:  # a tiny annuity's trailing installments may be zero: nothing to post
        ledger.post(EntryDraft(entry_id, postings, description=description, metadata=metadata))


def _subsidy_earned(ledger: Ledger, currency: str, amount: int) -> list[Posting]:
    """The postings that earn ``amount`` of merchants' unearned subsidy (none for 0)."""
    if not amount:
        return []
    ledger.open_account(installment_subsidy_income_account(currency), currency, "income")
    return [
        Posting.debit(installment_subsidy_unearned_account(currency), amount),
        Posting.credit(installment_subsidy_income_account(currency), amount),
    ]


def _complete_if_done(session: Session, plan: CreditPayInstallmentPlan, now: datetime) -> None:
    if plan.status != "active":
        return
    left = session.scalars(
        select(CreditPayInstallment.id).where(
            CreditPayInstallment.plan_no == plan.plan_no, CreditPayInstallment.status == "scheduled"
        )
    ).first()
    if left is None:
        plan.status, plan.closed_at = "completed", now


def billing_dates(after: date, billing_day: int, count: int) -> list[date]:
    """The next ``count`` billing dates strictly after ``after``."""
    year, month = after.year, after.month
    if after.day >= billing_day:
        month += 1
    dates = []
    for _ in range(count):
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        dates.append(date(year, month, billing_day))
        month += 1
    return dates


def subsidy_entry_id(plan_id: str) -> str:
    return f"credit_pay:installment_subsidy:{plan_id}"


def _round(value: Decimal, rounding: RoundingMode) -> int:
    return int(value.quantize(Decimal(1), rounding=rounding.decimal_mode))


# --- the service ---------------------------------------------------------------------------------


class InstallmentService:
    """Installment plans of one tenant's credit-pay accounts, within the unit of work of ``pay``."""

    def __init__(self, pay: CreditPayService) -> None:
        self.pay = pay
        self.session = pay.session
        self.uow = pay.uow
        self.tenant = pay.tenant
        self.partner_id = pay.partner_id

    # --- conversion ---------------------------------------------------------------------------

    def convert_purchase(self, draft: PurchaseConversion) -> PlanView:
        """Convert a captured purchase (what is left after refunds) into an offered plan."""
        purchase = self.session.scalars(
            select(CreditPayPurchase).where(CreditPayPurchase.purchase_id == draft.purchase_id)
        ).one_or_none()
        if purchase is None:
            raise NotFound(f"no purchase {draft.purchase_id!r}")
        account = self.pay._account_row(purchase.account_no, lock=True)
        self.pay.catch_up(account)  # missed end-of-day dates first, as every call that touches it
        existing = self._plan_by_id(draft.plan_id)
        if existing is not None:
            self._same(
                existing,
                {
                    "source": "purchase",
                    "purchase_id": draft.purchase_id,
                    "terms": draft.terms,
                    "method": Method(draft.method).value,
                },
            )
            return self._view(existing, created=False)
        if purchase.status != "captured":
            raise _conflict(
                "purchase_id",
                "purchase_not_captured",
                f"purchase {draft.purchase_id!r} is {purchase.status}; only a captured purchase converts",
            )
        principal = purchase.amount_minor - purchase.refunded_minor
        if principal <= 0:
            raise _conflict(
                "purchase_id", "purchase_refunded", f"purchase {draft.purchase_id!r} is refunded in full"
            )
        converted = self.session.scalars(
            select(CreditPayInstallmentPlan.plan_no).where(
                CreditPayInstallmentPlan.purchase_id == draft.purchase_id,
                CreditPayInstallmentPlan.status != "cancelled",
            )
        ).first()
        if converted is not None:
            raise _conflict(
                "purchase_id",
                "already_converted",
                f"purchase {draft.purchase_id!r} is already converted (plan {converted})",
            )
        return self._convert(
            account,
            draft.plan_id,
            principal,
            draft.terms,
            Method(draft.method),
            source="purchase",
            purchase_id=draft.purchase_id,
            statement_ref=None,
            merchant_id=purchase.merchant_id,
        )

    def convert_balance(self, draft: BalanceConversion) -> PlanView:
        """Convert ``amount_minor`` of the account's revolving balance (e.g. a statement's) into a plan."""
        account = self.pay._account_row(draft.account_no, lock=True)
        self.pay.catch_up(account)  # missed end-of-day dates first, as every call that touches it
        existing = self._plan_by_id(draft.plan_id)
        if existing is not None:
            self._same(
                existing,
                {
                    "source": "balance",
                    "account_no": draft.account_no,
                    "principal_minor": draft.amount_minor,
                    "terms": draft.terms,
                    "method": Method(draft.method).value,
                    "statement_ref": draft.statement_ref,
                },
            )
            return self._view(existing, created=False)
        return self._convert(
            account,
            draft.plan_id,
            draft.amount_minor,
            draft.terms,
            Method(draft.method),
            source="balance",
            purchase_id=None,
            statement_ref=draft.statement_ref,
            merchant_id=None,
        )

    def _convert(
        self,
        account: CreditPayAccount,
        plan_id: str,
        principal: int,
        terms: int,
        method: Method,
        *,
        source: str,
        purchase_id: str | None,
        statement_ref: str | None,
        merchant_id: str | None,
    ) -> PlanView:
        """Convert ``principal``: at the merchant's interest-free plan for ``terms`` x ``method``
        when it runs one today (a purchase only), else at the product's plan."""
        if account.status != "active":
            raise _conflict(
                "account_no", "account_not_active", f"credit account {account.account_no} is {account.status}"
            )
        product = self.pay._product(account.product_code)
        today = self.tenant.business_date()
        subsidised = (
            product.subsidised_plan(merchant_id, terms, method.value, today) if merchant_id is not None else None
        )
        offered = subsidised or product.plan(terms, method.value)
        if offered is None:
            raise _rejected(
                "terms",
                "plan_not_offered",
                f"product {account.product_code!r} offers no {terms} x {method.value} plan",
            )
        if principal < product.min_conversion_minor:
            raise _rejected(
                "amount_minor",
                "below_min_conversion",
                f"{principal} is below the smallest amount converted ({product.min_conversion_minor})",
            )
        subsidy = 0
        if subsidised is not None:
            priced, paid_by_merchant = subsidised_schedules(subsidised, principal, self.tenant.rounding)
            period_rate_bps, subsidy = Decimal(0), paid_by_merchant.total_charge_minor
            # The merchant's charge for each term: earned when the term is billed.
            shares = [i.charge_minor for i in paid_by_merchant.installments]
        else:
            priced = schedule(method, principal, terms, offered.period_rate, self.tenant.rounding)
            period_rate_bps, shares = offered.period_rate_bps, [0] * terms
        if priced.annualized_rate_bps > product.annual_rate_ceiling_bps:
            raise _rejected(
                "terms",
                "plan_above_rate_ceiling",
                f"{terms} x {method.value} on {principal} prices at {priced.annualized_rate_bps} bps "
                f"a year (IRR), above the ceiling of {product.annual_rate_ceiling_bps} bps",
            )
        ledger = self.pay.ledger
        receivable = receivable_account(account.account_no)
        revolving = ledger.balance(receivable).net_posted_minor
        if revolving < principal:
            raise _conflict(
                "amount_minor",
                "insufficient_revolving_balance",
                f"the revolving balance is {revolving}, less than the {principal} to convert",
            )
        now = self.uow.clock.now()
        plan_no = "cpi_" + "".join(secrets.choice(ACCOUNT_ALPHABET) for _ in range(16))
        plan = CreditPayInstallmentPlan(
            plan_id=plan_id,
            plan_no=plan_no,
            account_no=account.account_no,
            source=source,
            purchase_id=purchase_id,
            statement_ref=statement_ref,
            partner_id=self.partner_id,
            currency=account.currency,
            method=method.value,
            terms=terms,
            period_rate_bps=period_rate_bps,
            principal_minor=principal,
            total_charge_minor=priced.total_charge_minor,
            annualized_rate_bps=priced.annualized_rate_bps,
            subsidised_by=merchant_id if subsidised is not None else None,
            merchant_subsidy_minor=subsidy,
            refunded_principal_minor=0,
            status="active",
            business_date=today,
            created_at=now,
            closed_at=None,
        )
        self.session.add(plan)
        flat = method is Method.FLAT_FEE
        for item, due_on, share in zip(
            priced.installments, billing_dates(today, product.billing_day, terms), shares, strict=True
        ):
            self.session.add(
                CreditPayInstallment(
                    plan_no=plan_no,
                    account_no=account.account_no,
                    term_no=item.number,
                    due_on=due_on,
                    principal_minor=item.principal_minor,
                    interest_minor=0 if flat else item.charge_minor,
                    fee_minor=item.charge_minor if flat else 0,
                    subsidy_minor=share,
                    status="scheduled",
                    billed_principal_minor=None,
                    billed_interest_minor=None,
                    billed_fee_minor=None,
                    billed_on=None,
                    reported_on=None,
                )
            )
        ledger.open_account(
            installment_account(account.account_no),
            account.currency,
            "asset",
            "customer",
            account.customer_no,
        )
        ledger.post(
            EntryDraft(
                f"credit_pay:installment_convert:{plan_id}",
                [
                    Posting.debit(installment_account(account.account_no), principal),
                    Posting.credit(receivable, principal),
                ],
                description="converted into installments",
                metadata={"plan_no": plan_no, "source": source, "purchase_id": purchase_id},
            )
        )
        if subsidy:
            assert merchant_id is not None
            self._post_subsidy(account, plan_id, plan_no, merchant_id, subsidy)
        self.session.flush()
        self._publish("credit_pay.installment_plan.created", plan)
        return self._view(plan, created=True)

    def _post_subsidy(
        self, account: CreditPayAccount, plan_id: str, plan_no: str, merchant_id: str, subsidy: int
    ) -> None:
        """The merchant pays its plan's charges now, out of what the bank owes it for its sales:
        its payable is debited, the bank's unearned subsidy credited (earned as the plan is billed,
        see the module docstring). A payable that is short (the
        merchant's sales already settled) goes negative: the merchant owes the bank the rest,
        which the bank collects with its next settlement."""
        ledger = self.pay.ledger
        currency = account.currency
        ledger.open_account(installment_subsidy_unearned_account(currency), currency, "liability")
        ledger.post(
            EntryDraft(
                subsidy_entry_id(plan_id),
                [
                    Posting.debit(merchant_account(currency, merchant_id), subsidy),
                    Posting.credit(installment_subsidy_unearned_account(currency), subsidy),
                ],
                description="merchant-subsidised installment plan",
                metadata={"plan_no": plan_no, "merchant_id": merchant_id},
            )
        )

    # --- early payoff and cancellation ----------------------------------------------------------

    def pay_off(self, plan_no: str) -> PlanView:
        """Bill every remaining principal now, with the charges the product's ``early_payoff``
        names and its ``early_payoff_fee_bps``. Paying off a paid-off plan returns it unchanged."""
        plan = self._plan_row(plan_no)
        account = self.pay._account_row(plan.account_no, lock=True)
        self.pay.catch_up(account)  # missed end-of-day dates first, as every call that touches it
        self.session.refresh(plan)
        if plan.status == "paid_off":
            return self._view(plan, created=False)
        if plan.status != "active":
            raise _conflict("plan_no", f"plan_{plan.status}", f"plan {plan_no} is {plan.status}")
        product = self.pay._product(account.product_code)
        rows = self._rows(plan_no, status="scheduled")
        assert rows, "an active plan has scheduled installments"
        remaining = sum(row.principal_minor for row in rows)
        fee = _round(Decimal(remaining) * product.early_payoff_fee_bps / 10_000, self.tenant.rounding)
        today = self.tenant.business_date()
        interest_total = fee_total = 0
        for index, row in enumerate(rows):
            charged = product.early_payoff == "all_charges" or (
                product.early_payoff == "next_period_charge" and index == 0
            )
            row.status = "paid_off"
            row.billed_principal_minor = row.principal_minor
            row.billed_interest_minor = row.interest_minor if charged else 0
            row.billed_fee_minor = (row.fee_minor if charged else 0) + (fee if index == 0 else 0)
            row.billed_on = today
            interest_total += row.billed_interest_minor
            fee_total += row.billed_fee_minor
        _post_bill(
            self.pay.ledger,
            account,
            f"credit_pay:installment_payoff:{plan_no}",
            remaining,
            interest_total,
            fee_total,
            {"plan_no": plan_no, "rule": product.early_payoff},
            "installment plan paid off early",
            subsidy=sum(row.subsidy_minor for row in rows),
        )
        plan.status, plan.closed_at = "paid_off", self.uow.clock.now()
        self.session.flush()
        self._publish(
            "credit_pay.installment_plan.paid_off",
            plan,
            principal_minor=remaining,
            interest_minor=interest_total,
            fee_minor=fee_total,
        )
        return self._view(plan, created=True)

    def cancel(self, plan_no: str) -> PlanView:
        """Undo a plan before its first installment is billed: the principal returns to the
        revolving balance, nothing is charged. Cancelling a cancelled plan returns it unchanged."""
        plan = self._plan_row(plan_no)
        account = self.pay._account_row(plan.account_no, lock=True)
        self.pay.catch_up(account)  # missed end-of-day dates first, as every call that touches it
        self.session.refresh(plan)
        if plan.status == "cancelled":
            return self._view(plan, created=False)
        if plan.status != "active":
            raise _conflict("plan_no", f"plan_{plan.status}", f"plan {plan_no} is {plan.status}")
        rows = self._rows(plan_no)
        if any(row.status != "scheduled" for row in rows):
            raise _conflict(
                "plan_no",
                "plan_already_billed",
                f"plan {plan_no} has billed installments; pay it off instead",
            )
        self._to_revolving(
            plan, plan.principal_minor, f"credit_pay:installment_cancel:{plan_no}", "installment plan cancelled"
        )
        if plan.merchant_subsidy_minor:
            # The merchant paid for a plan that no longer runs: its payment is reversed.
            self.pay.ledger.reverse(
                subsidy_entry_id(plan.plan_id),
                f"credit_pay:installment_subsidy_cancel:{plan_no}",
                "installment plan cancelled",
            )
        for row in rows:
            row.status = "cancelled"
        plan.status, plan.closed_at = "cancelled", self.uow.clock.now()
        self.session.flush()
        self._publish("credit_pay.installment_plan.cancelled", plan)
        return self._view(plan, created=True)

    def apply_refund(self, purchase_id: str, refund_id: str, amount_minor: int, *, in_full: bool) -> PlanView | None:
        """What a refund of ``amount_minor`` of a converted purchase does to its active plan
        (``CreditPayService.refund``, in its unit of work, after the refund's credit to the
        revolving receivable). None when the purchase has no active plan.

        Refunded in full, or by at least the plan's unbilled principal: the plan closes
        (``refunded``): its unbilled principal returns to the revolving receivable, where the
        refund's credit meets it, and its unbilled installments are never billed, their charges
        waived. Otherwise the plan is reduced: the refunded amount of its unbilled principal returns
        to the revolving receivable (entry ``credit_pay:installment_refund:<plan_no>:<refund_id>``)
        and its unbilled installments are scheduled again, over the same due dates, for what is
        left, by the plan's method at its period rate (``calc.schedule``: they sum exactly to it).
        What was billed stays billed; a merchant's subsidy is kept (docs/credit-pay.md)."""
        plan = self.session.scalars(
            select(CreditPayInstallmentPlan).where(
                CreditPayInstallmentPlan.purchase_id == purchase_id, CreditPayInstallmentPlan.status == "active"
            )
        ).one_or_none()
        if plan is None:
            return None
        rows = self._rows(plan.plan_no, status="scheduled")
        remaining = sum(row.principal_minor for row in rows)
        if in_full or amount_minor >= remaining:
            return self._close_refunded(plan, rows, purchase_id)
        return self._reduce(plan, rows, purchase_id, refund_id, amount_minor)

    def _close_refunded(
        self, plan: CreditPayInstallmentPlan, rows: list[CreditPayInstallment], purchase_id: str
    ) -> PlanView:
        remaining = self._close(
            plan, rows, "refunded", "installment plan closed: purchase refunded", purchase_id=purchase_id
        )
        plan.refunded_principal_minor += remaining
        self.session.flush()
        return self._view(plan, created=True)

    def _close(
        self, plan: CreditPayInstallmentPlan, rows: list[CreditPayInstallment], status: str, description: str,
        **metadata: str,
    ) -> int:
        """End an active plan early as ``status`` (refunded, charged_off): its unbilled principal
        back to the revolving receivable (entry ``credit_pay:installment_<cause>:<plan_no>``), the rest
        of a merchant's subsidy earned, its unbilled installments never billed; the event. Answers
        the principal moved."""
        remaining = sum(row.principal_minor for row in rows)
        cause = {"refunded": "refund", "charged_off": "charge_off"}[status]
        self._to_revolving(plan, remaining, f"credit_pay:installment_{cause}:{plan.plan_no}", description, **metadata)
        self._earn_rest(plan, rows)
        for row in rows:
            row.status = status
        plan.status, plan.closed_at = status, self.uow.clock.now()
        self.session.flush()
        self._publish(f"credit_pay.installment_plan.{status}", plan, principal_minor=remaining)
        return remaining

    def _to_revolving(
        self, plan: CreditPayInstallmentPlan, amount: int, entry_id: str, description: str, **metadata: str
    ) -> None:
        """Move ``amount`` of the plan's unbilled principal back to the revolving receivable."""
        if amount:
            self.pay.ledger.post(
                EntryDraft(
                    entry_id,
                    [
                        Posting.debit(receivable_account(plan.account_no), amount),
                        Posting.credit(installment_account(plan.account_no), amount),
                    ],
                    description=description,
                    metadata={"plan_no": plan.plan_no, **metadata},
                )
            )

    def _reduce(
        self,
        plan: CreditPayInstallmentPlan,
        rows: list[CreditPayInstallment],
        purchase_id: str,
        refund_id: str,
        amount_minor: int,
    ) -> PlanView:
        remaining = sum(row.principal_minor for row in rows)
        left = remaining - amount_minor
        assert rows and 0 < left < remaining
        charges_before = plan.total_charge_minor
        self._to_revolving(
            plan,
            amount_minor,
            f"credit_pay:installment_refund:{plan.plan_no}:{refund_id}",
            "installment plan reduced: purchase partly refunded",
            purchase_id=purchase_id,
            refund_id=refund_id,
        )
        # A merchant's interest-free plan was converted at a zero rate (period_rate_bps 0).
        period_rate = Decimal(plan.period_rate_bps) / 10_000
        flat = plan.method == Method.FLAT_FEE.value
        again = schedule(plan.method, left, len(rows), period_rate, self.tenant.rounding)
        for row, item in zip(rows, again.installments, strict=True):
            row.principal_minor = item.principal_minor
            row.interest_minor = 0 if flat else item.charge_minor
            row.fee_minor = item.charge_minor if flat else 0
        plan.refunded_principal_minor += amount_minor
        plan.total_charge_minor = self._charges(plan.plan_no)  # the rows just rescheduled, from the identity map
        self.session.flush()
        self._publish(
            "credit_pay.installment_plan.reduced",
            plan,
            refund_id=refund_id,
            refunded_minor=amount_minor,
            remaining_principal_minor=left,
            charges_before_minor=charges_before,
            charges_after_minor=plan.total_charge_minor,
        )
        return self._view(plan, created=True)

    def _earn_rest(self, plan: CreditPayInstallmentPlan, rows: list[CreditPayInstallment]) -> None:
        """A plan closing early earns what is left of its merchant's subsidy at once."""
        postings = _subsidy_earned(self.pay.ledger, plan.currency, sum(row.subsidy_minor for row in rows))
        if postings:
            self.pay.ledger.post(
                EntryDraft(
                    f"credit_pay:installment_subsidy_earned:{plan.plan_no}",
                    postings,
                    description="merchant subsidy earned: installment plan closed",
                    metadata={"plan_no": plan.plan_no},
                )
            )

    def _charges(self, plan_no: str) -> int:
        """An active plan's charges as now scheduled: its billed installments' as billed, the
        others' as scheduled (a partial refund has just scheduled them again)."""
        total = 0
        for row in self._rows(plan_no):
            if row.status == "scheduled":
                total += row.interest_minor + row.fee_minor
            else:
                total += (row.billed_interest_minor or 0) + (row.billed_fee_minor or 0)
        return total

    def charge_off(self, account: CreditPayAccount) -> int:
        """Close the account's active plans as it is charged off (end of day, in its unit of work):
        each plan's unbilled principal moves to the revolving receivable (entry
        ``credit_pay:installment_charge_off:<plan_no>``), where the charge-off writes it off with
        the rest; its unbilled installments are never billed (``charged_off``), their charges not
        charged. Answers the principal moved, which the caller adds to what it writes off."""
        moved = 0
        for plan in self.session.scalars(
            select(CreditPayInstallmentPlan)
            .where(
                CreditPayInstallmentPlan.account_no == account.account_no,
                CreditPayInstallmentPlan.status == "active",
            )
            .order_by(CreditPayInstallmentPlan.id)
        ).all():
            rows = self._rows(plan.plan_no, status="scheduled")
            moved += self._close(plan, rows, "charged_off", "installment plan closed: account charged off")
        return moved

    # --- queries ------------------------------------------------------------------------------

    def plan(self, plan_no: str) -> PlanView:
        return self._view(self._plan_row(plan_no))

    def plans(self, account_no: str) -> list[PlanView]:
        self.pay._account_row(account_no)
        rows = self.session.scalars(
            select(CreditPayInstallmentPlan)
            .where(CreditPayInstallmentPlan.account_no == account_no)
            .order_by(CreditPayInstallmentPlan.id)
        ).all()
        return [self._view(row) for row in rows]

    def plan_account(self, plan_no: str) -> str:
        return self._plan_row(plan_no).account_no

    # --- inside -------------------------------------------------------------------------------

    def _plan_by_id(self, plan_id: str) -> CreditPayInstallmentPlan | None:
        return self.session.scalars(
            select(CreditPayInstallmentPlan).where(CreditPayInstallmentPlan.plan_id == plan_id)
        ).one_or_none()

    def _plan_row(self, plan_no: str) -> CreditPayInstallmentPlan:
        if not isinstance(plan_no, str) or not 1 <= len(plan_no) <= 40:
            raise ValidationFailed(
                "plan_no must be 1 to 40 characters",
                details=[{"field": "plan_no", "code": "invalid", "message": "not a plan number"}],
            )
        row = self.session.scalars(
            select(CreditPayInstallmentPlan).where(CreditPayInstallmentPlan.plan_no == plan_no)
        ).one_or_none()
        if row is None:
            raise NotFound(f"no installment plan {plan_no!r}")
        return row

    def _rows(self, plan_no: str, status: str | None = None) -> list[CreditPayInstallment]:
        stmt = select(CreditPayInstallment).where(CreditPayInstallment.plan_no == plan_no)
        if status is not None:
            stmt = stmt.where(CreditPayInstallment.status == status)
        return list(self.session.scalars(stmt.order_by(CreditPayInstallment.term_no)).all())

    @staticmethod
    def _same(row: CreditPayInstallmentPlan, wanted: dict[str, Any]) -> None:
        for field, value in wanted.items():
            if getattr(row, field) != value:
                raise Conflict(
                    f"plan {row.plan_id!r} exists with a different {field}",
                    details=[
                        {
                            "field": field,
                            "code": f"exists_with_different_{field}",
                            "message": "differs from the stored plan",
                        }
                    ],
                )

    def _view(self, plan: CreditPayInstallmentPlan, *, created: bool = True) -> PlanView:
        rows = self._rows(plan.plan_no)
        return PlanView(
            plan_no=plan.plan_no,
            plan_id=plan.plan_id,
            account_no=plan.account_no,
            source=plan.source,
            purchase_id=plan.purchase_id,
            statement_ref=plan.statement_ref,
            currency=plan.currency,
            method=plan.method,
            terms=plan.terms,
            period_rate_bps=str(Decimal(plan.period_rate_bps).quantize(Decimal("0.01"))),
            principal_minor=plan.principal_minor,
            total_charge_minor=plan.total_charge_minor,
            annualized_rate_bps=str(Decimal(plan.annualized_rate_bps).quantize(Decimal("0.01"))),
            subsidised_by=plan.subsidised_by,
            merchant_subsidy_minor=plan.merchant_subsidy_minor,
            status=plan.status,
            refunded_principal_minor=plan.refunded_principal_minor,
            remaining_principal_minor=sum(row.principal_minor for row in rows if row.status == "scheduled"),
            business_date=plan.business_date,
            created_at=plan.created_at,
            closed_at=plan.closed_at,
            installments=[
                ScheduledInstallmentView(
                    term_no=row.term_no,
                    due_on=row.due_on,
                    principal_minor=row.principal_minor,
                    interest_minor=row.interest_minor,
                    fee_minor=row.fee_minor,
                    total_minor=row.principal_minor + row.interest_minor + row.fee_minor,
                    status=row.status,
                    billed_principal_minor=row.billed_principal_minor,
                    billed_interest_minor=row.billed_interest_minor,
                    billed_fee_minor=row.billed_fee_minor,
                    billed_on=row.billed_on,
                )
                for row in rows
            ],
            created=created,
        )

    def _publish(self, type: str, plan: CreditPayInstallmentPlan, **extra: int | str) -> None:
        self.uow.publish(
            type,
            {
                "plan_no": plan.plan_no,
                "plan_id": plan.plan_id,
                "account_no": plan.account_no,
                "purchase_id": plan.purchase_id,
                "principal_minor": plan.principal_minor,
                "terms": plan.terms,
                "method": plan.method,
                "status": plan.status,
                "partner_id": plan.partner_id,
                "subsidised_by": plan.subsidised_by,
                "merchant_subsidy_minor": plan.merchant_subsidy_minor,
                **extra,
            },
            subject=f"credit_pay_account:{plan.account_no}",
        )


def _conflict(field: str, code: str, message: str) -> Conflict:
    return Conflict(message, details=[{"field": field, "code": code, "message": message}])


def _rejected(field: str, code: str, message: str) -> Rejected:
    return Rejected(message, details=[{"field": field, "code": code, "message": message}])


__all__ = [
    "BalanceConversion",
    "BilledInstallment",
    "InstallmentService",
    "PlanView",
    "PurchaseConversion",
    "bill_installments_due",
    "billing_dates",
    "installment_account",
]
