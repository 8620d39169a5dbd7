"""Domain events and the bus that delivers them after the unit of work that raised them commits.

A service raises an event through its unit of work (``uow.publish(...)``); nothing is delivered
if the transaction rolls back, and nothing raised inside a SAVEPOINT that rolls back
(``session.begin_nested()``) either, though the unit of work goes on and commits
(:func:`stage_in` keeps what a bus holds for after commit that way). The kernel's bus delivers to
in-process subscribers (``sceneos_on_event``) right after commit. The infrastructure layer replaces
it with a transactional outbox (events written in the same transaction, dispatched
at-least-once), without changing how services publish.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

PENDING_EVENTS_KEY = "sceneos_pending_events"
_STAGING_KEYS = "sceneos_staging_keys"


@dataclass(frozen=True)
class Event:
    """Something that happened to a tenant's data. ``id`` is unique, for consumers' deduplication."""

    type: str
    tenant_id: str
    occurred_at: datetime
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    subject: str | None = None  # the entity it is about, e.g. "customer:42"


class EventBus(Protocol):
    """Where events raised in a unit of work go."""

    def stage(self, session: Session, event: Event) -> None:
        """Record ``event`` as part of ``session``'s transaction."""

    def after_commit(self, session: Session) -> None:
        """Deliver what ``session`` staged; called once its transaction has committed."""


def stage_in(session: Session, key: str, item: Any) -> None:
    """Keep ``item`` in ``session.info[key]`` for after commit, tied to the innermost transaction
    in progress: if that transaction rolls back (a SAVEPOINT included, or one enclosing it), the
    item is dropped, as the rows written with it are."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(key, []).append((transaction, item))
    session.info.setdefault(_STAGING_KEYS, set()).add(key)


def take_staged(session: Session, key: str) -> list[Any]:
    """The items :func:`stage_in` kept under ``key`` and no rollback dropped, in order; forgets them."""
    return [item for _transaction, item in session.info.pop(key, [])]


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous: SessionTransaction) -> None:
    for key in session.info.get(_STAGING_KEYS, ()):
        kept = session.info.get(key)
        if kept:
            kept[:] = [(t, item) for t, item in kept if not _within(t, previous)]


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


class InProcessEventBus:
    """Delivers staged events to a dispatcher after commit; drops them on rollback."""

    def __init__(self, dispatch: Callable[[Event], None]) -> None:
        self._dispatch = dispatch

    def stage(self, session: Session, event: Event) -> None:
        stage_in(session, PENDING_EVENTS_KEY, event)

    def after_commit(self, session: Session) -> None:
        for event in take_staged(session, PENDING_EVENTS_KEY):
            self._dispatch(event)
