"""Settings of the compute module, under ``[tenants.<id>.modules.compute]`` (enabled by default)."""

from __future__ import annotations

from pydantic import Field

from core.settings import ModuleSettings


class ComputeSettings(ModuleSettings):
    # How long a runner's claim on a run lasts without a heartbeat (wall-clock seconds). A runner
    # renews it after every partition; another runner may take over an expired claim, or at once
    # if the holder was a process on the same host that no longer exists (killed).
    lease_seconds: int = Field(default=300, ge=5, le=86_400)
    # Upper bound on the partitions one run may have (TigerBeetle: bound every loop and queue).
    max_partitions: int = Field(default=100_000, ge=1, le=1_000_000)
    # Upper bound on one partition's stored JSON result, in characters: a summary, not data.
    max_result_chars: int = Field(default=8_192, ge=64, le=1_000_000)
