"""Registers the risk module (entry point ``risk``).

At startup, for each tenant that enables it: the rule sets are compiled (a bad rule stops startup),
stored (content-addressed, for replays), and the blacklist is seeded from configuration and from
``sceneos_risk_blacklist_entries``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import ConfigError, SceneOSError
from core.hookspecs import hookimpl
from core.modules import ModuleSpec
from middle.risk import hooks
from middle.risk.blacklist import BlacklistEntrySpec
from middle.risk.cli import cli
from middle.risk.container import RiskContainer
from middle.risk.jobs import JOBS
from middle.risk.models import BlacklistKind
from middle.risk.settings import RiskSettings


@hookimpl
def sceneos_register_modules() -> list[ModuleSpec]:
    return [
        ModuleSpec(
            name="risk",
            layer="middle",
            description="Risk control: rules, decision flows, anti-fraud, champion/challenger, review queue",
            depends_on=("party", "credit"),
            settings_model=RiskSettings,
            migrations=Path(__file__).parent / "migrations",
            jobs=JOBS,
            cli=cli,
            hookspecs=hooks,
            container=RiskContainer,
        )
    ]


@hookimpl
def sceneos_startup(tenant: Any) -> None:
    if not tenant.has_module("risk"):
        return
    runtime = tenant.module("risk")
    engine = runtime.container.engine()  # compiles every rule set now
    settings: RiskSettings = runtime.settings
    seeds: list[tuple[BlacklistEntrySpec, str]] = []
    for kind, values in ((BlacklistKind.ID_NUMBER, settings.blacklist.id_numbers),
                         (BlacklistKind.PHONE, settings.blacklist.phones),
                         (BlacklistKind.DEVICE, settings.blacklist.devices)):
        seeds += [(BlacklistEntrySpec(kind=kind, value=value, reason=settings.blacklist.reason), "config")
                  for value in values]
    for plugin_name, call in tenant.hooks.implementations("sceneos_risk_blacklist_entries"):
        for entry in call(tenant=tenant) or []:
            spec = entry if isinstance(entry, BlacklistEntrySpec) else BlacklistEntrySpec.model_validate(entry)
            seeds.append((spec, f"plugin:{plugin_name}"))
    with tenant.unit_of_work() as uow:
        service = runtime.container.service(uow=uow)
        for spec, source in seeds:
            try:
                service.blacklist.add(spec.kind, spec.value, reason=spec.reason, source=source)
            except SceneOSError as exc:
                where = f"tenants.{tenant.id}.modules.risk.blacklist" if source == "config" else source
                raise ConfigError(f"blacklist entry {spec.value!r}: {exc.message}", key=where) from None
        engine.store_rule_sets(uow, remember=False)
    engine.mark_stored({rule_set.version for rule_set in engine.rule_sets()})
