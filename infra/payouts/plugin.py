"""Registers payouts (entry point ``payouts``): infrastructure a bank enables to send what it owes
outside (merchants' settlements) as ISO 20022 credit transfers; off unless a tenant enables it."""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from infra.payouts.api import router
from infra.payouts.cli import cli
from infra.payouts.jobs import BATCH
from infra.payouts.settings import PayoutsSettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="payouts",
            layer="infra",
            description="Payouts: money owed outside the bank sent as ISO 20022 pain.001 credit transfers",
            depends_on=("ledger",),
            settings_model=PayoutsSettings,
            migrations=Path(__file__).parent / "migrations",
            router=router,
            cli=cli,
            jobs=(BATCH,),
        )
    ]
