"""Registers the credit module (entry point ``credit``) and its built-in strategies.

The default limit and pricing strategies are hook implementations marked ``trylast=True``: a
bank's plugin answering ``sceneos_credit_limit_strategy`` or ``sceneos_credit_pricing_strategy``
is asked first, for that bank only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from middle.credit import hooks
from middle.credit.cli import cli
from middle.credit.container import CreditContainer
from middle.credit.settings import CreditSettings
from middle.credit.strategies import default_line_minor, default_pricing


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="credit",
            layer="middle",
            description="Credit profile, scorecards, limit and pricing strategies",
            depends_on=("party",),
            settings_model=CreditSettings,
            migrations=Path(__file__).parent / "migrations",
            cli=cli,
            hookspecs=hooks,
            container=CreditContainer,
        )
    ]


@hookimpl
def sceneos_startup(tenant: Any) -> None:
    if tenant.has_module("credit"):
        # Load and check the scorecard now: a bad file stops startup with its name and problem.
        tenant.module("credit").container.scorecard()


@hookimpl(trylast=True)
def sceneos_credit_limit_strategy(profile: Any, band: Any, settings: Any) -> int:
    return default_line_minor(profile, band, settings)


@hookimpl(trylast=True)
def sceneos_credit_pricing_strategy(band: Any) -> Any:
    return default_pricing(band)
