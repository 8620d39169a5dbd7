"""The Dask executor: the same job on a LocalCluster of worker processes gives the in-process result.

One cluster serves the whole module (starting one takes about a second). Workers rebuild the
application from the shipped blueprint: settings, the import paths of the test plugins, and the
simulated clock's instant.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date

import pytest
from compute_testjobs import expected_amount, ledger_state, open_chart
from conftest import BOTH, PLUGINS, interest_config
from sqlalchemy import select

from infra.compute import DaskExecutor, JobRunner
from infra.compute.errors import NotShippable
from infra.compute.models import ComputePartition

DAY = date(2026, 1, 1)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    import dask
    from distributed import Client, LocalCluster

    # A task whose worker dies is not retried on another worker (the crash test needs one death).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


@BOTH
def test_dask_gives_the_same_result_as_in_process(interest_app, dask_client) -> None:
    app = interest_app(customers=24, per_partition=3, tenants=("bank_b", "bank_c"))
    runner = JobRunner(app)
    workers = set()

    on_dask = runner.run("bank_b", "interest.accrue", DAY, executor=DaskExecutor(client=dask_client),
                         progress=lambda p: p.outcome and workers.add(p.outcome.worker))
    in_process = runner.run("bank_c", "interest.accrue", DAY)

    assert on_dask.completed and in_process.completed and on_dask.executor == "dask"
    assert on_dask.summary == in_process.summary == {"partitions": 8, "entries": 24,
                                                     "amount_minor": expected_amount(24)}
    assert ledger_state(app, "bank_b") == ledger_state(app, "bank_c")
    # The partitions ran in the worker processes, not here.
    pids = {int(worker.rsplit(":", 1)[1]) for worker in workers}
    assert pids and os.getpid() not in pids
    # Worker rows carry the simulated clock's instant, as in-process rows do.
    with app.tenant("bank_b").unit_of_work() as uow:
        finished = set(uow.session.scalars(select(ComputePartition.finished_at)))
    assert finished == {app.clock.now()}
    again = runner.run("bank_b", "interest.accrue", DAY, executor=DaskExecutor(client=dask_client))
    assert again.already_completed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dask_records_failures_in_the_worker_and_a_rerun_resumes(interest_app, dask_client) -> None:
    app = interest_app(customers=12, per_partition=4, skip={"bank_a": (9,)})
    runner = JobRunner(app)
    executor = DaskExecutor(client=dask_client)

    failed = runner.run("bank_a", "interest.accrue", DAY, executor=executor)
    assert failed.status == "failed" and [f.key for f in failed.failures] == ["0008-0011"]
    assert "cust:0009" in failed.failures[0].error

    with app.tenant("bank_a").unit_of_work() as uow:
        from infra.ledger import Ledger

        Ledger(uow.session, uow.clock).open_account("cust:0009", "CNY", "liability", "customer", "9",
                                                    "debits_must_not_exceed_credits")
    resumed = runner.run("bank_a", "interest.accrue", DAY, executor=executor)
    assert resumed.completed and (resumed.ran, resumed.resumed_done) == (1, 2)
    # The bank plugin's own job (added by hook) runs in the workers too: they rebuilt the plugin.
    closed = runner.run("bank_a", "testbank.close_interest", DAY, executor=executor)
    assert closed.completed and closed.summary["amount_minor"] == expected_amount(12)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_that_dies_fails_its_partition_and_nothing_else(interest_app, dask_client) -> None:
    app = interest_app()
    report = JobRunner(app).run("bank_b", "interest.crash", DAY, executor=DaskExecutor(client=dask_client))
    [failure] = report.failures
    assert report.status == "failed" and failure.key == "only"
    assert failure.error.startswith("worker failed: KilledWorker") and failure.attempts == 1


def test_an_executor_that_cannot_start_fails_the_run_with_its_reason(make_sceneos) -> None:
    app = make_sceneos(interest_config(tenants=("bank_b",)), plugins=PLUGINS, database_url="sqlite://")
    open_chart(app, "bank_b", 12)
    runner = JobRunner(app)

    with pytest.raises(NotShippable, match="in-memory SQLite"):  # refused before any cluster starts
        runner.run("bank_b", "interest.accrue", DAY, executor=DaskExecutor(n_workers=1))

    [status] = runner.status("bank_b")
    assert status.status == "failed" and status.error.startswith("stopped after 0 partitions: NotShippable")
    assert runner.run("bank_b", "interest.accrue", DAY).completed  # in-process, it runs
