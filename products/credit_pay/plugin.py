"""Registers the credit-pay product (entry point ``credit_pay``) and its answer to the credit
module's internal-history hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from products.credit_pay import hookspecs as credit_pay_hookspecs
from products.credit_pay.api import router
from products.credit_pay.cli import cli
from products.credit_pay.container import CreditPayContainer
from products.credit_pay.end_of_day import END_OF_DAY
from products.credit_pay.lines import LINE_REVIEW_JOB, review_history
from products.credit_pay.service import history_for_hook
from products.credit_pay.settings import CreditPaySettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="credit_pay",
            layer="product",
            description="Consumer credit: activation, purchases on a credit line, installments, statements, repayment, overdue, end of day",
            depends_on=("party", "credit", "risk"),
            settings_model=CreditPaySettings,
            migrations=Path(__file__).parent / "migrations",
            router=router,
            cli=cli,
            container=CreditPayContainer,
            jobs=(LINE_REVIEW_JOB, END_OF_DAY),
            hookspecs=credit_pay_hookspecs,
        )
    ]


@hookimpl
def sceneos_credit_internal_history(tenant: Any, customer_no: str) -> dict[str, int] | None:
    # A line review decides the line under review: the history leaves that account out.
    reviewing, report = review_history(tenant, customer_no)
    if reviewing:
        return report
    return history_for_hook(tenant, customer_no)


@hookimpl
def sceneos_funding_sources(tenant: Any) -> list[Any]:
    """Offer credit pay as a funding source of other modules' payments (``core.funding``)."""
    if not tenant.has_module("credit_pay"):
        return []
    from products.credit_pay.funding import CreditPayFunding

    return [CreditPayFunding(tenant)]
