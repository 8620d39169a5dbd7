"""Registers the payments module (entry point ``payments``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from products.payments.api import router
from products.payments.cli import cli
from products.payments.console.routes import router as console_router
from products.payments.container import PaymentsContainer
from products.payments.reconciliation import RECON_PURGE, RECONCILE
from products.payments.settings import PaymentsSettings
from products.payments.settlement import JOBS as SETTLEMENT_JOBS


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="payments",
            layer="product",
            description="Smart cashier: merchants and terminals, operators and shifts, EMVCo QR and cash, refunds, statements",
            depends_on=("party",),
            settings_model=PaymentsSettings,
            migrations=Path(__file__).parent / "migrations",
            router=router,
            web=console_router,
            jobs=(*SETTLEMENT_JOBS, RECONCILE, RECON_PURGE),
            cli=cli,
            container=PaymentsContainer,
        )
    ]


@hookimpl
def sceneos_startup(tenant: Any) -> None:
    """Seed the configured merchants, stores and terminals, and open their ledger accounts."""
    if not tenant.has_module("payments"):
        return
    runtime = tenant.module("payments")
    if not runtime.settings.merchants:
        return
    with tenant.unit_of_work() as uow:
        runtime.container.service(uow=uow).sync_configuration()


@hookimpl
def sceneos_webhook_endpoints(tenant: Any, uow: Any, event: Any, recipient: str | None) -> list[Any]:
    """Merchants' own systems as webhook receivers of their payments' events (``webhooks.py``)."""
    from products.payments.webhooks import endpoints

    return endpoints(tenant, uow, event, recipient)
