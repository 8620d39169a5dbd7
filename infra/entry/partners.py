"""Partners: who may call, with which keys and scopes, for which tenant.

Two sources, one view (:class:`Partner`): partners declared in configuration
(``[tenants.<id>.partners.<partner>]``, read-only at run time) and partners created through the
admin API/CLI (tables ``entry_partners``, ``entry_credentials``, ``entry_webhook_secrets``, secrets
encrypted). A key id is unique across all tenants: it is how a request names its partner, and so
its tenant.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from core.errors import ConfigError, NotFound, ValidationFailed
from core.settings import KEY_ID_PATTERN, PARTNER_ID_PATTERN, SCOPE_PATTERN, PartnerSettings
from infra.entry.errors import PartnerExists, PartnerManagedByConfiguration
from infra.entry.models import EntryCredential, EntryPartner, EntryWebhookSecret

if TYPE_CHECKING:
    from core.app import SceneOS
    from core.tenancy import UnitOfWork
    from infra.entry.crypto import SecretCipher

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_BYTES = 32


@dataclass(frozen=True)
class Partner:
    tenant_id: str
    partner_id: str
    name: str
    display_name: str | None
    scopes: tuple[str, ...]
    enabled: bool
    rate_limit: str | None
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    source: Literal["configuration", "database"]

    def allows(self, module: str, method: str, operation: str) -> bool:
        """Whether a scope covers ``operation`` (a route's function name) of ``module``."""
        kind = "read" if method.upper() in READ_METHODS else "write"
        # ``module:*`` is the same grant as ``module`` (the form many partners expect to write).
        wanted = {module, f"{module}:*", f"{module}:{kind}", f"{module}:{operation}"}
        return any(scope in wanted for scope in self.scopes)

    def public(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "name": self.name,
            "display_name": self.display_name,
            "scopes": list(self.scopes),
            "enabled": self.enabled,
            "rate_limit": self.rate_limit,
            "webhook_url": self.webhook_url,
            "webhook_events": list(self.webhook_events),
            "source": self.source,
        }


@dataclass(frozen=True)
class Credential:
    key_id: str
    tenant_id: str
    partner_id: str
    secret: str = field(repr=False)


def new_key_id() -> str:
    return "pk_" + secrets.token_hex(10)


def new_secret() -> str:
    return "sk_" + secrets.token_urlsafe(SECRET_BYTES)


def _from_settings(tenant_id: str, partner_id: str, settings: PartnerSettings) -> Partner:
    return Partner(
        tenant_id=tenant_id,
        partner_id=partner_id,
        name=settings.name,
        display_name=settings.display_name,
        scopes=tuple(settings.scopes),
        enabled=settings.enabled,
        rate_limit=settings.rate_limit,
        webhook_url=settings.webhook_url,
        webhook_events=tuple(settings.webhook_events),
        source="configuration",
    )


def _from_row(row: EntryPartner) -> Partner:
    return Partner(
        tenant_id=row.tenant_id,
        partner_id=row.partner_id,
        name=row.name,
        display_name=row.display_name,
        scopes=tuple(row.scopes),
        enabled=row.enabled,
        rate_limit=row.rate_limit,
        webhook_url=row.webhook_url,
        webhook_events=tuple(row.webhook_events),
        source="database",
    )


class PartnerDirectory:
    """Finds a partner by key id for the gateway (cached briefly) and by id for everything else."""

    def __init__(self, app: SceneOS, cipher: SecretCipher, cache_seconds: float) -> None:
        self.app = app
        self.cipher = cipher
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, tuple[Credential, Partner] | None]] = {}
        self.configured: dict[tuple[str, str], Partner] = {}
        self._configured_keys: dict[str, Credential] = {}
        self._configured_webhook_secrets: dict[tuple[str, str], list[str]] = {}
        for tenant_id, tenant in app.settings.tenants.items():
            for partner_id, settings in tenant.partners.items():
                self.configured[(tenant_id, partner_id)] = _from_settings(tenant_id, partner_id, settings)
                pairs = [(c.key_id, c.secret.get_secret_value()) for c in settings.credentials]
                if settings.secret is not None:
                    pairs.insert(0, (f"{tenant_id}.{partner_id}", settings.secret.get_secret_value()))
                for key_id, secret in pairs:
                    if key_id in self._configured_keys:
                        raise ConfigError(f"key id {key_id!r} is used twice",
                                          key=f"tenants.{tenant_id}.partners.{partner_id}.credentials")
                    self._configured_keys[key_id] = Credential(key_id, tenant_id, partner_id, secret)
                webhook = [settings.webhook_secret] if settings.webhook_secret is not None else []
                self._configured_webhook_secrets[(tenant_id, partner_id)] = [
                    s.get_secret_value() for s in webhook + list(settings.previous_webhook_secrets)
                ]

    # --- the gateway's lookup ---------------------------------------------------------------------

    def authenticate(self, key_id: str) -> tuple[Credential, Partner] | None:
        """The credential and its partner, or None if the key is unknown, revoked or disabled."""
        configured = self._configured_keys.get(key_id)
        if configured is not None:
            partner = self.configured[(configured.tenant_id, configured.partner_id)]
            return (configured, partner) if partner.enabled and partner.tenant_id in self.app.tenants else None
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        found = self._load(key_id)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: unknown key ids must not grow it forever
                self._cache.clear()
            self._cache[key_id] = (now, found)
        return found

    def _load(self, key_id: str) -> tuple[Credential, Partner] | None:
        with self.app.system_unit_of_work() as session:
            credential = session.get(EntryCredential, key_id)
            if credential is None or credential.revoked_at is not None:
                return None
            row = session.scalars(select(EntryPartner).where(
                EntryPartner.tenant_id == credential.tenant_id, EntryPartner.partner_id == credential.partner_id
            )).one_or_none()
            if row is None or not row.enabled or row.tenant_id not in self.app.tenants:
                return None
            partner = _from_row(row)
            token = credential.secret_encrypted
        return Credential(key_id, partner.tenant_id, partner.partner_id, self.cipher.decrypt(token)), partner

    def forget(self, key_ids: list[str] | None = None) -> None:
        """Drop cached keys (after a revocation or a change, in this process)."""
        with self._lock:
            if key_ids is None:
                self._cache.clear()
            for key_id in key_ids or []:
                self._cache.pop(key_id, None)

    # --- by id ------------------------------------------------------------------------------------

    def is_configured_key(self, key_id: str) -> bool:
        return key_id in self._configured_keys

    def configured_key_ids(self, tenant_id: str, partner_id: str) -> list[str]:
        return [c.key_id for c in self._configured_keys.values() if (c.tenant_id, c.partner_id) == (tenant_id, partner_id)]

    def get(self, uow: UnitOfWork, partner_id: str) -> Partner | None:
        configured = self.configured.get((uow.tenant.id, partner_id))
        if configured is not None:
            return configured
        row = uow.session.scalars(select(EntryPartner).where(EntryPartner.partner_id == partner_id)).one_or_none()
        return _from_row(row) if row is not None else None

    def all(self, uow: UnitOfWork) -> list[Partner]:
        found = [p for (tenant_id, _), p in self.configured.items() if tenant_id == uow.tenant.id]
        rows = uow.session.scalars(select(EntryPartner).order_by(EntryPartner.partner_id)).all()
        return sorted(found + [_from_row(row) for row in rows], key=lambda p: p.partner_id)

    def webhook_secrets(self, uow: UnitOfWork, partner: Partner) -> list[str]:
        """Active webhook secrets, newest first."""
        if partner.source == "configuration":
            return list(self._configured_webhook_secrets.get((partner.tenant_id, partner.partner_id), []))
        now = uow.clock.now()
        rows = uow.session.scalars(
            select(EntryWebhookSecret).where(EntryWebhookSecret.partner_id == partner.partner_id)
            .order_by(EntryWebhookSecret.created_at.desc(), EntryWebhookSecret.id.desc())
        ).all()
        return [self.cipher.decrypt(r.secret_encrypted) for r in rows if r.expires_at is None or r.expires_at > now]


@dataclass(frozen=True)
class IssuedSecret:
    """A secret shown once, when it is created; only its encrypted form is kept."""

    key_id: str | None
    secret: str = field(repr=False)


@dataclass(frozen=True)
class NewPartner:
    partner: Partner
    credential: IssuedSecret
    webhook_secret: IssuedSecret | None


def _check_partner_fields(partner_id: str | None, scopes: list[str] | None, webhook_url: str | None,
                          rate_limit: str | None) -> None:
    from infra.entry.ratelimit import parse_rate_limit

    errors = []
    if partner_id is not None and not re.match(PARTNER_ID_PATTERN, partner_id):
        errors.append({"field": "partner_id", "code": "invalid", "message": "lower-case letters, digits and _"})
    for scope in scopes or []:
        if not re.match(SCOPE_PATTERN, scope):
            errors.append({"field": "scopes", "code": "invalid", "message": f"scope {scope!r} is not well formed"})
    if webhook_url is not None and not webhook_url.startswith(("https://", "http://")):
        errors.append({"field": "webhook_url", "code": "invalid", "message": "must be an http(s) URL"})
    if rate_limit is not None:
        try:
            parse_rate_limit(rate_limit)
        except ValueError as exc:
            errors.append({"field": "rate_limit", "code": "invalid", "message": str(exc)})
    if errors:
        raise ValidationFailed("; ".join(e["message"] for e in errors), details=errors)


class PartnerAdmin:
    """Managing database partners of one tenant, inside one unit of work."""

    def __init__(self, uow: UnitOfWork, directory: PartnerDirectory) -> None:
        self.uow = uow
        self.session = uow.session
        self.directory = directory

    def _row(self, partner_id: str) -> EntryPartner:
        if (self.uow.tenant.id, partner_id) in self.directory.configured:
            raise PartnerManagedByConfiguration(f"partner {partner_id!r} is declared in configuration; change it there")
        row = self.session.scalars(select(EntryPartner).where(EntryPartner.partner_id == partner_id)).one_or_none()
        if row is None:
            raise NotFound(f"no partner {partner_id!r}")
        return row

    def create(
        self,
        partner_id: str,
        name: str,
        *,
        display_name: str | None = None,
        scopes: list[str] | None = None,
        rate_limit: str | None = None,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
    ) -> NewPartner:
        _check_partner_fields(partner_id, scopes, webhook_url, rate_limit)
        if (self.uow.tenant.id, partner_id) in self.directory.configured or self.session.scalars(
            select(EntryPartner.id).where(EntryPartner.partner_id == partner_id)
        ).first() is not None:
            raise PartnerExists(f"partner {partner_id!r} exists")
        now = self.uow.clock.now()
        row = EntryPartner(partner_id=partner_id, name=name, display_name=display_name, scopes=list(scopes or []),
                           rate_limit=rate_limit, webhook_url=webhook_url, webhook_events=list(webhook_events or []),
                           enabled=True, created_at=now, updated_at=now)
        self.session.add(row)
        credential = self.add_credential(partner_id, _row=row)
        webhook = self.rotate_webhook_secret(partner_id, _row=row) if webhook_url else None
        self.uow.publish("entry.partner.created", {"partner_id": partner_id}, subject=f"partner:{partner_id}")
        return NewPartner(_from_row(row), credential, webhook)

    def update(self, partner_id: str, **changes: Any) -> Partner:
        row = self._row(partner_id)
        _check_partner_fields(None, changes.get("scopes"), changes.get("webhook_url"), changes.get("rate_limit"))
        for name in ("name", "display_name", "scopes", "rate_limit", "webhook_url", "webhook_events", "enabled"):
            if name in changes:
                setattr(row, name, changes[name])
        row.updated_at = self.uow.clock.now()
        self.session.flush()
        self.directory.forget()
        return _from_row(row)

    def add_credential(self, partner_id: str, *, _row: EntryPartner | None = None) -> IssuedSecret:
        row = _row or self._row(partner_id)
        key_id = new_key_id()
        while self.directory.is_configured_key(key_id):  # astronomically unlikely; bounded by chance
            key_id = new_key_id()
        secret = new_secret()
        self.session.add(EntryCredential(key_id=key_id, partner_id=row.partner_id,
                                         secret_encrypted=self.directory.cipher.encrypt(secret),
                                         created_at=self.uow.clock.now(), revoked_at=None))
        self.session.flush()
        return IssuedSecret(key_id, secret)

    def revoke_credential(self, partner_id: str, key_id: str) -> None:
        self._row(partner_id)
        credential = self.session.get(EntryCredential, key_id)
        if credential is None or credential.partner_id != partner_id:
            raise NotFound(f"no key {key_id!r} for partner {partner_id!r}")
        if credential.revoked_at is None:
            credential.revoked_at = self.uow.clock.now()
        self.directory.forget([key_id])

    def credentials(self, partner_id: str) -> list[dict[str, Any]]:
        if (self.uow.tenant.id, partner_id) in self.directory.configured:
            return [{"key_id": k, "created_at": None, "revoked_at": None}
                    for k in self.directory.configured_key_ids(self.uow.tenant.id, partner_id)]
        self._row(partner_id)
        rows = self.session.scalars(select(EntryCredential).where(EntryCredential.partner_id == partner_id)
                                    .order_by(EntryCredential.created_at)).all()
        return [{"key_id": r.key_id, "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows]

    def rotate_webhook_secret(self, partner_id: str, *, grace: timedelta = timedelta(hours=24),
                              _row: EntryPartner | None = None) -> IssuedSecret:
        """A new webhook secret; the older ones keep signing for ``grace``, then stop."""
        row = _row or self._row(partner_id)
        now = self.uow.clock.now()
        for old in self.session.scalars(select(EntryWebhookSecret).where(
                EntryWebhookSecret.partner_id == row.partner_id)):
            if old.expires_at is None or old.expires_at > now + grace:
                old.expires_at = now + grace
        secret = "whsec_" + secrets.token_urlsafe(SECRET_BYTES)
        self.session.add(EntryWebhookSecret(partner_id=row.partner_id,
                                            secret_encrypted=self.directory.cipher.encrypt(secret),
                                            created_at=now, expires_at=None))
        self.session.flush()
        return IssuedSecret(None, secret)


def check_key_id(key_id: str) -> bool:
    return re.match(KEY_ID_PATTERN, key_id) is not None
