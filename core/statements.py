"""Core statements for hot paths, bound to the unit of work's tenant by construction.

The ORM guard in :mod:`core.db` filters every ORM statement by the session's tenant. A hot path
(the ledger's postings, a risk decision) may run SQLAlchemy Core statements instead, built once at
import, because the ORM session costs several times more per statement. Those statements would be
outside the guard if each call had to remember ``tenant_id``; here the kernel owns that too:

* :func:`tenant_bound` checks a statement once, when the module builds it: every tenant-owned table
  (one with a ``tenant_id`` column) that a SELECT, UPDATE or DELETE reads or changes must be
  filtered by ``tenant_id = :tenant`` (:func:`tenant_filter` writes that condition); an INSERT
  must target one table. A statement that fails the check raises
  :class:`~core.errors.TenantIsolationError` at import, so it never runs.
* :func:`run` executes a checked statement on the unit of work's connection (inside its
  transaction) and binds ``tenant`` from the unit of work, never from the caller; an INSERT's rows
  are stamped with the unit of work's tenant, and a row naming another tenant is refused.

A module therefore cannot run an unchecked Core statement through :func:`run`, and cannot point a
checked one at another tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Delete,
    Executable,
    Insert,
    Select,
    Update,
    bindparam,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.selectable import CTE, Exists, Join, ScalarSelect, Subquery

from core.errors import TenantIsolationError

if TYPE_CHECKING:
    from core.tenancy import UnitOfWork

TENANT_PARAM = "tenant"
TENANT_COLUMN = "tenant_id"
_CHECKED = "sceneos_tenant_bound"

S = TypeVar("S", bound=Executable)


def tenant_filter(table: Any) -> ColumnElement[bool]:
    """``table.tenant_id = :tenant``, the condition :func:`tenant_bound` looks for."""
    return table.c[TENANT_COLUMN] == bindparam(TENANT_PARAM)


def _owned(from_clause: Any) -> bool:
    columns = getattr(from_clause, "c", None)
    return columns is not None and TENANT_COLUMN in columns


def _conditions_filtering(conditions: list[Any]) -> set[Any]:
    """The FROM objects (tables or aliases) for which ``conditions`` hold ``tenant_id = :tenant``,
    not looking into nested SELECTs (each of those is checked on its own)."""
    found: set[Any] = set()
    stack = [c for c in conditions if c is not None]
    while stack:
        element = stack.pop()
        if isinstance(element, Select | CompoundSelect | ScalarSelect | Subquery | Exists):
            continue
        if getattr(element, "operator", None) is operators.eq:
            left, right = element.left, element.right
            for column, other in ((left, right), (right, left)):
                if (getattr(column, "key", None) == TENANT_COLUMN and isinstance(other, BindParameter)
                        and other.key == TENANT_PARAM and getattr(column, "table", None) is not None):
                    found.add(column.table)
        stack.extend(element.get_children())
    return found


def _from_tables(froms: Any, conditions: list[Any]) -> list[Any]:
    """Tables and table aliases of a FROM list, through joins (whose ON clauses join ``conditions``)."""
    tables: list[Any] = []
    for item in froms:
        if isinstance(item, Join):
            conditions.append(item.onclause)
            tables.extend(_from_tables([item.left, item.right], conditions))
        elif isinstance(item, Subquery | CTE):
            continue  # its SELECT is checked on its own
        else:
            tables.append(item)
    return tables


def _unfiltered(statement: Executable) -> list[str]:
    """Names of tenant-owned tables some SELECT, UPDATE or DELETE in ``statement`` does not filter."""
    missing: list[str] = []
    for element in visitors.iterate(statement):
        if isinstance(element, Select):
            conditions: list[Any] = [element.whereclause]
            tables = _from_tables(element.get_final_froms(), conditions)
        elif isinstance(element, Update | Delete):
            conditions = [element.whereclause]
            tables = _from_tables([element.table, *getattr(element, "_extra_froms", ())], conditions)
        else:
            continue
        filtered = _conditions_filtering(conditions)
        missing += [getattr(t, "name", str(t)) for t in tables if _owned(t) and t not in filtered]
    return missing


def tenant_bound(statement: S) -> S:
    """Check ``statement`` once and mark it for :func:`run` (see the module's docstring)."""
    if isinstance(statement, Insert):
        if getattr(statement, "select", None) is not None:
            raise TenantIsolationError("INSERT ... SELECT is not supported by tenant_bound; insert rows")
        return statement.execution_options(**{_CHECKED: True})  # type: ignore[return-value]
    if not isinstance(statement, Select | CompoundSelect | Update | Delete):
        raise TenantIsolationError(f"tenant_bound takes SELECT (or UNION), INSERT, UPDATE or DELETE, not {type(statement).__name__}")
    unfiltered = _unfiltered(statement)
    if unfiltered:
        raise TenantIsolationError(
            f"statement reads or changes {', '.join(sorted(set(unfiltered)))} without tenant_id = :{TENANT_PARAM}"
            " (use core.statements.tenant_filter)"
        )
    return statement.execution_options(**{_CHECKED: True})  # type: ignore[return-value]


def run(uow: UnitOfWork, statement: Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> CursorResult[Any]:
    """Execute a :func:`tenant_bound` statement in ``uow``'s transaction, for ``uow``'s tenant."""
    if not statement.get_execution_options().get(_CHECKED):
        raise TenantIsolationError("a Core statement must be built with core.statements.tenant_bound")
    tenant_id = uow.tenant.id
    connection = uow.session.connection()
    prepare: Callable[[Mapping[str, Any]], dict[str, Any]]
    if not isinstance(statement, Insert):
        prepare = partial(_bind, tenant_id=tenant_id)
    elif _owned(statement.table):
        prepare = partial(_stamp, tenant_id=tenant_id)
    else:
        prepare = dict
    if params is None or isinstance(params, Mapping):
        return connection.execute(statement, prepare(params or {}))
    return connection.execute(statement, [prepare(row) for row in params])


def _bind(params: Mapping[str, Any], tenant_id: str) -> dict[str, Any]:
    if TENANT_PARAM in params:
        raise TenantIsolationError(f"the :{TENANT_PARAM} parameter comes from the unit of work, not the caller")
    return {**params, TENANT_PARAM: tenant_id}


def _stamp(row: Mapping[str, Any], tenant_id: str) -> dict[str, Any]:
    given = row.get(TENANT_COLUMN, tenant_id)
    if given != tenant_id:
        raise TenantIsolationError(f"cannot insert a row of tenant {given!r} in a unit of work of tenant {tenant_id!r}")
    return {**row, TENANT_COLUMN: tenant_id}
