"""``sceneos entry ...``: partners, their keys, webhook deliveries, housekeeping."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app

cli = typer.Typer(help="Super entry: partners, keys, webhooks.", no_args_is_help=True)
partners_cli = typer.Typer(help="Partners and their signing keys.", no_args_is_help=True)
webhooks_cli = typer.Typer(help="Webhook deliveries: log, redelivery, sending.", no_args_is_help=True)
cli.add_typer(partners_cli, name="partners")
cli.add_typer(webhooks_cli, name="webhooks")
console = Console()
ConfigOption = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")
TenantOption = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")


@partners_cli.command("list")
def partners_list(tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """Every partner of a tenant, from configuration and from the database."""
    from infra.entry.runtime import entry_of

    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        partners = entry_of(app).directory.all(uow)
    table = Table(title=f"Partners of {tenant}")
    for column in ("partner", "name", "display name", "scopes", "enabled", "webhook", "source"):
        table.add_column(column)
    for p in partners:
        table.add_row(p.partner_id, p.name, p.display_name or "-", ", ".join(p.scopes) or "-",
                      "yes" if p.enabled else "no", p.webhook_url or "-", p.source)
    console.print(table)


@partners_cli.command("create")
def partners_create(
    partner_id: str = typer.Argument(..., help="lower-case id, e.g. travel_app"),
    name: str = typer.Option(..., help="the partner's name"),
    tenant: str = TenantOption,
    display_name: str | None = typer.Option(None, help="the brand the partner shows products under"),
    scope: list[str] = typer.Option([], "--scope", help="a scope (repeat): party, party:read, party:register_customer"),
    rate_limit: str | None = typer.Option(None, help="e.g. '20/second; 1000/hour'"),
    webhook_url: str | None = typer.Option(None, help="where webhooks go"),
    webhook_event: list[str] = typer.Option([], "--webhook-event", help="event type pattern (repeat)"),
    config: str | None = ConfigOption,
) -> None:
    """Create a partner; prints its key id and secret once (the bank keeps the secret encrypted)."""
    from infra.entry.partners import PartnerAdmin
    from infra.entry.runtime import entry_of

    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        made = PartnerAdmin(uow, entry_of(app).directory).create(
            partner_id, name, display_name=display_name, scopes=scope, rate_limit=rate_limit,
            webhook_url=webhook_url, webhook_events=webhook_event)
    console.print(f"partner {partner_id} created for {tenant}")
    console.print(f"key id:  {made.credential.key_id}")
    console.print(f"secret:  {made.credential.secret}   (shown once: give it to the partner securely)")
    if made.webhook_secret is not None:
        console.print(f"webhook secret: {made.webhook_secret.secret}   (shown once)")


@partners_cli.command("add-key")
def partners_add_key(partner_id: str, tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """A new signing key for rotation; the old one works until revoked."""
    from infra.entry.partners import PartnerAdmin
    from infra.entry.runtime import entry_of

    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        issued = PartnerAdmin(uow, entry_of(app).directory).add_credential(partner_id)
    console.print(f"key id:  {issued.key_id}")
    console.print(f"secret:  {issued.secret}   (shown once)")


@partners_cli.command("revoke-key")
def partners_revoke_key(partner_id: str, key_id: str, tenant: str = TenantOption,
                        config: str | None = ConfigOption) -> None:
    """Revoke a signing key (other processes stop accepting it within entry.credential_cache_seconds)."""
    from infra.entry.partners import PartnerAdmin
    from infra.entry.runtime import entry_of

    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        PartnerAdmin(uow, entry_of(app).directory).revoke_credential(partner_id, key_id)
    console.print(f"key {key_id} of {partner_id} revoked")


@partners_cli.command("set-enabled")
def partners_set_enabled(partner_id: str, enabled: bool = typer.Argument(..., help="true or false"),
                         tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """Switch a partner off (every call refused with 401) or on again."""
    from infra.entry.partners import PartnerAdmin
    from infra.entry.runtime import entry_of

    with open_app(config) as app, app.tenant(tenant).unit_of_work() as uow:
        PartnerAdmin(uow, entry_of(app).directory).update(partner_id, enabled=enabled)
    console.print(f"partner {partner_id} {'enabled' if enabled else 'disabled'}")


@webhooks_cli.command("list")
def webhooks_list(tenant: str = TenantOption, status: str | None = typer.Option(None, help="pending, delivered, dead"),
                  limit: int = typer.Option(50, min=1, max=1000), config: str | None = ConfigOption) -> None:
    """The delivery log, newest first."""
    from infra.entry.webhooks import delivery_log

    with open_app(config) as app:
        rows = delivery_log(app.tenant(tenant), status=status, limit=limit)
    table = Table(title=f"Webhook deliveries of {tenant}")
    for column in ("delivery", "event type", "partner", "status", "attempts", "last", "next attempt"):
        table.add_column(column)
    for row in rows:
        last = str(row["last_status_code"] or row["last_error"] or "-")
        table.add_row(str(row["delivery_id"]), str(row["event_type"]), str(row["partner_id"]), str(row["status"]),
                      str(row["attempts"]), last[:40], str(row["next_attempt_at"]))
    console.print(table)


@webhooks_cli.command("redeliver")
def webhooks_redeliver(delivery_id: str, tenant: str = TenantOption, config: str | None = ConfigOption) -> None:
    """Send one delivery again now, whatever its state."""
    from infra.entry.runtime import entry_of
    from infra.entry.webhooks import WebhookDispatcher

    with open_app(config) as app:
        dispatcher = WebhookDispatcher(app, entry_of(app))
        try:
            outcome = dispatcher.redeliver(app.tenant(tenant), delivery_id)
        finally:
            dispatcher.close()
    console.print(f"{delivery_id}: {outcome}")


@webhooks_cli.command("run")
def webhooks_run(
    config: str | None = ConfigOption,
    loop: bool = typer.Option(False, "--loop", help="keep sending, every --interval seconds"),
    interval: float = typer.Option(1.0, min=0.05),
    max_sweeps: int = typer.Option(0, min=0, help="stop after this many sweeps with --loop (0: never)"),
) -> None:
    """Send due webhooks once, or continuously with --loop (a worker beside ``sceneos serve``)."""
    from infra.entry.runtime import entry_of
    from infra.entry.webhooks import WebhookDispatcher

    with open_app(config) as app:
        dispatcher = WebhookDispatcher(app, entry_of(app))
        sweeps = 0
        try:
            while True:
                report = dispatcher.run_once()
                sweeps += 1
                if report.attempted or not loop:
                    console.print(f"attempted {report.attempted}, delivered {report.delivered}, "
                                  f"failed {report.failed}, dead {report.dead}")
                if not loop or (max_sweeps and sweeps >= max_sweeps):
                    break
                time.sleep(interval)
        finally:
            dispatcher.close()


@cli.command("prune")
def prune(config: str | None = ConfigOption) -> None:
    """Forget expired nonces and idempotency keys (the API also does it as it goes)."""
    from infra.entry.runtime import entry_of

    with open_app(config) as app:
        entry = entry_of(app)
        total = 0
        for tenant in app.tenants.values():
            if tenant.has_module("entry"):
                with tenant.unit_of_work() as uow:
                    total += entry.prune(uow)
    console.print(f"pruned {total} expired rows")
