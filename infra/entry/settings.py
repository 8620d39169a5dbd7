"""Per-tenant settings of the super entry, under ``[tenants.<id>.modules.entry]``.

Deployment-wide settings (master key, admin keys, clock skew, stores) are ``[entry]`` in the
kernel's settings (:class:`core.settings.EntrySettings`).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from core.settings import ModuleSettings


class EntryModuleSettings(ModuleSettings):
    # ``limits`` syntax; a partner's own ``rate_limit`` overrides it.
    default_rate_limit: str = Field(default="50/second; 2000/minute", description="per partner")
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400, description="how long keys are kept")
    # A request still "in progress" after this long is taken to have died; its key is reusable.
    idempotency_lease_seconds: int = Field(default=60, ge=1, le=3600)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_base_seconds: int = Field(default=10, ge=1, le=3600, description="first retry delay; doubles")
    webhook_backoff_max_seconds: int = Field(default=3600, ge=1, le=86_400)
    webhook_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Finished webhook deliveries (delivered, or given up on) are kept this many days after the day
    # they were created, then the job entry.webhook_purge deletes them with their attempts. 0: for ever.
    webhook_retention_days: int = Field(default=0, ge=0, le=36_500,
                                        description="days to keep finished webhook deliveries (0: for ever)")
    # Days a new consent lasts when the partner gives no expiry.
    consent_default_days: int = Field(default=365, ge=1, le=3650)

    @field_validator("default_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from infra.entry.ratelimit import parse_rate_limit

        parse_rate_limit(value)
        return value
