"""The outbox bus and its relay.

Publishing writes an ``outbox_events`` row in the caller's transaction, so an event exists if and
only if the change that raised it committed. Delivery happens after commit, outside any
transaction (a subscriber may open units of work of its own), in three steps:

1. *claim*: a conditional UPDATE pushes ``next_attempt_at`` one lease ahead; only the process
   whose UPDATE matched delivers, so concurrent relays and API processes never deliver the same
   attempt twice;
2. *deliver* to each subscriber (plugins implementing ``sceneos_on_event``) that has not had it;
3. *record* each subscriber's receipt; failures are retried with exponential backoff and jitter,
   up to ``max_attempts``, after which the delivery is ``dead`` and logged.

A crash between 2 and 3 redelivers after the lease: delivery is at-least-once, and ``event.id``
lets consumers deduplicate.

The process that commits an event holds its first attempt from birth: the row is written already
leased (``next_attempt_at`` one lease ahead, ``attempts`` 1), so no claim is needed right after
commit and sweepers leave it alone unless that process dies. Right after commit it delivers every
event the unit of work raised and records them all in one unit of work: one extra transaction per
committed unit of work, not three per event.

A subscriber whose work is writing rows (the super entry records webhook deliveries) can hand that
work to the recording unit of work instead of opening one of its own per event
(:func:`defer_to_receipt`): it runs there, so the rows and the receipt that says they were
written commit together. If any of it raises, that unit of work is rolled back and run again with
each event's work of each subscriber in a savepoint: the failure rolls back only that work and is
recorded like any other failure. So a committed unit of work costs one extra transaction in all,
whatever its number of events.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from core.events import Event, stage_in, take_staged
from core.logging import get_logger, mask_text
from core.statements import run, tenant_bound, tenant_filter
from infra.outbox.models import OutboxDelivery, OutboxEvent
from infra.outbox.settings import OutboxSettings

if TYPE_CHECKING:
    from core.app import SceneOS
    from core.tenancy import Tenant, UnitOfWork

STAGED_KEY = "sceneos_outbox_staged"
IN_PROCESS_KEY = "sceneos_outbox_in_process"
CLAIM_LEASE = timedelta(seconds=60)
log = get_logger("sceneos.outbox")

Work = Callable[["UnitOfWork"], Any]
# The work the subscriber being called has handed over (see defer_to_receipt); None outside a call.
_deferred: ContextVar[list[Work] | None] = ContextVar("sceneos_outbox_deferred", default=None)


def defer_to_receipt(work: Work) -> bool:
    """Run ``work(uow)`` in the unit of work that records this delivery's receipt, not now.

    For a subscriber (``sceneos_on_event``) whose work is writes: the outbox runs it in its
    recording unit of work, so its rows and its ``delivered`` receipt commit together; an exception
    rolls back only that work (the outbox then isolates each work in a savepoint) and counts as the
    subscriber's failure for that event (retried later).
    ``work`` must be idempotent, as any subscriber's work is (delivery is at-least-once). False when
    no outbox delivery is in progress (a tenant without the outbox, a direct call): do it yourself.
    """
    pending = _deferred.get()
    if pending is None:
        return False
    pending.append(work)
    return True


class OutboxEventBus:
    """Event bus writing to the outbox; plugged in through ``sceneos_make_event_bus``."""

    def __init__(self, app: SceneOS) -> None:
        self.app = app

    def stage(self, session: Session, event: Event) -> None:
        tenant = self.app.tenants.get(event.tenant_id)
        if tenant is not None and not tenant.has_module("outbox"):
            # A tenant that switched the outbox off gets the kernel's after-commit delivery.
            stage_in(session, IN_PROCESS_KEY, event)
            return
        try:
            payload = json.loads(json.dumps(event.payload))
        except (TypeError, ValueError) as exc:
            # Refuse now, inside the transaction, rather than fail to deliver later.
            raise ValueError(f"event {event.type!r} payload is not JSON: {exc}") from None
        # Leased to this process from birth (see the module docstring); the clock's time, so a
        # sweeper on the same clock takes it over only once this process had its chance.
        leased_until = self.app.clock.now() + CLAIM_LEASE
        session.add(
            OutboxEvent(
                id=event.id,
                tenant_id=event.tenant_id,
                type=event.type,
                subject=event.subject,
                payload=payload,
                occurred_at=event.occurred_at,
                delivered_at=None,
                next_attempt_at=leased_until,
                attempts=1,
            )
        )
        # Its row above is the ORM's to drop if a SAVEPOINT around it rolls back; this copy is
        # dropped with it (stage_in), so no subscriber hears of an event that was never written.
        stage_in(
            session,
            STAGED_KEY,
            Event(
                type=event.type,
                tenant_id=event.tenant_id,
                occurred_at=event.occurred_at,
                payload=payload,
                id=event.id,
                subject=event.subject,
            ),
        )

    def after_commit(self, session: Session) -> None:
        for event in take_staged(session, IN_PROCESS_KEY):
            self.app.dispatch_event(event)  # logs its own failures
        staged: list[Event] = take_staged(session, STAGED_KEY)
        by_tenant: dict[str, list[Event]] = {}
        for event in staged:
            by_tenant.setdefault(event.tenant_id, []).append(event)
        relay = OutboxRelay(self.app)
        for tenant_id, events in by_tenant.items():
            try:
                relay.deliver_fresh(self.app.tenant(tenant_id), events)
            except Exception as exc:  # committed work stands; the sweep delivers once the lease ends
                log.error(
                    "outbox delivery after commit failed; the sweep will retry",
                    tenant_id=tenant_id,
                    events=len(events),
                    error=mask_text(f"{type(exc).__name__}: {exc}"),
                )


@dataclass
class RelayReport:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0


class OutboxRelay:
    """Delivers committed events; ``run_once`` sweeps what is due (retries, crashed deliveries)."""

    def __init__(self, app: SceneOS) -> None:
        self.app = app

    def _settings(self, tenant: Tenant) -> OutboxSettings:
        return tenant.module("outbox").settings  # type: ignore[return-value]

    def run_once(self, tenant_id: str | None = None) -> RelayReport:
        report = RelayReport()
        tenants = [self.app.tenant(tenant_id)] if tenant_id else list(self.app.tenants.values())
        for tenant in tenants:
            if not tenant.has_module("outbox"):
                continue
            now = tenant.clock.now()
            with tenant.unit_of_work() as uow:
                due = uow.session.scalars(
                    select(OutboxEvent.id)
                    .where(OutboxEvent.delivered_at.is_(None), OutboxEvent.next_attempt_at <= now)
                    .order_by(OutboxEvent.occurred_at)
                    .limit(self._settings(tenant).relay_batch_size)
                ).all()
            for event_id in due:
                outcome = self.deliver(tenant, event_id)
                if outcome is not None:
                    report.claimed += 1
                    report.delivered += outcome
                    report.failed += outcome == 0
        return report

    def deliver(self, tenant: Tenant, event_id: str) -> bool | None:
        """Claim, deliver and record one event. None if another process holds it or it is done."""
        event = self._claim(tenant, event_id)
        if event is None:
            return None
        with tenant.unit_of_work() as uow:
            done = {
                row.subscriber
                for row in uow.session.scalars(
                    select(OutboxDelivery).where(OutboxDelivery.event_id == event_id)
                )
                if row.status in ("delivered", "dead")
            }
        return self._record(tenant, [self._call_subscribers(tenant, event, skip=done)])[0]

    def deliver_fresh(self, tenant: Tenant, events: list[Event]) -> None:
        """Deliver events this process has just committed (leased to it from birth, no receipts yet)
        and record them in one unit of work. (Tenants without the outbox never stage any: ``stage``
        hands theirs to the in-process dispatch.)"""
        self._record(tenant, [self._call_subscribers(tenant, event) for event in events], fresh=True)

    @staticmethod
    def _call_subscribers(
        tenant: Tenant, event: Event, skip: frozenset[str] | set[str] = frozenset()
    ) -> _Delivery:
        delivery = _Delivery(event)
        for plugin, call in tenant.hooks.implementations("sceneos_on_event"):
            if plugin in skip:
                continue
            handed: list[Work] = []
            token = _deferred.set(handed)
            try:
                call(event=event, tenant=tenant)
                delivery.outcomes[plugin] = None
                if handed:
                    delivery.deferred[plugin] = handed
            except Exception as exc:  # one subscriber's failure is recorded, the others proceed
                delivery.outcomes[plugin] = _error(exc)
            finally:
                _deferred.reset(token)
        return delivery

    @staticmethod
    def _run_deferred(uow: UnitOfWork, deliveries: list[_Delivery], *, isolated: bool) -> None:
        """Run the subscribers' handed-over work in ``uow``. Not ``isolated``: all of it straight
        in the transaction (the caller starts again isolated if anything raises); ``isolated``:
        each event's work of each subscriber in a savepoint of its own, a failure recorded against
        that event and subscriber alone."""
        for delivery in deliveries:
            for plugin, works in delivery.deferred.items():
                if not isolated:
                    for work in works:
                        work(uow)
                    continue
                try:
                    with uow.session.begin_nested():
                        for work in works:
                            work(uow)
                except Exception as exc:
                    delivery.outcomes[plugin] = _error(exc)

    def _claim(self, tenant: Tenant, event_id: str) -> Event | None:
        now = tenant.clock.now()
        with tenant.unit_of_work() as uow:
            claimed = uow.session.execute(
                update(OutboxEvent)
                .where(
                    OutboxEvent.id == event_id,
                    OutboxEvent.delivered_at.is_(None),
                    OutboxEvent.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + CLAIM_LEASE, attempts=OutboxEvent.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if claimed != 1:
                return None
            row = uow.session.get(OutboxEvent, event_id)
            assert row is not None
            return Event(
                type=row.type,
                tenant_id=row.tenant_id,
                occurred_at=row.occurred_at,
                payload=row.payload,
                id=row.id,
                subject=row.subject,
            )

    def _record(self, tenant: Tenant, results: list[_Delivery], *, fresh: bool = False) -> list[bool]:
        """Run the handed-over work and record each event's outcomes, in one unit of work; True for
        an event now delivered. The work normally succeeds, so it first runs without savepoints
        (two statements fewer); if anything fails, the unit of work is rolled back and run again
        with each subscriber's work isolated."""
        if any(d.deferred for d in results):
            try:
                return self._record_in_unit_of_work(tenant, results, fresh=fresh, isolated=False)
            except Exception:  # the isolated run below finds and records which work failed
                pass
        return self._record_in_unit_of_work(tenant, results, fresh=fresh, isolated=True)

    def _record_in_unit_of_work(
        self, tenant: Tenant, results: list[_Delivery], *, fresh: bool, isolated: bool
    ) -> list[bool]:
        with tenant.unit_of_work() as uow:
            self._run_deferred(uow, results, isolated=isolated)
            if fresh:
                return self._record_fresh(uow, tenant, results)
            return self._record_outcomes(uow, tenant, results)

    def _record_fresh(self, uow: UnitOfWork, tenant: Tenant, results: list[_Delivery]) -> list[bool]:
        """Events committed by this process a moment ago have no receipts and no event rows worth
        loading: the receipts are inserted and the events updated in one statement each."""
        if any(error is not None for d in results for error in d.outcomes.values()):
            return self._record_outcomes(uow, tenant, results, fresh=True)
        now = tenant.clock.now()
        receipts = [
            {
                "event_id": d.event.id,
                "subscriber": plugin,
                "status": "delivered",
                "attempts": 1,
                "last_error": None,
                "updated_at": now,
            }
            for d in results
            for plugin in d.outcomes
        ]
        # Core statements: the ORM's per-statement work was most of their cost.
        if receipts:
            run(uow, _INSERT_RECEIPTS, receipts)
        run(uow, _MARK_DELIVERED, {"ids": [d.event.id for d in results], "now": now})
        return [True] * len(results)

    def _record_outcomes(
        self, uow: UnitOfWork, tenant: Tenant, results: list[_Delivery], *, fresh: bool = False
    ) -> list[bool]:
        """Receipts and event rows updated one by one, with the retry schedule of any failure.
        ``fresh`` events have no receipts yet, so none are read back."""
        settings = self._settings(tenant)
        now = tenant.clock.now()
        delivered: list[bool] = []
        ids = [d.event.id for d in results]
        existing: dict[tuple[str, str], OutboxDelivery] = {}
        if not fresh:
            existing = {
                (r.event_id, r.subscriber): r
                for r in uow.session.scalars(select(OutboxDelivery).where(OutboxDelivery.event_id.in_(ids)))
            }
        rows = {
            row.id: row for row in uow.session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        }
        for d in results:
            event, outcomes = d.event, d.outcomes
            row = rows[event.id]
            receipts = {
                subscriber: r for (event_id, subscriber), r in existing.items() if event_id == event.id
            }
            for plugin, error in outcomes.items():
                receipt = receipts.get(plugin)
                if receipt is None:
                    receipt = OutboxDelivery(
                        event_id=event.id, subscriber=plugin, status="failing", attempts=0, updated_at=now
                    )
                    uow.session.add(receipt)
                    receipts[plugin] = receipt
                receipt.attempts += 1
                receipt.updated_at = now
                receipt.last_error = error
                if error is None:
                    receipt.status = "delivered"
                elif receipt.attempts >= settings.max_attempts:
                    receipt.status = "dead"
                    log.error(
                        "event delivery given up",
                        tenant_id=tenant.id,
                        event_id=event.id,
                        event_type=event.type,
                        subscriber=plugin,
                        error=error,
                    )
                else:
                    receipt.status = "failing"
                    log.warning(
                        "event delivery failed; will retry",
                        tenant_id=tenant.id,
                        event_id=event.id,
                        event_type=event.type,
                        subscriber=plugin,
                        attempt=receipt.attempts,
                        error=error,
                    )
            pending = [r for r in receipts.values() if r.status == "failing"]
            if pending:
                row.next_attempt_at = now + self.backoff(settings, max(r.attempts for r in pending))
                delivered.append(False)
            else:
                row.delivered_at = now
                delivered.append(True)
        return delivered

    @staticmethod
    def backoff(settings: OutboxSettings, attempts: int) -> timedelta:
        """Exponential backoff with full jitter between half and all of the delay."""
        delay = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=delay * random.uniform(0.5, 1.0))


_EVENTS = OutboxEvent.__table__
# Core statements built once (core.statements binds and stamps the unit of work's tenant).
_INSERT_RECEIPTS = tenant_bound(insert(OutboxDelivery.__table__))
_MARK_DELIVERED = tenant_bound(
    update(_EVENTS)
    .where(tenant_filter(_EVENTS), _EVENTS.c.id.in_(bindparam("ids", expanding=True)))
    .values(delivered_at=bindparam("now"))
)


@dataclass
class _Delivery:
    """One event's delivery: each subscriber's outcome (None: delivered, else the masked error) and
    the work it handed over to the recording unit of work."""

    event: Event
    outcomes: dict[str, str | None] = field(default_factory=dict)
    deferred: dict[str, list[Work]] = field(default_factory=dict)


def _error(exc: BaseException) -> str:
    return mask_text(f"{type(exc).__name__}: {exc}")[:500]


def outbox_counts(session: Session) -> dict[str, int]:
    from sqlalchemy import func

    undelivered = session.scalar(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))
    )
    dead = session.scalar(
        select(func.count()).select_from(OutboxDelivery).where(OutboxDelivery.status == "dead")
    )
    total = session.scalar(select(func.count()).select_from(OutboxEvent))
    return {"events": total or 0, "undelivered": undelivered or 0, "dead_deliveries": dead or 0}
