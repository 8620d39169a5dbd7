"""Hookspecs of the risk module: where a bank adds rules, steps and blacklist entries.

Like every module hook they run per tenant, so a bank's plugin changes that bank's decisions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.hookspecs import hookspec

if TYPE_CHECKING:
    from core.tenancy import Tenant
    from middle.risk.blacklist import BlacklistEntrySpec
    from middle.risk.flows import Step
    from middle.risk.rules import Rule


@hookspec
def sceneos_risk_rules(tenant: Tenant, flow: str) -> list[Rule]:  # type: ignore[empty-body]
    """Add rules to one of ``tenant``'s decision flows, beside the rules from configuration.

    Called once per tenant and flow (``activation``, ``purchase``, ``payment``) when the tenant's
    rule sets are compiled: at startup, never per decision. Each rule is compiled and checked
    against the facts of its flow and stage then; a bad one stops startup with a line naming the
    plugin and the rule.

    :param tenant: the bank whose rules are being compiled (``tenant.plugin_config`` works).
    :param flow: the flow being compiled.
    :return: a list of :class:`middle.risk.rules.Rule` (rules of another flow are ignored in this
        call), or None. Collected from every plugin; rule names must be unique within a flow. The
        rules join the champion's rule set and, unless a challenger replaces its rules, the
        challenger's.
    """


@hookspec
def sceneos_risk_flow_steps(tenant: Tenant, flow: str, steps: list[Step]) -> list[Step] | None:  # type: ignore[empty-body]
    """Change the steps of one of ``tenant``'s decision flows: add, remove or reorder steps.

    Called once per tenant and flow when the flows are built (at startup), one implementation at
    a time in hook order: each receives the steps as the previous implementation left them.
    A step is an object with ``name``, ``kind``, ``external`` and the methods ``gather(ctx)``
    (reads from outside the flow, live decisions only; its output is recorded) and
    ``evaluate(ctx, output)`` (pure; returns a :class:`middle.risk.flows.StepVerdict`); see
    :mod:`middle.risk.flows`. Replays run the same steps with the recorded outputs.

    :param tenant: the bank.
    :param flow: ``activation``, ``purchase`` or ``payment``.
    :param steps: the flow's steps so far (built-in first); do not mutate it, return a new list.
    :return: the new list of steps, or None to leave them. Step names must be unique.
    """


@hookspec
def sceneos_risk_blacklist_entries(tenant: Tenant) -> list[BlacklistEntrySpec]:  # type: ignore[empty-body]
    """Seed ``tenant``'s blacklist with entries a plugin knows (a bank's local list).

    Called once per tenant at startup, after the entries from configuration
    (``[tenants.<id>.modules.risk.blacklist]``) are added. Each entry is added idempotently
    with source ``plugin:<name>``; an entry an operator removed comes back at the next startup
    while the plugin still returns it.

    :param tenant: the bank whose blacklist is being seeded.
    :return: a list of :class:`middle.risk.blacklist.BlacklistEntrySpec` (``kind``: ``id_number``,
        ``phone`` or ``device``; ``value``; ``reason``), or None. Collected from every plugin.
    """
