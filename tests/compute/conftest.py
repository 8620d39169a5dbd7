"""Fixtures of the compute tests: an application with the test interest module and bank plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import compute_testbank
import compute_testjobs
import pytest

from core.app import SceneOS
from core.testing.harness import tenant_config

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
PLUGINS = {"compute_testjobs": compute_testjobs, "compute_testbank": compute_testbank}


def interest_config(*, customers: int = 12, per_partition: int = 4, pause_seconds: float = 0.0,
                    tenants: tuple[str, ...] = ("bank_a", "bank_b"), **database: Any) -> dict[str, Any]:
    """Tenants enabling the interest module; bank_a also enables the bank plugin."""
    interest = {"customers": customers, "per_partition": per_partition, "pause_seconds": pause_seconds}
    config: dict[str, Any] = {"tenants": {}}
    for tenant_id in tenants:
        section = tenant_config(tenant_id, modules=())
        section["modules"] = {"interest": dict(interest)}
        if tenant_id == "bank_a":
            section["plugins"] = ["compute_testbank"]
        config["tenants"][tenant_id] = section
    if database:
        config["database"] = database
    return config


@pytest.fixture(autouse=True)
def _forget_step_calls() -> None:
    compute_testbank.CALLS.clear()


@pytest.fixture
def interest_app(make_sceneos: Callable[..., SceneOS]) -> Callable[..., SceneOS]:
    """Factory: an app with the interest module and each tenant's chart of accounts opened."""

    def build(*, skip: dict[str, tuple[int, ...]] | None = None, without_budget: tuple[str, ...] = (),
              **config: Any) -> SceneOS:
        app = make_sceneos(interest_config(**config), plugins=PLUGINS)
        customers = config.get("customers", 12)
        for tenant_id in app.tenants:
            compute_testjobs.open_chart(app, tenant_id, customers, skip=(skip or {}).get(tenant_id, ()),
                                        budget=tenant_id not in without_budget)
        return app

    return build
