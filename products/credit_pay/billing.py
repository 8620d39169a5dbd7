"""Statements and transactions of a credit-pay account, as the partner and the bank read them.

Statements are written by end of day (``products/credit_pay/end_of_day.py``) on the billing day;
their lines are the account's transactions that statement billed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import select

from core.errors import NotFound
from products.credit_pay.models import CreditPayStatement, CreditPayTransaction

if TYPE_CHECKING:
    from products.credit_pay.service import CreditPayService


class TransactionView(BaseModel):
    business_date: date
    kind: str
    amount_minor: int
    reference: str
    statement_no: str | None
    created_at: datetime


class StatementView(BaseModel):
    statement_no: str
    account_no: str
    currency: str
    period_start: date
    statement_date: date
    due_date: date
    grace_until: date
    previous_balance_minor: int
    purchases_minor: int
    installments_minor: int
    converted_minor: int
    interest_minor: int
    penalty_minor: int
    fees_minor: int
    payments_minor: int
    new_balance_minor: int
    minimum_payment_minor: int
    paid_minor: int
    status: str
    lines: list[TransactionView] | None = None


def _transaction_view(row: CreditPayTransaction) -> TransactionView:
    return TransactionView(
        business_date=row.business_date,
        kind=row.kind,
        amount_minor=row.amount_minor,
        reference=row.reference,
        statement_no=row.statement_no,
        created_at=row.created_at,
    )


def _statement_view(row: CreditPayStatement, lines: list[TransactionView] | None = None) -> StatementView:
    return StatementView(
        statement_no=row.statement_no,
        account_no=row.account_no,
        currency=row.currency,
        period_start=row.period_start,
        statement_date=row.statement_date,
        due_date=row.due_date,
        grace_until=row.grace_until,
        previous_balance_minor=row.previous_balance_minor,
        purchases_minor=row.purchases_minor,
        installments_minor=row.installments_minor,
        converted_minor=row.converted_minor,
        interest_minor=row.interest_minor,
        penalty_minor=row.penalty_minor,
        fees_minor=row.fees_minor,
        payments_minor=row.payments_minor,
        new_balance_minor=row.new_balance_minor,
        minimum_payment_minor=row.minimum_payment_minor,
        paid_minor=row.paid_minor,
        status=row.status,
        lines=lines,
    )


def statements(service: CreditPayService, account_no: str) -> list[StatementView]:
    """Every statement of the account, newest first (without lines)."""
    rows = service.session.scalars(
        select(CreditPayStatement)
        .where(CreditPayStatement.account_no == account_no)
        .order_by(CreditPayStatement.statement_date.desc())
    ).all()
    return [_statement_view(row) for row in rows]


def statement(service: CreditPayService, statement_no: str) -> StatementView:
    """One statement with its lines (the transactions it billed), oldest first."""
    row = service.session.scalars(
        select(CreditPayStatement).where(CreditPayStatement.statement_no == statement_no)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no statement {statement_no!r}")
    lines = service.session.scalars(
        select(CreditPayTransaction)
        .where(CreditPayTransaction.statement_no == statement_no)
        .order_by(CreditPayTransaction.business_date, CreditPayTransaction.id)
    ).all()
    return _statement_view(row, [_transaction_view(t) for t in lines])


def statement_account(service: CreditPayService, statement_no: str) -> str:
    account_no = service.session.scalar(
        select(CreditPayStatement.account_no).where(CreditPayStatement.statement_no == statement_no)
    )
    if account_no is None:
        raise NotFound(f"no statement {statement_no!r}")
    return account_no


def transactions(service: CreditPayService, account_no: str, *, limit: int = 500) -> list[TransactionView]:
    """The account's transactions, oldest first (at most ``limit``, the newest)."""
    rows = service.session.scalars(
        select(CreditPayTransaction)
        .where(CreditPayTransaction.account_no == account_no)
        .order_by(CreditPayTransaction.id.desc())
        .limit(limit)
    ).all()
    return [_transaction_view(t) for t in reversed(rows)]
