"""``sceneos compute ...`` through a real subprocess, the way an operator runs it.

The test module and bank plugin are found through the fixture distribution in ``entry_points/``
(on the child's PYTHONPATH only, as ``pip install`` would put them on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from compute_testjobs import expected_amount, ledger_state, open_chart
from conftest import PLUGINS, interest_config

from core.testing.harness import make_app

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

CONFIG = """
[database]
url = "sqlite:///{db}"

[tenants.bank_a]
name = "Bank A"
plugins = ["compute_testbank"]

[tenants.bank_a.modules.interest]
customers = 12
per_partition = 4

[tenants.bank_b]
name = "Bank B"

[tenants.bank_b.modules.interest]
customers = 12
per_partition = 4
"""


def sceneos(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE / "entry_points"), str(HERE), str(ROOT)]),
           "COLUMNS": "200", "SCENEOS_CONFIG": str(cwd / "sceneos.toml")}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture
def workdir(tmp_path: Path):
    """A config file, and its database migrated with both banks' charts of accounts opened."""
    db = tmp_path / "sceneos.db"
    (tmp_path / "sceneos.toml").write_text(CONFIG.format(db=db), encoding="utf-8")
    app = make_app(interest_config(url=f"sqlite:///{db}"), plugins=PLUGINS)
    open_chart(app, "bank_a", 12, skip=(6,))  # bank A's run fails on the missing cust:0006
    open_chart(app, "bank_b", 12)
    yield tmp_path, app
    app.close()


def test_run_status_and_jobs_from_the_command_line(workdir) -> None:
    cwd, app = workdir

    first = sceneos("compute", "run", "interest.accrue", "--tenant", "bank_b", "--date", "2026-01-01", cwd=cwd)
    assert first.returncode == 0, first.stderr
    assert "interest.accrue for bank_b on 2026-01-01: completed, 3/3 partitions done" in first.stdout
    assert f"summary: partitions=3, amount_minor={expected_amount(12)}, entries=12" in first.stdout
    again = sceneos("compute", "run", "interest.accrue", "-t", "bank_b", "-d", "2026-01-01", cwd=cwd)
    assert again.returncode == 0 and "already completed" in again.stdout

    failed = sceneos("compute", "run", "interest.accrue", "--tenant", "bank_a", "--date", "2026-01-01", cwd=cwd)
    assert failed.returncode == 2, failed.stderr
    assert "error: interest.accrue for bank_a on 2026-01-01 did not complete (1 of 3 partitions failed)" in failed.stderr
    assert "failed, 2/3 partitions done: 1 of 3 partitions failed" in failed.stdout
    assert "0004-0007" in failed.stdout and "cust:0006" in failed.stdout

    status = sceneos("compute", "status", cwd=cwd)
    assert status.returncode == 0, status.stderr
    rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines() if line.count("│") > 5
            and line.split("│")[1].strip() in ("bank_a", "bank_b")}
    assert "completed" in rows["bank_b"] and "3/3" in rows["bank_b"]
    assert "failed" in rows["bank_a"] and "2/3" in rows["bank_a"]
    assert "failures: bank_a interest.accrue 2026-01-01" in status.stdout and "UnknownAccount" in status.stdout

    jobs = sceneos("compute", "jobs", "--tenant", "bank_a", cwd=cwd)
    assert jobs.returncode == 0 and "testbank.close_interest" in jobs.stdout and "interest.accrue" in jobs.stdout

    with app.tenant("bank_a").unit_of_work() as uow:  # fix the data, resume on a local Dask cluster
        from infra.ledger import Ledger

        Ledger(uow.session, uow.clock).open_account("cust:0006", "CNY", "liability", "customer", "6",
                                                    "debits_must_not_exceed_credits")
    resumed = sceneos("compute", "run", "interest.accrue", "-t", "bank_a", "-d", "2026-01-01",
                      "--executor", "dask", "--workers", "2", cwd=cwd)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "completed, 3/3 partitions done (2 by an earlier attempt)" in resumed.stdout
    interest_ids = [i for i in ledger_state(app, "bank_a")["entry_ids"] if i.startswith("interest.")]
    assert interest_ids == ledger_state(app, "bank_b")["entry_ids"]


@pytest.mark.parametrize(("args", "message"), [
    (["run", "interest.accrue", "-t", "bank_b", "--date", "2026-13-01"],
     "error: --date must be a date as YYYY-MM-DD, not '2026-13-01'"),
    (["run", "interest.nope", "-t", "bank_b", "--date", "2026-01-01"],
     "error: tenant 'bank_b' has no job 'interest.nope' (available: entry.webhook_purge, interest.accrue, "),
    (["run", "interest.accrue", "-t", "bank_b", "--date", "2026-01-01", "--scheduler", "tcp://x:8786"],
     "error: --scheduler and --workers need --executor dask"),
])
def test_command_line_mistakes_are_one_line_errors(workdir, args, message) -> None:
    cwd, _ = workdir
    result = sceneos("compute", *args, cwd=cwd)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
