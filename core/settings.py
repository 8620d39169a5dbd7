"""The one settings tree: a TOML file plus ``SCENEOS__``-prefixed environment variables.

Shape (TOML)::

    [database]
    url = "sqlite:///sceneos.db"

    [tenants.bank_a]            # tenant id is the table key
    name = "Bank A"
    currency = "CNY"
    plugins = ["example_bank"]

    [tenants.bank_a.modules.party]   # present = enabled; ``enabled = false`` keeps it off
    min_age_years = 18

Environment variables override the file, nested with ``__``:
``SCENEOS__TENANTS__BANK_A__MODULES__PARTY__MIN_AGE_YEARS=20``.

Module settings stay raw dicts here; the application validates each one against the settings model
its module declares (only plugins know those models), with the same one-line errors.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import ConfigError
from core.money import RoundingMode, validate_currency

DEFAULT_CONFIG_FILE = "sceneos.toml"
ENV_PREFIX = "SCENEOS__"
ENV_CONFIG_FILE = "SCENEOS_CONFIG"
TENANT_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class StrictModel(BaseModel):
    """Base of every settings section: an unknown key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModuleSettings(StrictModel):
    """Base of a module's own settings model. ``enabled`` lets a file keep settings while off."""

    enabled: bool = True


class DatabaseSettings(StrictModel):
    url: str = "sqlite:///sceneos.db"
    echo: bool = False
    # None: migrate on startup for SQLite (embedded, zero set-up), never for a server database.
    auto_migrate: bool | None = None
    pool_size: int = Field(default=10, ge=1, le=200)


class LoggingSettings(StrictModel):
    mode: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PARTNER_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
SCOPE_PATTERN = r"^[a-z][a-z0-9_]*(:[a-z0-9_*]+)?$"


class PartnerCredentialSettings(StrictModel):
    """One signing key of a partner. Several at once let a partner rotate without downtime."""

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="public id sent with every signed request")
    secret: SecretStr = Field(description="HMAC-SHA256 signing secret; set it from the environment")


class PartnerSettings(StrictModel):
    """A partner platform of one tenant, declared in configuration (the super entry also keeps
    partners created through its admin API/CLI in the database).

    ``secret`` is a shorthand for one credential whose key id is ``<tenant>.<partner>``;
    ``credentials`` holds any number of (key id, secret) pairs for rotation.
    """

    name: str
    display_name: str | None = None
    # "<module>" (every operation), "<module>:read" (GET), "<module>:write" (other methods) or
    # "<module>:<operation>" (one route, by its function name).
    scopes: list[str] = Field(default_factory=list)
    secret: SecretStr | None = None
    credentials: list[PartnerCredentialSettings] = Field(default_factory=list)
    enabled: bool = True
    # ``limits`` syntax, e.g. "20/second; 1000/hour"; unset: the tenant's entry default.
    rate_limit: str | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Older webhook secrets still signed with during a rotation (receivers accept either).
    previous_webhook_secrets: list[SecretStr] = Field(default_factory=list)
    # Event types (fnmatch patterns, e.g. "party.*") delivered to this partner beyond its own.
    webhook_events: list[str] = Field(default_factory=list)

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from limits import parse_many

        try:
            if not parse_many(value):
                raise ValueError
        except ValueError:
            raise ValueError(f"rate_limit {value!r} is not a rate like '20/second; 1000/hour'") from None
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        import re

        for scope in value:
            if not re.match(SCOPE_PATTERN, scope):
                raise ValueError(f"scope {scope!r} must be '<module>', '<module>:read', '<module>:write' or '<module>:<operation>'")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value


class EntrySettings(StrictModel):
    """The super entry, for the whole deployment (per-tenant options: ``[tenants.<id>.modules.entry]``).

    Secrets come from the environment: ``SCENEOS__ENTRY__MASTER_KEY``, ``SCENEOS__ENTRY__ADMIN_API_KEYS``.
    """

    # Encrypts partner secrets kept in the database. Required with a server database; SQLite demos
    # fall back to a fixed development key (and say so in the log).
    master_key: SecretStr | None = None
    # Old master keys, still accepted for decryption while secrets are re-encrypted.
    previous_master_keys: list[SecretStr] = Field(default_factory=list)
    # Keys for the bank's own routes (``/v1/tenants/...``, ``/v1/admin/...``), sent as
    # ``X-SceneOS-Admin-Key``. None configured: open on SQLite (development), closed otherwise.
    admin_api_keys: list[SecretStr] = Field(default_factory=list)
    clock_skew_seconds: int = Field(default=300, ge=1, le=3600, description="accepted signature age, either way")
    # Where seen nonces are kept: "database" (shared by every worker), "memory" (one process) or
    # "redis" (``redis_url``).
    replay_store: Literal["database", "memory", "redis"] = "database"
    # Rate-limit counters: "memory://" (one process) or a Redis URL ("redis://host:6379").
    rate_limit_storage: str = "memory://"
    redis_url: str | None = None
    credential_cache_seconds: float = Field(default=5.0, ge=0, le=300, description="how long a looked-up key is trusted")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # ``sceneos serve`` sends due webhooks from a background task every this many seconds (0: off;
    # run ``sceneos entry webhooks run --loop`` instead).
    webhook_poll_seconds: float = Field(default=1.0, ge=0, le=3600)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class TenantSettings(StrictModel):
    """One bank. Its id is its key under ``[tenants]``."""

    name: str
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"
    rounding: RoundingMode = RoundingMode.HALF_EVEN
    modules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    plugins: list[str] = Field(default_factory=list)
    # Plugin configuration, narrowest scope first: tenant here, then the global ``plugin_config``.
    plugin_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    partners: dict[str, PartnerSettings] = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return validate_currency(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @field_validator("partners")
    @classmethod
    def _partner_ids(cls, value: dict[str, PartnerSettings]) -> dict[str, PartnerSettings]:
        import re

        for partner_id in value:
            if not re.match(PARTNER_ID_PATTERN, partner_id):
                raise ValueError(f"partner id {partner_id!r} must be lower-case letters, digits and _")
        return value

    def enabled_modules(self) -> list[str]:
        return [name for name, raw in self.modules.items() if raw.get("enabled", True) is not False]


_toml_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("sceneos_toml_file", default=None)
_read_env: contextvars.ContextVar[bool] = contextvars.ContextVar("sceneos_read_env", default=True)


class Settings(BaseSettings):
    """The whole configuration of one SceneOS deployment."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    plugins: list[str] = Field(default_factory=list, description="plugins enabled for every tenant")
    plugin_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    entry: EntrySettings = Field(default_factory=EntrySettings)

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, value: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        import re

        for tenant_id in value:
            if not re.match(TENANT_ID_PATTERN, tenant_id):
                raise ValueError(f"tenant id {tenant_id!r} must be lower-case letters, digits and _")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        if _read_env.get():
            sources.append(env_settings)
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _loc_to_key(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _env_name(key_path: str) -> str:
    return ENV_PREFIX + key_path.replace(".", "__").upper()


def describe_validation_error(exc: ValidationError, *, source: str, prefix: str = "") -> ConfigError:
    """Turn pydantic's multi-line report into one ``file: key: problem`` line (first error)."""
    error = exc.errors()[0]
    key = _loc_to_key(tuple(error["loc"]))
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    kind = error["type"]
    if kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "missing":
        problem = "required key is missing"
    else:
        problem = error["msg"].removeprefix("Value error, ")
        if "input" in error and not isinstance(error["input"], dict | list):
            problem += f" (got {error['input']!r})"
    env = _env_name(key.split("[")[0]) if key else ""
    if env and env.upper() in {name.upper() for name in os.environ}:
        source = f"environment {env}"
    more = len(exc.errors()) - 1
    if more:
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(problem, key=key, source=source)


def resolve_config_path(path: str | Path | None) -> tuple[Path | None, bool]:
    """The TOML file to read and whether it was asked for explicitly (then it must exist)."""
    if path is not None:
        return Path(path), True
    if os.environ.get(ENV_CONFIG_FILE):
        return Path(os.environ[ENV_CONFIG_FILE]), True
    default = Path(DEFAULT_CONFIG_FILE)
    return (default if default.exists() else None), False


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the TOML file (explicit path, ``$SCENEOS_CONFIG`` or ``./sceneos.toml``) plus environment."""
    toml_path, explicit = resolve_config_path(path)
    if toml_path is not None and explicit and not toml_path.is_file():
        raise ConfigError("config file not found", source=str(toml_path))
    source = str(toml_path) if toml_path else "defaults"
    token = _toml_file.set(toml_path)
    try:
        return Settings()
    except ValidationError as exc:
        raise describe_validation_error(exc, source=source) from None
    except ValueError as exc:  # the TOML parser: one line with position
        raise ConfigError(f"not valid TOML: {exc}", source=source) from None
    finally:
        _toml_file.reset(token)


def settings_from_mapping(data: Mapping[str, Any], *, source: str = "<config>") -> Settings:
    """Settings from a dict alone (no file, no environment): hermetic, for tests and the demo."""
    token = _read_env.set(False)
    try:
        return Settings(**dict(data))
    except ValidationError as exc:
        raise describe_validation_error(exc, source=source) from None
    finally:
        _read_env.reset(token)


def config_source(settings: Settings) -> str:
    """Best name for where settings came from, for error lines raised after loading."""
    return getattr(settings, "_source", None) or DEFAULT_CONFIG_FILE
