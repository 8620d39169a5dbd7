"""Hookspecs of the credit-pay product: where a bank changes how repayments are allocated and
where its collections and credit-bureau systems learn about an account's course.

Like every module hook they run per tenant, so a bank's plugin changes that bank's product only.
The collections and bureau hooks are notifications: each implementation is called on its own and
a failing one is logged and skipped, never stopping end of day or a repayment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.hookspecs import hookspec

if TYPE_CHECKING:
    from core.tenancy import Tenant


# -------------------------------------------------------------------------------------------------
# Repayment
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sceneos_credit_pay_allocation_order(
    tenant: Tenant, account_no: str, product: str, default: list[str]
) -> list[str] | None:
    """Choose the order in which a repayment settles what the account owes.

    Called once per repayment (and when a credit balance is applied on a billing day), after the
    account is brought up to date and before anything is posted. Stops at first non-None result.

    :param tenant: the bank.
    :param account_no: the credit account being repaid.
    :param product: the account's product code.
    :param default: the product's configured order (``repayment_allocation``), e.g.
        ``["penalty", "fee", "interest", "principal"]``.
    :return: a permutation of ``penalty``, ``fee``, ``interest`` and ``principal``, or None to keep
        the configured order. Anything else is refused with ``invalid_allocation_order`` and the
        repayment changes nothing.
    """


# -------------------------------------------------------------------------------------------------
# Overdue: collections and the credit bureau
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_credit_pay_collections(tenant: Tenant, case: dict[str, Any]) -> None:
    """Hand an account that moved to another overdue bucket to collections.

    Called by end of day (or a repayment that cures the account) in its unit of work, once per
    change of bucket, e.g. ``M0`` -> ``M1`` when the minimum payment was missed, ``M1`` -> ``M2``
    after 31 days, back to ``M0`` when the past-due amount is repaid.

    :param tenant: the bank.
    :param case: ``account_no``, ``customer_no``, ``product``, ``bucket``, ``previous_bucket``,
        ``days_past_due``, ``past_due_minor``, ``outstanding_minor``, ``currency``,
        ``business_date`` (ISO date). Never an ID or phone number.
    :return: nothing; the return value is ignored.
    """


@hookspec
def sceneos_credit_pay_bureau_report(tenant: Tenant, report: dict[str, Any]) -> None:
    """Report an account's state to a credit bureau.

    Called when a statement is issued, when the account's overdue bucket changes, when it is
    charged off and when a charged-off debt has been recovered in full, in the unit of work that
    made the change (queue the report; do not call the bureau synchronously).

    :param tenant: the bank.
    :param report: ``reason`` (``statement``, ``overdue``, ``charged_off``, ``recovered``), ``account_no``,
        ``customer_no``, ``product``, ``currency``, ``line_minor``, ``outstanding_minor``,
        ``past_due_minor``, ``days_past_due``, ``bucket``, ``business_date`` (ISO date), and for a
        statement ``statement_no``, ``new_balance_minor``, ``minimum_payment_minor``, ``due_date``.
    :return: nothing; the return value is ignored.
    """
