"""``sceneos risk ...``: rules, blacklists, decisions, replays and the review queue of one tenant."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app

cli = typer.Typer(help="Risk control: rules, blacklists, decisions, replays, manual review.", no_args_is_help=True)
blacklist_cli = typer.Typer(help="The tenant's blacklist of ID numbers, phones and devices.", no_args_is_help=True)
reviews_cli = typer.Typer(help="The manual review queue.", no_args_is_help=True)
cli.add_typer(blacklist_cli, name="blacklist")
cli.add_typer(reviews_cli, name="reviews")
console = Console()
TenantOption = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
ConfigOption = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")
OperatorOption = typer.Option(..., "--operator", "-o", help="operator id (employee number)")


def _service(app: Any, tenant: str, uow: Any) -> Any:
    return app.tenant(tenant).module("risk").container.service(uow=uow)


@cli.command("rules")
def rules(tenant: str = TenantOption, flow: str | None = typer.Option(None, help="activation, purchase or payment"),
          config: str | None = ConfigOption) -> None:
    """The compiled rule sets: every rule with its stage, priority, action and origin."""
    with open_app(config) as app:
        engine = app.tenant(tenant).module("risk").container.engine()
        for rule_set in engine.rule_sets():
            if flow is not None and rule_set.flow != flow:
                continue
            table = Table(title=f"{rule_set.flow} / {rule_set.variant}  {rule_set.version}")
            for column in ("stage", "priority", "name", "version", "action", "reason", "origin", "expression"):
                table.add_column(column)
            for compiled in rule_set.rules:
                rule = compiled.rule
                table.add_row(rule.stage, str(rule.priority), rule.name, rule.version, rule.action, rule.reason_code,
                              compiled.origin, rule.expression)
            console.print(table)
            challenger = engine.flow(rule_set.flow).challenger
            if rule_set.variant == "champion" and challenger is not None:
                console.print(f"challenger {challenger.name!r} takes {challenger.share_bps / 100:g}% of decisions")


@blacklist_cli.command("list")
def blacklist_list(tenant: str = TenantOption, kind: str | None = typer.Option(None, help="id_number, phone or device"),
                   config: str | None = ConfigOption) -> None:
    """Every blacklisted identifier."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        entries = _service(app, tenant, uow).blacklist.entries(kind)
    table = Table(title=f"Blacklist of {tenant}")
    for column in ("kind", "value", "reason", "source", "since"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.kind, entry.value, entry.reason, entry.source, entry.created_at.isoformat())
    console.print(table)


@blacklist_cli.command("add")
def blacklist_add(kind: str = typer.Argument(..., help="id_number, phone or device"), value: str = typer.Argument(...),
                  tenant: str = TenantOption, reason: str = typer.Option(..., help="why"),
                  operator: str = OperatorOption, config: str | None = ConfigOption) -> None:
    """Blacklist an identifier (idempotent)."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        entry, created = _service(app, tenant, uow).blacklist.add(kind, value, reason=reason, source=f"operator:{operator}")
    console.print(f"{'added' if created else 'already listed'}: {entry.kind} {entry.value} ({entry.source})")


@blacklist_cli.command("remove")
def blacklist_remove(kind: str = typer.Argument(...), value: str = typer.Argument(...), tenant: str = TenantOption,
                     operator: str = OperatorOption, config: str | None = ConfigOption) -> None:
    """Take an identifier off the blacklist (a configured entry returns at the next startup)."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        removed = _service(app, tenant, uow).blacklist.remove(kind, value, operator=operator)
    console.print("removed" if removed else "not listed")
    if not removed:
        raise typer.Exit(1)


@cli.command("decisions")
def decisions(customer: str = typer.Option(..., "--customer", help="customer number (cus_...)"),
              tenant: str = TenantOption, flow: str | None = typer.Option(None),
              challengers: bool = typer.Option(False, help="also the challengers' shadow decisions"),
              config: str | None = ConfigOption) -> None:
    """A customer's decisions, newest first."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        records = _service(app, tenant, uow).decisions_for_customer(customer, flow=flow, include_challengers=challengers)
    table = Table(title=f"Decisions for {customer}")
    for column in ("decided at", "decision", "flow", "variant", "outcome", "reasons", "line", "score", "ms"):
        table.add_column(column)
    for record in records:
        table.add_row(record.decided_at.isoformat(), record.decision_no, record.flow, record.variant, record.outcome,
                      ", ".join(record.reasons), str(record.offer.line_minor) if record.offer else "-",
                      f"{record.score:g}" if record.score is not None else "-", f"{record.elapsed_us / 1000:.2f}")
    console.print(table)


@cli.command("show")
def show(decision_no: str = typer.Argument(...), tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """One decision record in full (JSON)."""
    from dataclasses import asdict

    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        record = _service(app, tenant, uow).get_decision(decision_no)
    console.print_json(json.dumps(asdict(record), default=str))


@cli.command("replay")
def replay(decision_no: str = typer.Argument(...), tenant: str = TenantOption,
           current_rules: bool = typer.Option(False, "--current-rules", help="evaluate today's rules (what-if)"),
           config: str | None = ConfigOption) -> None:
    """Decide again from the record alone and compare; exits 1 when the outcome differs."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        result = _service(app, tenant, uow).replay(decision_no, rules="current" if current_rules else "recorded")
    console.print(f"{decision_no} with {result.rules} rules {result.rule_set_version}: "
                  f"{result.original['outcome']} -> {result.replayed.get('outcome')}  "
                  f"{'same' if result.matches else 'DIFFERENT: ' + ', '.join(result.differences)}")
    if not result.matches:
        raise typer.Exit(1)


@reviews_cli.command("list")
def reviews_list(tenant: str = TenantOption, status: str = typer.Option("open", help="open, approved, declined or all"),
                 flow: str | None = typer.Option(None), config: str | None = ConfigOption) -> None:
    """Review cases, oldest first."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        cases = _service(app, tenant, uow).reviews.cases(None if status == "all" else status, flow=flow)
    table = Table(title=f"Review cases of {tenant} ({status})")
    for column in ("opened at", "case", "decision", "flow", "customer", "reasons", "proposed line", "status"):
        table.add_column(column)
    for case in cases:
        table.add_row(case.opened_at.isoformat(), case.case_no, case.decision_no, case.flow, case.customer_no or "-",
                      ", ".join(case.reasons), str(case.proposed_line_minor or "-"), case.status)
    console.print(table)


@reviews_cli.command("show")
def reviews_show(case: str = typer.Argument(..., help="case (rev_...) or decision (dec_...) number"),
                 tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """One case with its audit trail."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        view = _service(app, tenant, uow).reviews.get(case)
    console.print(f"{view.case_no} ({view.flow}, decision {view.decision_no}): {view.status}; reasons {', '.join(view.reasons)}")
    for action in view.actions:
        console.print(f"  {action.at.isoformat()}  {action.operator:<12} {action.action:<10} {action.note}")


@reviews_cli.command("approve")
def reviews_approve(case: str = typer.Argument(...), tenant: str = TenantOption, operator: str = OperatorOption,
                    note: str = typer.Option("", help="why"),
                    line_minor: int | None = typer.Option(None, help="grant a smaller line than proposed"),
                    config: str | None = ConfigOption) -> None:
    """Approve a referred decision."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        view = _service(app, tenant, uow).reviews.approve(case, operator=operator, note=note, line_minor=line_minor)
    console.print(f"{view.case_no}: approved by {operator}" + (f", line {view.granted_line_minor}" if view.granted_line_minor else ""))


@reviews_cli.command("decline")
def reviews_decline(case: str = typer.Argument(...), tenant: str = TenantOption, operator: str = OperatorOption,
                    note: str = typer.Option("", help="why"), config: str | None = ConfigOption) -> None:
    """Decline a referred decision."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        view = _service(app, tenant, uow).reviews.decline(case, operator=operator, note=note)
    console.print(f"{view.case_no}: declined by {operator}")


@reviews_cli.command("comment")
def reviews_comment(case: str = typer.Argument(...), note: str = typer.Argument(...), tenant: str = TenantOption,
                    operator: str = OperatorOption, config: str | None = ConfigOption) -> None:
    """Add a note to a case's audit trail."""
    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        _service(app, tenant, uow).reviews.comment(case, operator=operator, note=note)
    console.print("noted")
