"""Registers the credit-pay product (entry point ``credit_pay``) and its answer to the credit
module's internal-history hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from products.credit_pay.api import router
from products.credit_pay.cli import cli
from products.credit_pay.container import CreditPayContainer
from products.credit_pay.service import history_for_hook
from products.credit_pay.settings import CreditPaySettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="credit_pay",
            layer="product",
            description="Consumer credit: activation, purchases on a credit line, installment trials",
            depends_on=("party", "credit", "risk"),
            settings_model=CreditPaySettings,
            migrations=Path(__file__).parent / "migrations",
            router=router,
            cli=cli,
            container=CreditPayContainer,
        )
    ]


@hookimpl
def sceneos_credit_internal_history(tenant: Any, customer_no: str) -> dict[str, int] | None:
    return history_for_hook(tenant, customer_no)
