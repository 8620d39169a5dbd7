"""Velocity facts: how much activity of the same kind a customer, a device and a merchant had
in each configured sliding window before this attempt.

One query per decision: a ``UNION ALL`` of one indexed aggregate per dimension (each reads only
its own index range ``(tenant_id, kind, <dimension>, occurred_at)`` over the longest window), with
a conditional count and sum per window. Time comes from the tenant's clock.

It is a Core statement (through the ORM session it cost three times as much), checked by
:func:`core.statements.tenant_bound` and run by :func:`core.statements.run`, which binds the unit
of work's tenant: the kernel keeps tenants apart here as it does for ORM statements.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, case, delete, func, literal, select, union_all
from sqlalchemy.orm import Session

from core.statements import run, tenant_bound, tenant_filter
from middle.risk.facts import VELOCITY_DIMENSIONS, empty_velocity
from middle.risk.models import RiskVelocityEvent

if TYPE_CHECKING:
    from core.tenancy import UnitOfWork

_EVENTS = RiskVelocityEvent.__table__
_COLUMNS = {
    "customer": _EVENTS.c.customer_no,
    "device": _EVENTS.c.device_id,
    "merchant": _EVENTS.c.merchant_id,
}


def velocity_facts(
    uow: UnitOfWork,
    kind: str,
    keys: dict[str, str | None],
    windows: dict[str, int],
    now: datetime,
) -> dict[str, Any]:
    """``{dimension: {window: {"count", "amount_minor"}}}``; zeros for a dimension without a key."""
    facts = empty_velocity(windows)
    dimensions = tuple(dimension for dimension in VELOCITY_DIMENSIONS if keys.get(dimension))
    if not dimensions:
        return facts
    params: dict[str, Any] = {
        "kind": kind,
        "now": now,
        "since": now - timedelta(seconds=max(windows.values())),
    }
    for name, seconds in windows.items():
        params[f"since_{name}"] = now - timedelta(seconds=seconds)
    for dimension in dimensions:
        params[f"key_{dimension}"] = keys[dimension]
    statement = _statement(dimensions, tuple(windows))
    for row in run(uow, statement, params).mappings():
        dimension = row["dimension"]
        for name in windows:
            facts[dimension][name] = {"count": int(row[f"c_{name}"]), "amount_minor": int(row[f"a_{name}"])}
    return facts


@lru_cache(maxsize=64)
def _statement(dimensions: tuple[str, ...], windows: tuple[str, ...]) -> Any:
    """The query for these dimensions and windows, built once (bound parameters, not literals)."""
    event = _EVENTS.c
    parts = []
    for dimension in dimensions:
        columns: list[Any] = [literal(dimension).label("dimension")]
        for name in windows:
            in_window = event.occurred_at >= bindparam(f"since_{name}", type_=event.occurred_at.type)
            columns.append(func.count(case((in_window, 1))).label(f"c_{name}"))
            columns.append(
                func.coalesce(func.sum(case((in_window, event.amount_minor), else_=0)), 0).label(f"a_{name}")
            )
        parts.append(
            select(*columns).where(
                tenant_filter(_EVENTS),
                event.kind == bindparam("kind"),
                _COLUMNS[dimension] == bindparam(f"key_{dimension}"),
                event.occurred_at >= bindparam("since", type_=event.occurred_at.type),
                event.occurred_at <= bindparam("now", type_=event.occurred_at.type),
            )
        )
    return tenant_bound(parts[0] if len(parts) == 1 else union_all(*parts))


def record_event(
    uow: UnitOfWork,
    *,
    kind: str,
    customer_no: str | None,
    device_id: str | None,
    merchant_id: str | None,
    amount_minor: int,
    outcome: str,
    decision_no: str,
    occurred_at: datetime,
) -> None:
    """Count an attempt. A Core insert, like the query above (the ORM's unit of work cost more than
    the insert), stamped with the unit of work's tenant by :func:`core.statements.run`."""
    run(
        uow,
        _INSERT_EVENT,
        {
            "kind": kind,
            "customer_no": customer_no or None,
            "device_id": device_id or None,
            "merchant_id": merchant_id or None,
            "amount_minor": amount_minor,
            "outcome": outcome,
            "decision_no": decision_no,
            "occurred_at": occurred_at,
        },
    )


_INSERT_EVENT = tenant_bound(_EVENTS.insert())


def purge_events(session: Session, *, older_than: datetime) -> int:
    """Delete velocity events no window can see any more; returns how many."""
    result = session.execute(delete(RiskVelocityEvent).where(RiskVelocityEvent.occurred_at < older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
