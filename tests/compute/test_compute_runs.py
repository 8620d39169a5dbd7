"""Runs on real databases: idempotent reruns, resume after a failure, one runner at a time."""

from __future__ import annotations

import gc
from datetime import date

import compute_testbank
import pytest
from compute_testjobs import FREEZE_COUNTS_SEEN, expected_amount, ledger_state
from conftest import BOTH
from sqlalchemy import select

from core.errors import NotFound
from infra.compute import JobRunner, PartitionTask, RunInProgress, UnknownJob
from infra.compute.errors import InvalidJob
from infra.compute.models import ComputeJobRun, ComputePartition
from infra.compute.partitions import execute_partition

DAY = date(2026, 1, 1)


@BOTH
def test_a_run_posts_every_partition_and_completes(interest_app) -> None:
    app = interest_app()
    seen = []
    report = JobRunner(app).run("bank_b", "interest.accrue", DAY, progress=seen.append)

    assert report.completed and report.status == "completed"
    assert (report.partitions_total, report.partitions_done, report.ran, report.resumed_done) == (3, 3, 3, 0)
    assert report.summary == {"partitions": 3, "entries": 12, "amount_minor": expected_amount(12)}
    assert [(p.done, p.total, p.outcome is None) for p in seen] == [(0, 3, True), (1, 3, False), (2, 3, False),
                                                                  (3, 3, False)]
    state = ledger_state(app, "bank_b")
    assert len(state["entry_ids"]) == 12 and state["postings"] == 24
    assert state["trial_balanced"] and state["debits_minor"] == expected_amount(12)
    assert state["entry_ids"][0] == "interest.accrue:2026-01-01:0000-0003:0"
    assert ledger_state(app, "bank_a")["postings"] == 0  # the other bank's ledger is untouched
    with app.tenant("bank_b").unit_of_work() as uow:
        run = uow.session.scalars(select(ComputeJobRun)).one()
        partitions = uow.session.scalars(select(ComputePartition).order_by(ComputePartition.position)).all()
    assert run.created_at == app.clock.now() and run.finished_at == app.clock.now()  # the tenant's clock
    assert [(p.key, p.status, p.attempts, p.result["entries"]) for p in partitions] == [
        ("0000-0003", "done", 1, 4), ("0004-0007", "done", 1, 4), ("0008-0011", "done", 1, 4)]


def test_partitions_run_with_the_application_heap_frozen(interest_app) -> None:
    app = interest_app()
    FREEZE_COUNTS_SEEN.clear()
    before = gc.get_freeze_count()
    assert JobRunner(app).run("bank_b", "interest.accrue", DAY).completed
    assert len(FREEZE_COUNTS_SEEN) == 3 and min(FREEZE_COUNTS_SEEN) > before  # core/heap.py
    assert gc.get_freeze_count() == before


@BOTH
def test_running_the_same_date_again_does_nothing(interest_app) -> None:
    app = interest_app()
    runner = JobRunner(app)
    first = runner.run("bank_a", "interest.accrue", DAY)
    after_first = ledger_state(app, "bank_a")

    again = runner.run("bank_a", "interest.accrue", DAY)

    assert first.completed and again.completed and again.already_completed
    assert "already completed" in again.message
    assert again.ran == 0 and again.summary == first.summary
    assert ledger_state(app, "bank_a") == after_first
    # The before/after steps ran once, for the first run only.
    assert [call[:3] for call in compute_testbank.CALLS] == [
        ("bank_a", "before", "interest.accrue"), ("bank_a", "after", "interest.accrue")]
    # Another date is another run.
    assert runner.run("bank_a", "interest.accrue", date(2026, 1, 2)).ran == 3
    assert len(ledger_state(app, "bank_a")["entry_ids"]) == len(after_first["entry_ids"]) + 12 + 2


@BOTH
def test_a_failing_partition_fails_the_run_and_a_rerun_retries_only_it(interest_app) -> None:
    app = interest_app(skip={"bank_b": (6,)})  # cust:0006 is missing: partition 0004-0007 fails
    runner = JobRunner(app)

    failed = runner.run("bank_b", "interest.accrue", DAY)

    assert failed.status == "failed" and not failed.completed
    assert (failed.partitions_done, failed.partitions_failed) == (2, 1)
    assert [f.key for f in failed.failures] == ["0004-0007"]
    assert "cust:0006" in failed.failures[0].error and "\n" not in failed.failures[0].error
    assert failed.error == "1 of 3 partitions failed"
    # The failed partition's work was rolled back whole: cust:0004 and 0005 were posted, then undone.
    ids = ledger_state(app, "bank_b")["entry_ids"]
    assert len(ids) == 8 and not any(":0004-0007:" in entry_id for entry_id in ids)
    status = runner.status("bank_b")[0]
    assert (status.status, status.partitions_done, status.partitions_failed) == ("failed", 2, 1)
    assert status.failures[0].key == "0004-0007" and status.failures[0].attempts == 1

    with app.tenant("bank_b").unit_of_work() as uow:  # the operator fixes the data
        from infra.ledger import Ledger

        Ledger(uow.session, uow.clock).open_account("cust:0006", "CNY", "liability", "customer", "6",
                                                    "debits_must_not_exceed_credits")
    rerun = runner.run("bank_b", "interest.accrue", DAY)

    assert rerun.completed and (rerun.ran, rerun.resumed_done) == (1, 2)
    assert rerun.summary == {"partitions": 3, "entries": 12, "amount_minor": expected_amount(12)}
    # Same ledger as a clean run of another bank.
    assert runner.run("bank_a", "interest.accrue", DAY).completed
    killed, clean = ledger_state(app, "bank_b"), ledger_state(app, "bank_a")
    assert killed["entry_ids"] == [i for i in clean["entry_ids"] if i.startswith("interest.")]
    with app.tenant("bank_b").unit_of_work() as uow:
        attempts = dict(uow.session.execute(select(ComputePartition.key, ComputePartition.attempts)).all())
    assert attempts == {"0000-0003": 1, "0004-0007": 2, "0008-0011": 1}


def test_a_partition_error_is_stored_as_one_masked_line(interest_app) -> None:
    app = interest_app()
    report = JobRunner(app).run("bank_b", "interest.leaky_error", DAY)
    [failure] = report.failures
    assert failure.error == "ValueError: customer *******8000 (ID **************002X) refused: second line"
    assert JobRunner(app).status("bank_b")[0].failures[0].error == failure.error


@BOTH
def test_a_second_runner_is_refused_while_the_first_holds_the_run(interest_app) -> None:
    app = interest_app()
    refused = []

    def second_runner(progress) -> None:
        if progress.done == 1 and not refused:
            with pytest.raises(RunInProgress) as caught:
                JobRunner(app).run("bank_b", "interest.accrue", DAY)
            refused.append(caught.value.message)

    report = JobRunner(app).run("bank_b", "interest.accrue", DAY, progress=second_runner)

    assert report.completed and report.ran == 3
    assert refused and "is being run by" in refused[0]
    assert len(ledger_state(app, "bank_b")["entry_ids"]) == 12


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_partition_locked_by_another_runner_is_skipped_not_run_twice(interest_app) -> None:
    """PostgreSQL: FOR UPDATE SKIP LOCKED keeps a second runner off a partition being worked on."""
    app = interest_app()
    tenant = app.tenant("bank_b")
    JobRunner(app).run("bank_b", "interest.accrue", DAY)
    with tenant.unit_of_work() as uow:  # make one partition look not done, as if mid-run
        row = uow.session.scalars(select(ComputePartition).where(ComputePartition.key == "0000-0003")).one()
        row.status = "pending"
        task = PartitionTask("bank_b", row.run_id, row.id, "interest.accrue", DAY, row.key)

    with tenant.unit_of_work() as uow:  # another runner's transaction holds the partition's row lock
        uow.session.execute(select(ComputePartition).where(ComputePartition.id == task.partition_id).with_for_update())
        outcome = execute_partition(app, task)  # its own connection: must neither wait nor run
    assert outcome.status == "skipped"

    # Without the lock it runs again; the ledger's entry ids (idempotency_key) make it move nothing.
    assert execute_partition(app, task).status == "done"
    assert len(ledger_state(app, "bank_b")["entry_ids"]) == 12
    assert ledger_state(app, "bank_b")["debits_minor"] == expected_amount(12)


@BOTH
def test_a_done_partition_is_never_run_again(interest_app) -> None:
    app = interest_app()
    JobRunner(app).run("bank_b", "interest.accrue", DAY)
    with app.tenant("bank_b").unit_of_work() as uow:
        row = uow.session.scalars(select(ComputePartition).where(ComputePartition.key == "0004-0007")).one()
    outcome = execute_partition(app, PartitionTask("bank_b", row.run_id, row.id, "interest.accrue", DAY, row.key))
    assert outcome.status == "skipped"
    assert len(ledger_state(app, "bank_b")["entry_ids"]) == 12


@BOTH
def test_plans_and_names_are_checked(interest_app) -> None:
    app = interest_app()
    runner = JobRunner(app)
    with pytest.raises(UnknownJob, match=r"no job 'interest\.nope' \(available: entry\.webhook_purge, interest\.accrue, "):
        runner.run("bank_b", "interest.nope", DAY)
    with pytest.raises(InvalidJob, match="partition key 'a' is listed twice"):
        runner.run("bank_b", "interest.duplicate_keys", DAY)
    assert runner.status("bank_b") == []  # an invalid plan stores no run
    with pytest.raises(NotFound):
        runner.run("bank_x", "interest.accrue", DAY)
    empty = runner.run("bank_b", "interest.nothing", DAY)
    assert empty.completed and empty.partitions_total == 0 and empty.summary == {"partitions": 0}


@BOTH
def test_status_lists_every_tenants_runs(interest_app) -> None:
    app = interest_app(skip={"bank_a": (1,)})
    runner = JobRunner(app)
    runner.run("bank_a", "interest.accrue", DAY)
    runner.run("bank_b", "interest.accrue", DAY)

    every = {(s.tenant_id, s.job_name): s for s in runner.status()}
    assert set(every) == {("bank_a", "interest.accrue"), ("bank_b", "interest.accrue")}
    assert every["bank_a", "interest.accrue"].shown_status == "failed"
    assert every["bank_a", "interest.accrue"].failures[0].key == "0000-0003"
    assert every["bank_b", "interest.accrue"].summary["entries"] == 12
    assert [s.tenant_id for s in runner.status("bank_b")] == ["bank_b"]
