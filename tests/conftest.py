"""Project-wide test configuration. The fixtures themselves ship in ``core.testing`` (pytest11)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests touch real databases: no per-example deadline, and fewer examples unless asked.
settings.register_profile(
    "sceneos",
    deadline=None,
    max_examples=int(os.environ.get("SCENEOS_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("sceneos")
