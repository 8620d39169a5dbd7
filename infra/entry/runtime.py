"""The super entry of one application: its partner directory, stores, limiter and metrics, and the
admission of a partner request (authenticate, rate-limit, replay and idempotency checks)."""

from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from core.db import is_sqlite
from core.errors import ConfigError
from core.logging import get_logger
from core.sdk.signing import (
    SignatureFormatError,
    SignedRequest,
    canonical_path,
    canonical_query,
    parse_authorization,
    sign,
    signatures_match,
)
from infra.entry.crypto import DEV_MASTER_KEY, SecretCipher
from infra.entry.errors import (
    AuthenticationMalformed,
    AuthenticationRequired,
    EntryError,
    IdempotencyKeyRequired,
    SignatureExpired,
    SignatureInvalid,
    SignatureReplayed,
)
from infra.entry.idempotency import IdempotencyStore, Reservation, StoredResponse, fingerprint
from infra.entry.metrics import EntryMetrics
from infra.entry.partners import Partner, PartnerDirectory
from infra.entry.ratelimit import PartnerRateLimiter, RateDecision
from infra.entry.replay import make_replay_store
from infra.entry.settings import EntryModuleSettings

if TYPE_CHECKING:
    from core.app import SceneOS
    from core.tenancy import Tenant

log = get_logger("sceneos.entry")
MODULE_NAME = "entry"
IDEMPOTENT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEY_REQUIRED_METHODS = frozenset({"POST", "PATCH"})
PRUNE_EVERY = 1000  # admitted requests between two prunings of expired nonces and keys


@dataclass(frozen=True)
class IncomingRequest:
    method: str
    raw_path: str
    raw_query: str
    body: bytes
    authorization: str | None
    idempotency_key: str | None
    end_user: str | None


@dataclass(frozen=True)
class PartnerContext:
    """Who is calling: set on ``request.state.sceneos_partner`` for the route's dependencies."""

    partner: Partner
    tenant: Tenant = field(repr=False)
    key_id: str
    end_user: str | None


@dataclass(frozen=True)
class Admission:
    context: PartnerContext
    rate: RateDecision
    reservation: Reservation | None = None
    stored: StoredResponse | None = None
    refusal: EntryError | None = None


def make_cipher(app: SceneOS) -> SecretCipher:
    settings = app.settings.entry
    previous = [key.get_secret_value() for key in settings.previous_master_keys]
    if settings.master_key is not None:
        return SecretCipher(settings.master_key.get_secret_value(), previous)
    if not is_sqlite(app.engine):
        raise ConfigError(
            "is required with a server database (set SCENEOS__ENTRY__MASTER_KEY); partner secrets are encrypted with it",
            key="entry.master_key",
        )
    return SecretCipher(DEV_MASTER_KEY, previous)


def valid_idempotency_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and key.isascii() and key.isprintable()


class EntryRuntime:
    def __init__(self, app: SceneOS) -> None:
        self.app = app
        self.settings = app.settings.entry
        self.cipher = make_cipher(app)
        self.directory = PartnerDirectory(app, self.cipher, self.settings.credential_cache_seconds)
        self.replay = make_replay_store(self.settings.replay_store, self.settings.redis_url)
        self.rate_limiter = PartnerRateLimiter(self.settings.rate_limit_storage)
        self.idempotency = IdempotencyStore(self.cipher)
        self.metrics = EntryMetrics()
        self._admitted = itertools.count(1)
        # On PostgreSQL with nonces in the database, a partner POST is admitted in one statement.
        self._one_statement = self.app.engine.dialect.name == "postgresql" and self.settings.replay_store == "database"

    def warn_about_development_defaults(self) -> None:
        """Said once when the HTTP API is built (not by every CLI command)."""
        if self.settings.master_key is None:
            log.warning("entry.master_key is not set: partner secrets are encrypted with the development key "
                        "(SQLite only)")
        if not self.settings.admin_api_keys:
            if is_sqlite(self.app.engine):
                log.warning("no entry.admin_api_keys: the bank's admin routes are open (SQLite development mode)")
            else:
                log.warning("no entry.admin_api_keys: the bank's admin routes refuse every request")

    def module_settings(self, tenant: Tenant) -> EntryModuleSettings:
        return tenant.module(MODULE_NAME).settings  # type: ignore[return-value]

    # --- admission ---------------------------------------------------------------------------------

    def authenticate(self, request: IncomingRequest, now: datetime) -> tuple[SignedRequest, Partner, Tenant]:
        if not request.authorization:
            raise AuthenticationRequired("sign the request: Authorization: SceneOS-HMAC-SHA256 ... (see the docs)")
        try:
            signed = parse_authorization(request.authorization)
        except SignatureFormatError as exc:
            raise AuthenticationMalformed(str(exc)) from None
        if abs(now.timestamp() - signed.timestamp) > self.settings.clock_skew_seconds:
            raise SignatureExpired(
                f"the signature's timestamp is more than {self.settings.clock_skew_seconds} s from the bank's clock"
            )
        found = self.directory.authenticate(signed.key_id)
        invalid = SignatureInvalid("the signature does not match (unknown key, revoked key or wrong secret)")
        if found is None:
            raise invalid
        credential, partner = found
        expected = sign(credential.secret, key_id=signed.key_id, timestamp=signed.timestamp, nonce=signed.nonce,
                        method=request.method, raw_path=request.raw_path, raw_query=request.raw_query,
                        body=request.body)
        if not signatures_match(expected, signed.signature):
            raise invalid
        tenant = self.app.tenants.get(partner.tenant_id)
        if tenant is None or not tenant.has_module(MODULE_NAME):
            raise invalid
        return signed, partner, tenant

    def admit(self, request: IncomingRequest) -> Admission:
        """Everything the entry checks before a partner's request reaches its route.

        Raises an :class:`EntryError` for 401s and malformed idempotency keys; returns refusals that
        happen after the nonce is recorded (429, 409, 422) in ``refusal``/``rate`` so the nonce stays
        spent.
        """
        now = self.app.clock.now()
        signed, partner, tenant = self.authenticate(request, now)
        method = request.method.upper()
        key = request.idempotency_key
        if key is None and method in KEY_REQUIRED_METHODS:
            raise IdempotencyKeyRequired(f"{method} needs an Idempotency-Key header (a new random one per operation)")
        if key is not None and not valid_idempotency_key(key):
            raise IdempotencyKeyRequired("Idempotency-Key must be 1 to 255 printable ASCII characters")
        settings = self.module_settings(tenant)
        rate = self.rate_limiter.hit(tenant.id, partner.partner_id, partner.rate_limit or settings.default_rate_limit)
        context = PartnerContext(partner=partner, tenant=tenant, key_id=signed.key_id, end_user=request.end_user)
        expires_at = datetime.fromtimestamp(signed.timestamp, UTC) + timedelta(seconds=self.settings.clock_skew_seconds)
        idempotent = key is not None and method in IDEMPOTENT_METHODS
        request_fingerprint = (
            fingerprint(method, canonical_path(request.raw_path), canonical_query(request.raw_query),
                        request.end_user or "", request.body) if idempotent else ""
        )
        ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
        lease = timedelta(seconds=settings.idempotency_lease_seconds)
        count = next(self._admitted)
        nonce_recorded = False
        if self._one_statement and idempotent and rate.allowed and count % PRUNE_EVERY != 0:
            assert key is not None
            nonce_recorded, reservation = self.idempotency.reserve_with_nonce(
                self.app.engine, tenant, key_id=signed.key_id, nonce=signed.nonce, nonce_expires_at=expires_at,
                partner_id=partner.partner_id, key=key, request_fingerprint=request_fingerprint, now=now,
                ttl=ttl, lease=lease,
            )
            if not nonce_recorded:
                raise SignatureReplayed("this nonce was already used; sign every request with a new nonce")
            if reservation is not None:
                return Admission(context, rate, reservation=reservation)
            # The key exists: the unit of work below says what it holds (the nonce is recorded).
        with tenant.unit_of_work() as uow:
            if not nonce_recorded and not self.replay.remember(uow, signed.key_id, signed.nonce, expires_at):
                raise SignatureReplayed("this nonce was already used; sign every request with a new nonce")
            if count % PRUNE_EVERY == 0:
                self.prune(uow)
            if not rate.allowed or not idempotent:
                return Admission(context, rate)
            assert key is not None
            try:
                outcome = self.idempotency.reserve(uow, partner.partner_id, key, request_fingerprint, ttl=ttl,
                                                   lease=lease)
            except EntryError as refusal:
                return Admission(context, rate, refusal=refusal)
        if isinstance(outcome, StoredResponse):
            return Admission(context, rate, stored=outcome)
        return Admission(context, rate, reservation=outcome)

    def prune(self, uow: object) -> int:
        """Forget expired nonces and idempotency keys of the unit of work's tenant."""
        from core.tenancy import UnitOfWork

        assert isinstance(uow, UnitOfWork)
        return self.replay.prune(uow) + self.idempotency.prune(uow, uow.clock.now())


_runtimes: weakref.WeakKeyDictionary[SceneOS, EntryRuntime] = weakref.WeakKeyDictionary()
_runtimes_lock = threading.Lock()


def entry_of(app: SceneOS) -> EntryRuntime:
    """The application's entry runtime, made on first use (one per application, never global)."""
    with _runtimes_lock:
        runtime = _runtimes.get(app)
        if runtime is None:
            runtime = _runtimes[app] = EntryRuntime(app)
        return runtime
