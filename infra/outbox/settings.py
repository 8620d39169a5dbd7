"""Settings of the outbox, under ``[tenants.<id>.modules.outbox]``."""

from __future__ import annotations

from pydantic import Field

from core.settings import ModuleSettings


class OutboxSettings(ModuleSettings):
    max_attempts: int = Field(default=12, ge=1, le=100, description="deliveries tried before giving up")
    backoff_base_seconds: int = Field(default=5, ge=1, le=3600, description="first retry delay; doubles each time")
    backoff_max_seconds: int = Field(default=3600, ge=1, le=86400)
    relay_batch_size: int = Field(default=200, ge=1, le=10000)
    # Events delivered to every subscriber (or given up on) are kept this many days after the day
    # they occurred, then the job outbox.purge deletes them with their receipts. 0: kept for ever.
    retention_days: int = Field(default=0, ge=0, le=36_500, description="days to keep delivered events (0: for ever)")
