"""The transactional outbox: written with the change, delivered at-least-once per subscriber."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.db import tenant_session
from core.events import Event
from core.hookspecs import hookimpl
from core.testing.harness import tenant_config
from infra.outbox.models import OutboxDelivery, OutboxEvent
from infra.outbox.service import OutboxRelay

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


class Subscriber:
    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.seen: list[str] = []

    @hookimpl
    def sceneos_on_event(self, event) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("broker unreachable at card 6222021234567890123")
        self.seen.append(event.id)


@pytest.fixture
def app_with(make_sceneos):
    def build(**subscribers):
        return make_sceneos(
            # The super entry subscribes to every event too (webhooks); these tests count receipts.
            {
                "tenants": {
                    "bank": tenant_config(
                        plugins=list(subscribers),
                        modules={
                            "party": {},
                            "entry": {"enabled": False},
                            "outbox": {"max_attempts": 3, "backoff_base_seconds": 10},
                        },
                    )
                }
            },
            plugins=subscribers,
        )

    return build


def rows(app, model):
    with app.tenant("bank").unit_of_work() as uow:
        return uow.session.scalars(select(model)).all()


@BOTH
def test_events_are_written_with_the_change_and_delivered_after_commit(app_with) -> None:
    good = Subscriber()
    app = app_with(good=good)
    tenant = app.tenant("bank")
    with pytest.raises(RuntimeError), tenant.unit_of_work() as uow:
        uow.publish("test.rolled_back", {"n": 1})
        raise RuntimeError("abort")
    assert rows(app, OutboxEvent) == []

    with tenant.unit_of_work() as uow:
        event = uow.publish("test.done", {"n": 2}, subject="thing:1")
    assert good.seen == [event.id]
    [row] = rows(app, OutboxEvent)
    assert (row.id, row.type, row.payload, row.subject) == (event.id, "test.done", {"n": 2}, "thing:1")
    assert row.delivered_at == app.clock.now()
    assert [(d.subscriber, d.status) for d in rows(app, OutboxDelivery)] == [("good", "delivered")]


@BOTH
def test_a_failing_subscriber_is_retried_with_backoff_and_the_others_are_not_called_again(
    app_with, sim_clock
) -> None:
    good, flaky = Subscriber(), Subscriber(fail_times=1)
    app = app_with(good=good, flaky=flaky)
    with app.tenant("bank").unit_of_work() as uow:
        event = uow.publish("test.done", {})
    assert good.seen == [event.id] and flaky.seen == []
    [row] = rows(app, OutboxEvent)
    assert row.delivered_at is None
    # Backoff: first retry between half and all of 10 s.
    assert timedelta(seconds=5) <= row.next_attempt_at - sim_clock.now() <= timedelta(seconds=10)
    failing = next(d for d in rows(app, OutboxDelivery) if d.subscriber == "flaky")
    assert failing.status == "failing" and "ConnectionError" in failing.last_error
    assert "6222021234567890123" not in failing.last_error  # errors are masked before storage

    relay = OutboxRelay(app)
    assert relay.run_once().claimed == 0  # not due yet
    sim_clock.advance(seconds=11)
    report = relay.run_once()
    assert (report.claimed, report.delivered) == (1, 1)
    assert flaky.seen == [event.id] and good.seen == [event.id]  # good was not called twice
    assert rows(app, OutboxEvent)[0].delivered_at == sim_clock.now()


def test_a_subscriber_that_keeps_failing_is_given_up_after_max_attempts(app_with, sim_clock) -> None:
    broken = Subscriber(fail_times=100)
    app = app_with(broken=broken)
    with app.tenant("bank").unit_of_work() as uow:
        uow.publish("test.done", {})
    relay = OutboxRelay(app)
    for _ in range(5):
        sim_clock.advance(hours=1)
        relay.run_once()
    [receipt] = rows(app, OutboxDelivery)
    assert (receipt.status, receipt.attempts) == ("dead", 3)
    assert rows(app, OutboxEvent)[0].delivered_at is not None  # nothing left to retry


@BOTH
def test_events_committed_by_a_process_that_died_before_delivering_are_relayed(app_with, sim_clock) -> None:
    good = Subscriber()
    app = app_with(good=good)
    bus = app.container.event_bus()
    event = Event(type="test.orphan", tenant_id="bank", occurred_at=app.clock.now(), payload={})
    with tenant_session(app.session_factory, "bank") as session:
        bus.stage(session, event)
        session.info.clear()  # the process "dies" after commit, before after_commit delivers
    assert good.seen == []
    # The committing process held the first attempt; sweepers wait for its lease to end.
    assert OutboxRelay(app).run_once().claimed == 0
    sim_clock.advance(seconds=61)
    assert OutboxRelay(app).run_once().delivered == 1
    assert good.seen == [event.id]
    assert OutboxRelay(app).run_once().claimed == 0


@BOTH
def test_only_one_claimant_delivers_an_attempt(app_with, sim_clock) -> None:
    app = app_with(good=Subscriber())
    bus = app.container.event_bus()
    event = Event(type="test.race", tenant_id="bank", occurred_at=app.clock.now(), payload={})
    with tenant_session(app.session_factory, "bank") as session:
        bus.stage(session, event)
        session.info.clear()
    sim_clock.advance(seconds=61)
    relay = OutboxRelay(app)
    tenant = app.tenant("bank")
    assert relay._claim(tenant, event.id) is not None
    assert relay._claim(tenant, event.id) is None  # leased to the first claimant


def test_payloads_must_be_json(app_with) -> None:
    app = app_with()
    with pytest.raises(ValueError, match="payload is not JSON"), app.tenant("bank").unit_of_work() as uow:
        uow.publish("test.bad", {"when": object()})
    assert rows(app, OutboxEvent) == []


def test_each_tenant_sees_only_its_events(make_sceneos) -> None:
    app = make_sceneos({"tenants": {"bank": tenant_config(), "other": tenant_config("Other")}})
    with app.tenant("other").unit_of_work() as uow:
        uow.publish("test.other", {})
    assert rows(app, OutboxEvent) == []


def test_a_tenant_without_the_outbox_still_gets_its_events_after_commit(make_sceneos) -> None:
    seen = Subscriber()
    app = make_sceneos(
        {
            "tenants": {
                "bank": tenant_config(plugins=["seen"], modules={"party": {}, "outbox": {"enabled": False}})
            }
        },
        plugins={"seen": seen},
    )
    with app.tenant("bank").unit_of_work() as uow:
        event = uow.publish("test.done", {})
    assert seen.seen == [event.id]
    with app.system_unit_of_work() as session:
        assert session.scalars(select(OutboxEvent)).all() == []



def publish_in_savepoints(tenant):
    """A unit of work that raises one event in a SAVEPOINT it rolls back, one in a SAVEPOINT nested
    in one it rolls back, one in a SAVEPOINT it keeps, and one outside; the two it keeps."""
    with tenant.unit_of_work() as uow:
        try:
            with uow.session.begin_nested():
                uow.publish("test.undone", {"n": 1})
                raise RuntimeError("undo")
        except RuntimeError:
            pass
        try:
            with uow.session.begin_nested():
                with uow.session.begin_nested():
                    uow.publish("test.undone", {"n": 2})
                raise RuntimeError("undo the enclosing one")
        except RuntimeError:
            pass
        with uow.session.begin_nested():
            kept = [uow.publish("test.kept", {"n": 3})]
        kept.append(uow.publish("test.kept", {"n": 4}))
    return kept


@BOTH
def test_an_event_raised_in_a_rolled_back_savepoint_is_neither_written_nor_delivered(app_with) -> None:
    good = Subscriber()
    app = app_with(good=good)
    kept = publish_in_savepoints(app.tenant("bank"))
    assert sorted(r.id for r in rows(app, OutboxEvent)) == sorted(e.id for e in kept)
    assert good.seen == [e.id for e in kept]
    # Recorded as delivered with the others (a receipt for the undone one failed them all before).
    assert all(r.delivered_at is not None for r in rows(app, OutboxEvent))
    assert len(rows(app, OutboxDelivery)) == 2


def test_the_kernel_s_after_commit_delivery_drops_a_rolled_back_savepoint_s_events(make_sceneos) -> None:
    seen = Subscriber()
    app = make_sceneos(
        {"tenants": {"bank": tenant_config(plugins=["seen"], modules={"party": {}, "outbox": {"enabled": False}})}},
        plugins={"seen": seen},
    )
    kept = publish_in_savepoints(app.tenant("bank"))
    assert seen.seen == [e.id for e in kept]

def test_the_served_app_sweeps_the_outbox_in_the_background(app_with, sim_clock) -> None:
    import time

    from fastapi.testclient import TestClient

    flaky = Subscriber(fail_times=1)
    app = app_with(flaky=flaky)
    with app.tenant("bank").unit_of_work() as uow:
        event = uow.publish("test.done", {})
    assert flaky.seen == []
    sim_clock.advance(seconds=30)  # the retry is due
    with TestClient(app.http()):  # runs the lifespan, as uvicorn does
        deadline = time.monotonic() + 10
        while not flaky.seen and time.monotonic() < deadline:
            time.sleep(0.1)
    assert flaky.seen == [event.id]


@BOTH
def test_the_events_of_one_unit_of_work_are_recorded_in_one_more_transaction(app_with) -> None:
    from sqlalchemy import event as sa_event

    good = Subscriber()
    app = app_with(good=good)
    commits: list[int] = []
    sa_event.listen(app.engine, "commit", lambda _conn: commits.append(1))
    with app.tenant("bank").unit_of_work() as uow:
        raised = [uow.publish("test.many", {"n": n}).id for n in range(3)]
    assert good.seen == raised
    assert len(commits) == 2  # the work itself, then the receipts of all three events
    assert all(row.delivered_at is not None for row in rows(app, OutboxEvent))
    assert sorted(d.event_id for d in rows(app, OutboxDelivery)) == sorted(raised)


class Deferring:
    """A subscriber whose work is a write, handed to the unit of work that records its receipt."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on

    @hookimpl
    def sceneos_on_event(self, event) -> None:
        from sqlalchemy import text

        from infra.outbox.service import defer_to_receipt

        def work(uow) -> None:
            uow.session.execute(
                text("INSERT INTO test_deferred_work (event_id) VALUES (:id)"), {"id": event.id}
            )
            if event.payload.get("n") == self.fail_on:
                raise RuntimeError("no room for card 6222021234567890123")

        assert defer_to_receipt(work)


def written(app) -> list[str]:
    from sqlalchemy import text

    with app.engine.connect() as connection:
        return sorted(connection.execute(text("SELECT event_id FROM test_deferred_work")).scalars())


@BOTH
def test_handed_over_work_commits_with_its_receipts_and_a_failure_is_that_event_s_alone(
    app_with, sim_clock
) -> None:
    from sqlalchemy import event as sa_event
    from sqlalchemy import text

    good, deferring = Subscriber(), Deferring(fail_on=1)
    app = app_with(good=good, deferring=deferring)
    with app.engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE IF NOT EXISTS test_deferred_work (event_id VARCHAR(36) PRIMARY KEY)")
        )
        connection.execute(text("DELETE FROM test_deferred_work"))
    commits: list[int] = []
    sa_event.listen(app.engine, "commit", lambda _conn: commits.append(1))
    with app.tenant("bank").unit_of_work() as uow:
        raised = [uow.publish("test.many", {"n": n}).id for n in range(3)]
    # The work, then the receipts with the handed-over writes (the first try rolled back on the
    # failure, the second isolated each event's work in a savepoint).
    assert len(commits) == 2
    assert good.seen == raised
    assert written(app) == sorted([raised[0], raised[2]])  # the failed event's write rolled back
    receipts = {(d.event_id, d.subscriber): d for d in rows(app, OutboxDelivery)}
    assert {k: d.status for k, d in receipts.items()} == {
        **{(event_id, "good"): "delivered" for event_id in raised},
        (raised[0], "deferring"): "delivered",
        (raised[1], "deferring"): "failing",
        (raised[2], "deferring"): "delivered",
    }
    failed = receipts[(raised[1], "deferring")].last_error
    assert "RuntimeError" in failed and "6222021234567890123" not in failed
    assert {row.id for row in rows(app, OutboxEvent) if row.delivered_at is None} == {raised[1]}

    deferring.fail_on = None  # fixed: the relay's retry runs the work again, for that event only
    sim_clock.advance(seconds=11)
    assert OutboxRelay(app).run_once().delivered == 1
    assert written(app) == sorted(raised)
    assert good.seen == raised  # not called again
    assert all(row.delivered_at is not None for row in rows(app, OutboxEvent))


def test_work_is_handed_over_only_during_an_outbox_delivery() -> None:
    from infra.outbox.service import defer_to_receipt

    assert defer_to_receipt(lambda uow: None) is False  # e.g. the in-process bus: do it yourself


@BOTH
def test_delivered_events_are_purged_after_the_retention_period(make_sceneos, sim_clock) -> None:
    from datetime import UTC, date, datetime

    from infra.compute import JobRunner

    good, flaky = Subscriber(), Subscriber(fail_times=100)
    modules = {"party": {}, "entry": {"enabled": False}, "outbox": {"retention_days": 30}}
    app = make_sceneos(
        {"tenants": {"bank": tenant_config(plugins=["good", "flaky"], modules=modules),
                     "bank2": tenant_config(plugins=["good"], modules=modules)}},
        plugins={"good": good, "flaky": flaky},
    )
    # 1 January (Shanghai): one event delivered to everyone at bank, one still failing at bank;
    # one delivered at bank2.
    with app.tenant("bank").unit_of_work() as uow:
        uow.publish("test.retried", {})
    flaky.fail_times = 0
    with app.tenant("bank").unit_of_work() as uow:
        flaky_off = uow.publish("test.done", {})
    flaky.fail_times = 100
    with app.tenant("bank2").unit_of_work() as uow:
        uow.publish("test.done", {})
    sim_clock.set(datetime(2026, 2, 20, 4, tzinfo=UTC))
    with app.tenant("bank").unit_of_work() as uow:
        recent = uow.publish("test.recent", {"n": 1})

    def events(tenant_id: str) -> set[str]:
        with app.tenant(tenant_id).unit_of_work() as uow:
            return {e.type for e in uow.session.scalars(select(OutboxEvent))}

    def receipts(tenant_id: str) -> int:
        with app.tenant(tenant_id).unit_of_work() as uow:
            return len(uow.session.scalars(select(OutboxDelivery)).all())

    runner = JobRunner(app)
    sim_clock.set(datetime(2026, 3, 1, 4, tzinfo=UTC))
    # Day D - 30 is 1 January: its events are kept; the next day, the delivered ones go.
    assert runner.run("bank", "outbox.purge", date(2026, 1, 31)).summary["events_purged"] == 0
    before = receipts("bank")
    report = runner.run("bank", "outbox.purge", date(2026, 2, 1))
    assert report.completed and report.summary["events_purged"] == 1
    assert events("bank") == {"test.retried", "test.recent"}  # still being retried; too recent
    assert receipts("bank") == before - 2  # the purged event's two receipts went with it
    assert events("bank2") == {"test.done"}  # another bank's own job decides for it
    with app.tenant("bank").unit_of_work() as uow:
        assert uow.session.get(OutboxEvent, flaky_off.id) is None
        assert uow.session.get(OutboxEvent, recent.id) is not None
