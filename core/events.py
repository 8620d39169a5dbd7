"""Domain events and the bus that delivers them after the unit of work that raised them commits.

A service raises an event through its unit of work (``uow.publish(...)``); nothing is delivered
if the transaction rolls back. The kernel's bus delivers to in-process subscribers
(``sceneos_on_event``) right after commit. The infrastructure layer replaces it with a
transactional outbox (events written in the same transaction, dispatched at-least-once), without
changing how services publish.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

PENDING_EVENTS_KEY = "sceneos_pending_events"


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


class InProcessEventBus:
    """Delivers staged events to a dispatcher after commit; drops them on rollback."""

    def __init__(self, dispatch: Callable[[Event], None]) -> None:
        self._dispatch = dispatch

    def stage(self, session: Session, event: Event) -> None:
        session.info.setdefault(PENDING_EVENTS_KEY, []).append(event)

    def after_commit(self, session: Session) -> None:
        events: list[Event] = session.info.pop(PENDING_EVENTS_KEY, [])
        for event in events:
            self._dispatch(event)
