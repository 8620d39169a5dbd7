"""Registers the credit-pay product (entry point ``credit_pay``), its answer to the credit
module's internal-history hook, its funding source, and its subscriber completing activations
referred to review (``reviews.py``)."""

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
from products.credit_pay.settlement import MERCHANT_SETTLEMENT


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
            jobs=(LINE_REVIEW_JOB, END_OF_DAY, MERCHANT_SETTLEMENT),
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


@hookimpl
def sceneos_on_event(event: Any, tenant: Any) -> None:
    """Complete an activation referred to review once the risk module's case is decided."""
    from products.credit_pay.reviews import REVIEW_EVENTS, complete_review

    if event.type not in REVIEW_EVENTS or not tenant.has_module("credit_pay"):
        return
    from infra.outbox.service import defer_to_receipt

    runtime = tenant.module("credit_pay")

    def work(uow: Any) -> None:
        complete_review(runtime.container.service(uow=uow), event.payload)

    # Under the outbox the application is completed in the unit of work recording the receipt
    # (a failure is retried with the event); otherwise in a unit of work of its own.
    if not defer_to_receipt(work):
        with tenant.unit_of_work() as uow:
            work(uow)
