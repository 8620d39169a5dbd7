"""A real process kill midway through a run: the rerun resumes and ends like a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from compute_testjobs import expected_amount, ledger_state
from conftest import BOTH, interest_config
from sqlalchemy import create_engine, text

from infra.compute import JobRunner

HERE = Path(__file__).parent
DAY = date(2026, 1, 1)
CUSTOMERS, PER_PARTITION = 40, 4  # 10 partitions


def done_partitions(url: str) -> int:
    # A plain engine: the application's SQLite engine would take the write lock just to read.
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(
                "select count(*) from compute_partitions where tenant_id = 'bank_b' and status = 'done'"
            )).scalar_one()
    except Exception:  # the run's tables are being created by the child
        return 0
    finally:
        engine.dispose()


@BOTH
def test_a_run_killed_midway_resumes_and_equals_a_clean_run(interest_app, database_url) -> None:
    app = interest_app(customers=CUSTOMERS, per_partition=PER_PARTITION, tenants=("bank_b", "bank_c"))
    slow = interest_config(customers=CUSTOMERS, per_partition=PER_PARTITION, pause_seconds=0.25,
                           tenants=("bank_b", "bank_c"), url=database_url)
    spec = {"config": slow, "tenant": "bank_b", "job": "interest.accrue", "date": DAY.isoformat(),
            "now": app.clock.now().isoformat()}
    child = subprocess.Popen([sys.executable, str(HERE / "run_interest_job.py"), json.dumps(spec)],
                             cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONPATH": str(HERE)})
    deadline = time.monotonic() + 30
    while done_partitions(database_url) < 3:
        assert child.poll() is None, child.communicate()[0]
        assert time.monotonic() < deadline, "the child did not get through 3 partitions in 30 s"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    runner = JobRunner(app)
    [interrupted] = runner.status("bank_b")
    done_at_kill = interrupted.partitions_done
    assert interrupted.status == "running" and interrupted.interrupted and interrupted.shown_status == "interrupted"
    assert 3 <= done_at_kill < 10
    # Only whole partitions survived the kill: the one being written when it died left nothing.
    assert len(ledger_state(app, "bank_b")["entry_ids"]) == PER_PARTITION * done_at_kill

    resumed = runner.run("bank_b", "interest.accrue", DAY)
    clean = runner.run("bank_c", "interest.accrue", DAY)

    assert resumed.completed and clean.completed
    assert (resumed.resumed_done, resumed.ran) == (done_at_kill, 10 - done_at_kill)
    assert resumed.summary == clean.summary == {"partitions": 10, "entries": CUSTOMERS,
                                                "amount_minor": expected_amount(CUSTOMERS)}
    killed_state, clean_state = ledger_state(app, "bank_b"), ledger_state(app, "bank_c")
    assert killed_state == clean_state  # same entries (no duplicates), postings, balances
    assert killed_state["postings"] == 2 * CUSTOMERS and killed_state["trial_balanced"]
    assert runner.status("bank_b")[0].starts == 2
