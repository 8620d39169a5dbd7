"""Registers the ledger (entry point ``ledger``): infrastructure every tenant has, enabled by default.

Its tables come from the Alembic branch ``ledger`` in ``migrations/``; products use it through
:class:`infra.ledger.Ledger` on their tenant-bound unit of work
(``tenant.module("ledger").container.ledger(session=uow.session)``). At startup each tenant's chart
of accounts (configuration, then ``sceneos_ledger_chart_of_accounts``) is opened idempotently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from infra.ledger import hooks
from infra.ledger.cli import cli
from infra.ledger.container import LedgerContainer
from infra.ledger.jobs import EXPIRE_PENDING, ROLLUP
from infra.ledger.settings import AccountSpec, LedgerSettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="ledger",
            layer="infra",
            description="Double-entry ledger: balanced entries, two-phase holds, balances as of any time",
            settings_model=LedgerSettings,
            migrations=Path(__file__).parent / "migrations",
            cli=cli,
            hookspecs=hooks,
            container=LedgerContainer,
            jobs=(EXPIRE_PENDING, ROLLUP),
            default_enabled=True,
        )
    ]


@hookimpl
def sceneos_startup(tenant: Any) -> None:
    if not tenant.has_module("ledger"):
        return
    runtime = tenant.module("ledger")
    specs: list[AccountSpec] = list(runtime.settings.accounts)
    for declared in tenant.hooks.hook.sceneos_ledger_chart_of_accounts(tenant=tenant):
        specs.extend(declared or [])
    if not specs:
        return
    with tenant.unit_of_work() as uow:
        ledger = runtime.container.ledger(session=uow.session)
        for spec in specs:
            ledger.open_account(
                spec.code,
                spec.currency or tenant.currency,
                spec.type,
                owner_type=spec.owner_type,
                owner_id=spec.owner_id,
                constraint=spec.constraint,
            )
