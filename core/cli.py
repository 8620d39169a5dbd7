"""The ``sceneos`` command. Errors are one readable line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from core.errors import SceneOSError

app = typer.Typer(name="sceneos", help="SceneOS: a bank's fintech operating system.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
plugins_cli = typer.Typer(help="Plugins.", no_args_is_help=True)
config_cli = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(db_cli, name="db")
app.add_typer(plugins_cli, name="plugins")
app.add_typer(config_cli, name="config")

console = Console()
ConfigOption = typer.Option(None, "--config", "-c", help="config file (default: $SCENEOS_CONFIG or ./sceneos.toml)")


@app.command()
def serve(
    config: str | None = ConfigOption,
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    workers: int = typer.Option(1, min=1, max=64, help="worker processes (stateless; scale out behind a balancer)"),
) -> None:
    """Start the HTTP API (super entry) with uvicorn."""
    import uvicorn

    from core.cli_support import build_app
    from core.settings import ENV_CONFIG_FILE, resolve_config_path

    sceneos = build_app(config).start()  # validates and migrates once, before any worker starts
    console.print(f"SceneOS on http://{host}:{port}  (tenants: {', '.join(sceneos.tenants) or 'none'}; "
                  f"API docs at /docs)")
    if workers == 1:
        try:
            uvicorn.run(sceneos.http(), host=host, port=port, log_config=None, access_log=False)
        finally:
            sceneos.close()
        return
    sceneos.close()
    # Several processes need an import string: each worker builds its own application.
    path, _ = resolve_config_path(config)
    if path is not None:
        os.environ[ENV_CONFIG_FILE] = str(path.resolve())
    uvicorn.run("core.cli_support:http_app_for_worker", factory=True, host=host, port=port, workers=workers,
                log_config=None, access_log=False)


@app.command()
def demo(
    database: str = typer.Option("sqlite:///sceneos-demo.db", help="database URL for the demo"),
) -> None:
    """Build the two-bank configuration of journey 6 and show what each bank has."""
    from core.demo import run_demo

    run_demo(database, console)


@db_cli.command("upgrade")
def db_upgrade(config: str | None = ConfigOption) -> None:
    """Apply every module's migrations (``upgrade heads``)."""
    from core.cli_support import build_app

    sceneos = build_app(config, migrate=False)
    sceneos.migrate()
    console.print("database schema is up to date")
    sceneos.close()


@db_cli.command("current")
def db_current(config: str | None = ConfigOption) -> None:
    """Show whether the schema is at every module's newest revision."""
    from core.cli_support import build_app
    from core.migrations import current_heads, expected_heads

    sceneos = build_app(config, migrate=False)
    current, expected = current_heads(sceneos.engine), expected_heads(sceneos.version_locations())
    sceneos.close()
    console.print(f"current: {', '.join(sorted(current)) or '(empty)'}")
    console.print(f"newest:  {', '.join(sorted(expected))}")
    if current != expected:
        raise SceneOSError("schema is behind: run `sceneos db upgrade`")


@plugins_cli.command("list")
def plugins_list(config: str | None = ConfigOption) -> None:
    """Every available plugin: where it came from, its hooks, its modules, the tenants using it."""
    from core.cli_support import build_app

    sceneos = build_app(config, migrate=False)
    table = Table(title="SceneOS plugins")
    for column in ("plugin", "origin", "hooks", "modules", "active for"):
        table.add_column(column)
    for info in sceneos.catalog:
        active = [t.id for t in sceneos.tenants.values() if info.name in t.hooks.plugin_names()]
        scope = "all tenants" if info.name in sceneos.settings.plugins else ", ".join(active) or "-"
        table.add_row(info.name, info.origin, "\n".join(info.hooks), ", ".join(m.name for m in info.modules) or "-", scope)
    sceneos.close()
    console.print(table)


@config_cli.command("check")
def config_check(
    file: str | None = typer.Argument(None, help="config file (default: $SCENEOS_CONFIG or ./sceneos.toml)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a tree"),
) -> None:
    """Validate the configuration (file + environment + plugins) and print it, secrets masked."""
    from core.cli_support import build_app

    sceneos = build_app(file, migrate=False)
    effective: dict[str, Any] = sceneos.settings.model_dump(mode="json")
    for tenant_id, tenant in sceneos.tenants.items():
        effective["tenants"][tenant_id]["modules"] = {
            name: runtime.settings.model_dump(mode="json") for name, runtime in tenant.modules.items()
        }
    effective["database"]["url"] = _mask_url(effective["database"]["url"])
    effective = _mask_secret_keys(effective)
    sceneos.close()
    if as_json:
        console.print_json(json.dumps(effective))
    else:
        from rich.pretty import Pretty

        console.print(f"[green]configuration is valid[/green] ({sceneos.source})")
        console.print(Pretty(effective))


SECRET_KEY_WORDS = ("secret", "password", "token", "api_key", "private_key", "master_key")


def _mask_secret_keys(value: Any) -> Any:
    """Plugin configuration is free-form: mask values whose key names a secret."""
    if isinstance(value, dict):
        return {
            key: "**********" if any(word in str(key).lower() for word in SECRET_KEY_WORDS) and value[key]
            and not isinstance(value[key], dict | list) else _mask_secret_keys(value[key])
            for key in value
        }
    if isinstance(value, list):
        return [_mask_secret_keys(item) for item in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        return _mask_url(value)  # a connection URL (database, Redis) may carry a password
    return value


def _mask_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _add_module_commands() -> None:
    """Each module's CLI becomes ``sceneos <module> ...``."""
    from core.plugins import PluginCatalog

    for name, (spec, _) in sorted(PluginCatalog.discover().modules().items()):
        if spec.cli is None:
            continue
        app.add_typer(spec.cli, name=name)
        groups = {group.name: group.typer_instance for group in spec.cli.registered_groups}
        for alias, group in spec.cli_aliases.items():
            target = spec.cli if not group else groups[group]
            path = f"{name} {group}".strip()
            app.add_typer(target, name=alias, help=f"Alias of `sceneos {path}`.")


def main() -> None:
    try:
        _add_module_commands()
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SceneOSError as exc:
        _fail(f"error: {exc.message}", 2)
    except (typer.Abort, KeyboardInterrupt):
        _fail("aborted", 130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own message
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("SCENEOS_DEBUG"):
            raise
        from core.logging import mask_text

        _fail(f"error: internal error: {type(exc).__name__}: {mask_text(str(exc))} (set SCENEOS_DEBUG=1 for the trace)", 1)


def _fail(line: str, code: int) -> None:
    Console(stderr=True).print(line, highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
