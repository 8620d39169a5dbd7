"""Repayment of a credit-pay account: through the super entry (a partner) or the bank's own
channel, idempotent on the caller's ``repayment_id``, allocated in the product's order (or the
order a bank's plugin returns), an overpayment kept as a credit balance.

One entry ``credit_pay:repayment:<repayment_id>`` moves the money: a repayment clearing account
(the bank channel's, where the customer's funding account settles, or the collecting partner's,
which its remittances clear: remittance.py) is debited with the whole amount; each
receivable (penalty, fee, interest, principal) is credited with its share and the credit-balance
liability with what is left. The principal share gives the line back (line debit,
lines-granted credit), so it can be spent again.

A repayment to a charged-off account is a recovery (:func:`_recover`): the same entry id, the
money credited to recoveries income up to what is still unrecovered of the write-off.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core.errors import Conflict, ValidationFailed
from infra.ledger import EntryDraft, Posting
from products.credit_pay.end_of_day import (
    COMPONENTS,
    allocate,
    allocation_order,
    bureau_report,
    component_account,
    credit_balance_account,
    line_restorable,
    notify,
    owed,
    read_balances,
    recoveries_account,
    repayment_clearing_account,
    set_bucket,
)
from products.credit_pay.models import (
    CreditPayAccount,
    CreditPayRepayment,
    CreditPayStatement,
    CreditPayTransaction,
)
from products.credit_pay.settings import ID_PATTERN

if TYPE_CHECKING:
    from products.credit_pay.service import CreditPayService

class RepaymentDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repayment_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="caller's id; a retry returns the same answer",
    )
    account_no: str = Field(min_length=1, max_length=40)
    amount_minor: int = Field(gt=0, le=10**15)
    currency: str | None = Field(default=None, min_length=3, max_length=3)


class RepaymentView(BaseModel):
    repayment_id: str
    account_no: str
    amount_minor: int
    currency: str
    partner_id: str | None
    allocation: dict[str, int]
    business_date: date
    created_at: datetime
    created: bool = True


def _view(row: CreditPayRepayment, *, created: bool) -> RepaymentView:
    return RepaymentView(
        repayment_id=row.repayment_id,
        account_no=row.account_no,
        amount_minor=row.amount_minor,
        currency=row.currency,
        partner_id=row.partner_id,
        allocation={k: int(v) for k, v in row.allocation.items()},
        business_date=row.business_date,
        created_at=row.created_at,
        created=created,
    )


def repay(service: CreditPayService, draft: RepaymentDraft) -> RepaymentView:
    """Apply a repayment (see the module docstring). Bad input or a retry with other content
    changes nothing."""
    from products.credit_pay.service import line_account, lines_granted_account

    account = service._account_row(draft.account_no, lock=True)
    existing = service.session.scalars(
        select(CreditPayRepayment).where(CreditPayRepayment.repayment_id == draft.repayment_id)
    ).one_or_none()
    if existing is not None:
        for name in ("account_no", "amount_minor"):
            if getattr(existing, name) != getattr(draft, name):
                raise Conflict(
                    f"repayment {draft.repayment_id!r} exists with a different {name}",
                    details=[
                        {
                            "field": name,
                            "code": f"exists_with_different_{name}",
                            "message": "differs from the stored repayment",
                        }
                    ],
                )
        return _view(existing, created=False)
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
    if account.status == "charged_off":
        return _recover(service, draft, account)
    cycle = service.catch_up(account)
    today = service.tenant.business_date()
    order = allocation_order(service, account)
    balances = read_balances(service.ledger, [account.account_no])[account.account_no]
    allocation = allocate(draft.amount_minor, balances, order)
    no, ccy = account.account_no, account.currency
    entry_id = f"credit_pay:repayment:{draft.repayment_id}"
    postings = [Posting.debit(_clearing(service, ccy), draft.amount_minor)]
    for component in COMPONENTS:
        if allocation[component]:
            postings.append(Posting.credit(component_account(component, no), allocation[component]))
    if allocation["credit"]:
        postings.append(Posting.credit(credit_balance_account(no), allocation["credit"]))
    from products.credit_pay.lines import absorb_line_shortfall, shortfall_of  # lines builds on the service

    shortfall = shortfall_of(service.session, no)
    restored = line_restorable(service.ledger, account, allocation["principal"], shortfall)
    if restored:
        postings += [
            Posting.debit(line_account(no), restored),
            Posting.credit(lines_granted_account(ccy), restored),
        ]
    service.ledger.post(
        EntryDraft(
            entry_id,
            postings,
            description="credit pay repayment",
            metadata={"repayment_id": draft.repayment_id, "account_no": no},
        )
    )
    if restored and shortfall:  # a forced lowering's remainder takes its share of the line first
        absorb_line_shortfall(service.session, service.ledger, account, today)
    now = service.uow.clock.now()
    service.session.add(
        CreditPayTransaction(
            account_no=no,
            business_date=today,
            kind="payment",
            amount_minor=-draft.amount_minor,
            reference=draft.repayment_id,
            entry_id=entry_id,
            statement_no=None,
            created_at=now,
        )
    )
    for statement in service.session.scalars(
        select(CreditPayStatement).where(
            CreditPayStatement.account_no == no, CreditPayStatement.status == "open"
        )
    ):
        statement.paid_minor += draft.amount_minor
    if cycle.past_due_minor > 0:
        cycle.past_due_minor = max(cycle.past_due_minor - draft.amount_minor, 0)
        if cycle.past_due_minor == 0:
            cycle.overdue_since, cycle.days_past_due, cycle.penalty_carry_micros = None, 0, 0
            after = {k: balances[k] - allocation.get(k, 0) for k in COMPONENTS}
            after["credit"] = balances["credit"] + allocation["credit"]
            set_bucket(service, account, cycle, "M0", today, after)
    row = _received(service, draft, account, allocation, today, cycle.partner_id, owed(balances) - draft.amount_minor)
    return _view(row, created=True)


def _received(
    service: CreditPayService,
    draft: RepaymentDraft,
    account: CreditPayAccount,
    allocation: dict[str, int],
    today: date,
    account_partner_id: str | None,
    balance_minor: int,
    **extra: int,
) -> CreditPayRepayment:
    """Store a repayment and publish ``credit_pay.payment.received`` (``extra``: more of the
    event's fields)."""
    row = CreditPayRepayment(
        repayment_id=draft.repayment_id,
        account_no=account.account_no,
        amount_minor=draft.amount_minor,
        currency=account.currency,
        partner_id=service.partner_id,
        allocation=allocation,
        business_date=today,
        created_at=service.uow.clock.now(),
    )
    service.session.add(row)
    service.session.flush()
    service.uow.publish(
        "credit_pay.payment.received",
        {
            "repayment_id": draft.repayment_id,
            "account_no": account.account_no,
            "amount_minor": draft.amount_minor,
            "currency": account.currency,
            "allocation": allocation,
            "balance_minor": balance_minor,
            "partner_id": service.partner_id or account_partner_id,
            "channel": "partner" if service.partner_id else "bank",
            **extra,
        },
        subject=f"credit_pay_account:{account.account_no}",
    )
    return row


def _recover(service: CreditPayService, draft: RepaymentDraft, account: CreditPayAccount) -> RepaymentView:
    """A repayment to a charged-off account: a recovery of the debt written off. Its receivables
    are empty (the charge-off credited them), so the money goes to recoveries income
    (``credit_pay:recoveries:<currency>``) up to what is still unrecovered of the write-off, the
    rest to the credit balance, as an overpayment of a live account. Nothing gives line back: the
    account stays charged off. When the write-off is recovered in full the bureau is told
    (``recovered``), once."""
    cycle = service.catch_up(account)  # charged off: no day changes anything, but it stays the rule
    today = service.tenant.business_date()
    no, ccy = account.account_no, account.currency
    written_off = -sum(
        service.session.scalars(
            select(CreditPayTransaction.amount_minor).where(
                CreditPayTransaction.account_no == no, CreditPayTransaction.kind == "write_off"
            )
        )
    )
    earlier = service.session.scalars(
        select(CreditPayRepayment.allocation).where(CreditPayRepayment.account_no == no)
    ).all()
    recovered_before = sum(int(allocation.get("recovery", 0)) for allocation in earlier)
    unrecovered = max(written_off - recovered_before, 0)
    recovered = min(draft.amount_minor, unrecovered)
    allocation = dict.fromkeys(COMPONENTS, 0) | {"recovery": recovered, "credit": draft.amount_minor - recovered}
    entry_id = f"credit_pay:repayment:{draft.repayment_id}"
    postings = [Posting.debit(_clearing(service, ccy), draft.amount_minor)]
    if recovered:
        service.ledger.open_account(recoveries_account(ccy), ccy, "income")
        postings.append(Posting.credit(recoveries_account(ccy), recovered))
    if allocation["credit"]:
        postings.append(Posting.credit(credit_balance_account(no), allocation["credit"]))
    service.ledger.post(
        EntryDraft(
            entry_id,
            postings,
            description="credit pay recovery after charge-off",
            metadata={"repayment_id": draft.repayment_id, "account_no": no},
        )
    )
    left = unrecovered - recovered
    balance = -read_balances(service.ledger, [no])[no]["credit"]  # nothing else is owed any more
    row = _received(
        service, draft, account, allocation, today, cycle.partner_id, balance,
        recovered_minor=recovered, unrecovered_minor=left,
    )
    if recovered and left == 0:
        notify(
            service,
            "sceneos_credit_pay_bureau_report",
            report=bureau_report(account, cycle, "recovered", today, outstanding_minor=0),
        )
    return _view(row, created=True)


def _clearing(service: CreditPayService, currency: str) -> str:
    """The clearing account the repayment's money is due from: the collecting partner's, opened on
    its first repayment, or the bank channel's."""
    code = repayment_clearing_account(currency, service.partner_id)
    if service.partner_id is not None:
        service.ledger.open_account(code, currency, "asset", "partner", service.partner_id)
    return code


def repayments(service: CreditPayService, account_no: str) -> list[RepaymentView]:
    rows = service.session.scalars(
        select(CreditPayRepayment)
        .where(CreditPayRepayment.account_no == account_no)
        .order_by(CreditPayRepayment.id)
    ).all()
    return [_view(row, created=False) for row in rows]
