"""Helpers of the risk tests: tenants with party + credit + risk, customers, decisions, events.

Imported as ``tests.risk.support`` (the fixtures themselves are in ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from core.hookspecs import hookimpl
from core.testing.factories import mobile, resident_id
from core.testing.harness import tenant_config
from middle.party.service import CustomerDraft

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)

# Consented data that the shipped default scorecard and credit settings turn into an approval.
GOOD_CONSENT = {"income_band": "10k_20k", "occupation": "skilled", "employment_band": "4y_7y", "housing": "own"}


def risk_tenant(name: str = "Test Bank", *, risk: dict[str, Any] | None = None, credit: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    return tenant_config(name, modules={"party": {}, "credit": credit or {}, "risk": risk or {}}, **extra)


def risk_config(risk: dict[str, Any] | None = None, **tenants: dict[str, Any]) -> dict[str, Any]:
    """One tenant ``bank`` with the given risk settings, or the named tenants."""
    return {"tenants": tenants or {"bank": risk_tenant(risk=risk)}}


def rule(name: str, expression: str, action: str = "decline", reason_code: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "expression": expression, "action": action, "reason_code": reason_code or name, **fields}


def register(app: Any, tenant_id: str = "bank", *, born: date = date(1990, 5, 1), sequence: int = 1,
             region_code: str = "110105", phone: int | None = None, name: str = "Li Lei") -> str:
    tenant = app.tenant(tenant_id)
    with tenant.unit_of_work() as uow:
        party = tenant.module("party").container.service(uow=uow)
        draft = CustomerDraft(name=name, id_number=resident_id(born, region_code=region_code, sequence=sequence),
                              phone=mobile(phone if phone is not None else sequence))
        return party.register(draft).customer.customer_no


def decide(app: Any, flow: str, tenant_id: str = "bank", **request: Any) -> Any:
    tenant = app.tenant(tenant_id)
    with tenant.unit_of_work() as uow:
        return tenant.module("risk").container.service(uow=uow).decide(flow, request)


def activate(app: Any, customer_no: str, tenant_id: str = "bank", **request: Any) -> Any:
    request.setdefault("consented", dict(GOOD_CONSENT))
    return decide(app, "activation", tenant_id, customer_no=customer_no, **request)


def with_risk(app: Any, fn: Callable[[Any], Any], tenant_id: str = "bank") -> Any:
    """Run ``fn(service)`` in one unit of work of the tenant and return its result."""
    tenant = app.tenant(tenant_id)
    with tenant.unit_of_work() as uow:
        return fn(tenant.module("risk").container.service(uow=uow))


class EventRecorder:
    """A plugin that keeps every event delivered to its tenants."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def sceneos_on_event(self, event: Any) -> None:
        self.events.append(event)

    def of_type(self, prefix: str) -> list[Any]:
        return [event for event in self.events if event.type.startswith(prefix)]
