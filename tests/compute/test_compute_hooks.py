"""A bank plugin adds its own job and steps around a module's job, for its own bank only."""

from __future__ import annotations

from datetime import date

import compute_testbank
import pytest
from compute_testjobs import expected_amount, ledger_state
from conftest import BOTH, PLUGINS, interest_config

from core.hookspecs import hookimpl
from core.modules import JobSpec
from infra.compute import JobRunner, UnknownJob
from infra.compute.errors import InvalidJob

DAY = date(2026, 1, 1)


@BOTH
def test_a_plugin_job_exists_for_its_bank_only(interest_app) -> None:
    app = interest_app()
    runner = JobRunner(app)

    jobs_a = {job.name: job.origin for job in runner.jobs("bank_a")}
    jobs_b = {job.name: job.origin for job in runner.jobs("bank_b")}

    assert jobs_a["testbank.close_interest"] == "a sceneos_compute_register_jobs hook"
    assert jobs_a["interest.accrue"] == jobs_b["interest.accrue"] == "module interest"
    assert "testbank.close_interest" not in jobs_b
    with pytest.raises(UnknownJob, match=r"tenant 'bank_b' has no job 'testbank\.close_interest'"):
        runner.run("bank_b", "testbank.close_interest", DAY)
    runner.run("bank_a", "interest.accrue", DAY)
    closed = runner.run("bank_a", "testbank.close_interest", DAY)
    assert closed.completed and closed.summary == {"partitions": 1, "entries": 1, "amount_minor": expected_amount(12)}
    assert ledger_state(app, "bank_a")["balances"]["bank:interest_expense"] == (expected_amount(12),) * 2


@BOTH
def test_before_and_after_steps_run_once_for_their_bank_only(interest_app) -> None:
    app = interest_app()
    runner = JobRunner(app)

    runner.run("bank_a", "interest.accrue", DAY)
    runner.run("bank_b", "interest.accrue", DAY)
    runner.run("bank_a", "interest.accrue", DAY)  # already completed: no steps

    summary = {"partitions": 3, "entries": 12, "amount_minor": expected_amount(12)}
    assert compute_testbank.CALLS == [("bank_a", "before", "interest.accrue"),
                                      ("bank_a", "after", "interest.accrue", summary)]
    ids_a, ids_b = ledger_state(app, "bank_a")["entry_ids"], ledger_state(app, "bank_b")["entry_ids"]
    assert {"budget:2026-01-01", "budget-used:2026-01-01"} <= set(ids_a)
    assert not any(entry_id.startswith("budget") for entry_id in ids_b)
    budget = ledger_state(app, "bank_a")["balances"]["bank:interest_budget"]
    assert budget == (compute_testbank.BUDGET_MINOR, expected_amount(12))


@BOTH
def test_a_failing_before_step_fails_the_run_before_any_partition(interest_app) -> None:
    app = interest_app(without_budget=("bank_a",))  # the before-step posts to a missing account
    runner = JobRunner(app)

    failed = runner.run("bank_a", "interest.accrue", DAY)

    assert failed.status == "failed" and failed.partitions_done == 0 and failed.ran == 0
    assert failed.error.startswith("before-step failed: UnknownAccount") and "bank:interest_budget" in failed.error
    assert ledger_state(app, "bank_a")["entry_ids"] == []
    assert runner.status("bank_a")[0].error == failed.error

    with app.tenant("bank_a").unit_of_work() as uow:
        from infra.ledger import Ledger

        Ledger(uow.session, uow.clock).open_account("bank:interest_budget", "CNY", "expense")
    rerun = runner.run("bank_a", "interest.accrue", DAY)

    assert rerun.completed and rerun.ran == 3
    assert [call[:2] for call in compute_testbank.CALLS] == [("bank_a", "before"), ("bank_a", "before"),
                                                           ("bank_a", "after")]
    ids = ledger_state(app, "bank_a")["entry_ids"]
    assert ids.count("budget:2026-01-01") == 1 and len(ids) == 12 + 2


class _MisnamedJobs:
    @hookimpl
    def sceneos_compute_register_jobs(self, tenant):
        return [JobSpec(name="no_owner", partitions=lambda ctx: [], run_partition=lambda ctx: None)]


class _TakenName:
    @hookimpl
    def sceneos_compute_register_jobs(self, tenant):
        return [JobSpec(name="interest.accrue", partitions=lambda ctx: [], run_partition=lambda ctx: None)]


@pytest.mark.parametrize(("plugin", "problem"), [
    (_MisnamedJobs(), r"declared job 'no_owner': names are '<owner>\.<job>'"),
    (_TakenName(), r"job 'interest\.accrue' is declared by both module interest and a sceneos_compute_register_jobs"),
])
def test_badly_declared_jobs_are_refused_with_one_line(make_sceneos, plugin, problem) -> None:
    config = interest_config(tenants=("bank_b",))
    config["tenants"]["bank_b"]["plugins"] = ["bad_jobs"]
    app = make_sceneos(config, plugins={**PLUGINS, "bad_jobs": plugin})
    with pytest.raises(InvalidJob, match=problem):
        JobRunner(app).jobs("bank_b")
