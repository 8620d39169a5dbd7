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

Batch writes (a partition's thousand rows) have two more entry points, :func:`insert_rows` and
:func:`update_rows`: one statement whatever the number of rows, the rows passed as one JSON
document (``jsonb_array_elements`` on PostgreSQL, ``json_each`` on SQLite, both parsed in C), with a
statement text fixed per table and column set so the driver prepares it once. An executemany sends
one statement per row instead: on PostgreSQL each is parsed, planned and executed on its own, which
cost credit pay's end of day more than its whole arithmetic. Values go through each column's type
(its bind processor) as an ORM flush would, inserts are stamped with the unit of work's tenant and
updates match rows of that tenant only.

A batch also reads by lists of keys (a partition's thousand accounts): :func:`among` writes
``column IN (values)`` with the values as one parameter (an array on PostgreSQL, a JSON list on
SQLite), so the statement's text is the same for one value or ten thousand. An expanding IN renders
a new text with a parameter per value on every call, which SQLAlchemy and then the driver parse
again each time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from functools import lru_cache, partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Delete,
    Executable,
    Insert,
    Select,
    String,
    Table,
    TextClause,
    Update,
    any_,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
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


# --- batch reads --------------------------------------------------------------------------------


def among(column: Any, values: Iterable[Any], dialect_name: str) -> ColumnElement[bool]:
    """``column IN (values)`` with the values bound as one parameter (see the module's docstring);
    ``dialect_name`` is the connection's (``session.get_bind().dialect.name``)."""
    listed = list(values)
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        literal = _pg_array_literal(listed)
        if literal is None:
            return column == any_(bindparam(None, listed, type_=ARRAY(column.type)))
        return column == any_(cast(bindparam(None, literal, type_=String), ARRAY(column.type)))
    return column.in_(select(func.json_each(bindparam(None, json.dumps(listed))).table_valued("value").c.value))


# What JSON escapes that PostgreSQL's array syntax reads differently (\n is "n" there, not a newline).
_JSON_ONLY_ESCAPE = re.compile(r"\\[bfnrtu/]")


def _pg_array_literal(values: list[Any]) -> str | None:
    """PostgreSQL's text of an array of ``values`` (strings, numbers, None), made by ``json.dumps``
    in C: a JSON array is that text once its brackets are braces, as both quote strings and escape
    ``"`` and ``\\`` alike. None when a value needs an escape that only JSON has (a control
    character), or is of another type; psycopg then adapts the list itself, in Python, element by
    element (a twentieth of end of day's time on PostgreSQL)."""
    if not all(value is None or type(value) in (str, int) for value in values):
        return None
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if _JSON_ONLY_ESCAPE.search(text):
        return None
    return "{" + text[1:-1] + "}"


# --- batch writes --------------------------------------------------------------------------------


def insert_rows(uow: UnitOfWork, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (all with the same keys) into ``table`` in one statement; the count inserted."""
    if not rows:
        return 0
    if _owned(table):
        rows = [_stamp(row, uow.tenant.id) for row in rows]
    columns = _uniform_columns(table, rows)
    connection = uow.session.connection()
    statement = _insert_text(table, columns, connection.dialect.name)
    return _write(connection, statement, table, columns, rows, {})


def update_rows(uow: UnitOfWork, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str = "id") -> int:
    """Set, for each of ``rows`` (all with the same keys), the given columns of the row of ``table``
    whose ``key`` column equals the row's, among the unit of work's tenant's rows; one statement.
    Returns the number of rows changed. Each row is found by ``key``, so it must be indexed (the
    primary key by default)."""
    if not rows:
        return 0
    columns = _uniform_columns(table, rows)
    if key not in columns or len(columns) < 2:
        raise ValueError(f"update_rows on {table.name}: each row needs {key!r} and at least one column to set")
    if TENANT_COLUMN in columns:
        raise TenantIsolationError(f"update_rows on {table.name}: {TENANT_COLUMN} is not a column to set")
    connection = uow.session.connection()
    statement = _update_text(table, columns, key, connection.dialect.name)
    params = {TENANT_PARAM: uow.tenant.id} if _owned(table) else {}
    return _write(connection, statement, table, columns, rows, params)


def _uniform_columns(table: Table, rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    columns = tuple(rows[0])
    unknown = [name for name in columns if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
    wanted = set(columns)
    if any(row.keys() != wanted for row in rows):
        raise ValueError(f"rows for {table.name} must all have the same columns ({', '.join(columns)})")
    return columns


def _write(connection: Any, statement: TextClause, table: Table, columns: tuple[str, ...],
           rows: Sequence[Mapping[str, Any]], params: dict[str, Any]) -> int:
    # Each row as a JSON array in the columns' order, picked in C (itemgetter) and converted only
    # where a column's type has a bind processor: a third of the time of one JSON object per row.
    pick = itemgetter(*columns)
    values: list[Any] = [pick(row) for row in rows] if len(columns) > 1 else [[row[columns[0]]] for row in rows]
    processors = [(i, processor) for i, processor in enumerate(_bind_processors(table, columns, connection.dialect))
                  if processor is not None]
    if processors:
        values = [list(value) for value in values]
        for value in values:
            for i, processor in processors:
                if value[i] is not None:
                    value[i] = processor(value[i])
    params["rows"] = json.dumps(values, default=_json_value, separators=(",", ":"))
    return int(connection.execute(statement, params).rowcount)


def _json_value(value: Any) -> Any:
    if isinstance(value, date):  # datetime too: PostgreSQL reads ISO 8601 back as the column's type
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be written by core.statements batch writes")


@lru_cache(maxsize=256)
def _bind_processors(table: Table, columns: tuple[str, ...], dialect: Any) -> list[Any]:
    # A JSON column's value travels as its JSON text, which the statement casts back to the type
    # (psycopg's processor would wrap it in an adapter object of its own).
    return [json.dumps if isinstance(table.c[name].type, JSON) else table.c[name].type._cached_bind_processor(dialect)
            for name in columns]


def _recordset(table: Table, columns: Sequence[str], dialect_name: str) -> str:
    """The FROM item that turns the ``:rows`` document (one array per row) into rows named ``r``, in
    the document's order (so inserted rows get their ids in the order given)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.dialect()
        typed = ", ".join(f"CAST(e.v->>{i} AS {table.c[name].type.compile(dialect=dialect)}) AS {name}"
                          for i, name in enumerate(columns))
        return f"(SELECT {typed} FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(v, n) ORDER BY e.n) AS r"
    if dialect_name == "sqlite":
        picked = ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, name in enumerate(columns))
        return f"(SELECT {picked} FROM json_each(:rows) ORDER BY key) AS r"
    raise NotImplementedError(f"batch writes are written for PostgreSQL and SQLite, not {dialect_name}")


@lru_cache(maxsize=256)
def _insert_text(table: Table, columns: tuple[str, ...], dialect_name: str) -> TextClause:
    names = ", ".join(columns)
    picked = ", ".join(f"r.{name}" for name in columns)
    return text(f"INSERT INTO {table.name} ({names}) SELECT {picked} FROM {_recordset(table, columns, dialect_name)}")


@lru_cache(maxsize=256)
def _update_text(table: Table, columns: tuple[str, ...], key: str, dialect_name: str) -> TextClause:
    assignments = ", ".join(f"{name} = r.{name}" for name in columns if name != key)
    condition = f"{table.name}.{key} = r.{key}"
    if _owned(table):
        # On SQLite the unary plus keeps the tenant's index out of the plan: with it, SQLite scanned
        # the tenant's rows and the JSON document once for each (a partition's update took seconds)
        # instead of reading the document once and finding each row by its key.
        plus = "+" if dialect_name == "sqlite" else ""
        condition += f" AND {plus}{table.name}.{TENANT_COLUMN} = :{TENANT_PARAM}"
    return text(f"UPDATE {table.name} SET {assignments} FROM {_recordset(table, columns, dialect_name)} "
                f"WHERE {condition}")


def delete_with_children(uow: UnitOfWork, parent: Any, where: Sequence[Any], child: Any, child_key: Any) -> int:
    """Delete the unit of work's tenant's rows of the ORM model ``parent`` matching ``where``, and
    first the rows of ``child`` whose ``child_key`` names one of them (a retention purge: events and
    their receipts, deliveries and their attempts). Two statements whatever the number of rows;
    answers how many parents went."""
    tenant_id = uow.tenant.id
    matching = (parent.tenant_id == tenant_id, *where)
    uow.session.execute(
        delete(child).where(child.tenant_id == tenant_id, child_key.in_(select(parent.id).where(*matching)))
        .execution_options(synchronize_session=False)
    )
    deleted = uow.session.execute(delete(parent).where(*matching).execution_options(synchronize_session=False))
    return int(deleted.rowcount or 0)
