"""The ``sceneos`` command, run as a user runs it: a real process, real files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CONFIG = """
[database]
url = "sqlite:///cli.db"
[tenants.bank_a]
name = "Bank A"
plugins = ["example_bank"]
[tenants.bank_a.modules.party]
[tenants.bank_b]
name = "Bank B"
[tenants.bank_b.modules.party]
"""


def sceneos(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("SCENEOS_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "sceneos.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def test_demo_shows_two_banks_and_the_plugin_acting_for_one(tmp_path: Path) -> None:
    result = sceneos("demo", "--database", f"sqlite:///{tmp_path / 'demo.db'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "bank_a" in out and "bank_b" in out and "example_bank" in out
    assert "bank_a (minimum age 22): refused: customer must be at least 22 years old" in out
    assert "bank_b (minimum age 18): registered as cus_" in out
    assert "bank_a finds the applicant: no" in out and "bank_b finds the applicant: cus_" in out
    # Journeys 2 and 3 (credit pay) on a simulated clock: decision, schedule and a month-end statement.
    journey_2 = out[out.index("Journey 2: credit pay inside a travel app"):out.index("Journey 3:")]
    journey_3 = out[out.index("Journey 3: installments as a white-labelled joint product"):out.index("Journey 6:")]
    for journey in (journey_2, journey_3):
        assert "outcome  │ approve" in journey
        for line in ("previous balance", "purchases", "installments due", "interest", "fees", "payments",
                     "new balance", "minimum payment", "due date"):
            assert line in journey, line
        assert "Installment schedule cpi_" in journey and "annualized rate (IRR method)" in journey
    assert "Fly Now Pay Later (product travel)" in journey_2 and "Luxe Pay (product luxe)" in journey_3
    # 1,860.00 over 6 x annuity at 1 % a month: 320.94 a month, 65.64 in all, 12.00 % a year.
    assert "│    1 │ 2026-04-05 │    302.34 │    18.60 │   320.94 │" in journey_2
    assert "│      │      total │  1,860.00 │    65.64 │ 1,925.64 │" in journey_2
    assert "annualized rate (IRR method): 12.00 %" in journey_2
    assert "Statement cpa_" in journey_2 and "-20260405" in journey_2 and "-20260505" in journey_2
    assert "│ 3 x flat_fee, 0.00 % a" in journey_3 and "0.00 % │" in journey_3  # the interest-free plan
    # The boutique's 6 months interest-free: 6,800.00 x 0.45 % x 6 = 183.60 paid by the merchant.
    assert "│ 6 x flat_fee, 0.00 % a" in journey_3 and "merchant pays 183.60)" in journey_3
    assert "│   12 │ 2027-03-01 │    566.74 │     4.53 │   571.27 │" in journey_3
    assert 'In the bank\'s own app the same account is "Bank A x Luxe Mall Installments"' in journey_3


def test_db_upgrade_then_current(workdir: Path) -> None:
    assert sceneos("db", "current", cwd=workdir).returncode == 2  # empty database: behind
    upgraded = sceneos("db", "upgrade", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    current = sceneos("db", "current", cwd=workdir)
    assert current.returncode == 0 and "party_0001" in current.stdout


def test_plugins_list_shows_origin_hooks_and_tenants(workdir: Path) -> None:
    result = sceneos("plugins", "list", cwd=workdir)
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if "example_bank" in row)
    assert "entry point plugins.example_bank.plugin" in line and "bank_a" in line and "bank_b" not in line
    assert "sceneos_party_validate_customer" in result.stdout


def test_party_cli_registers_and_shows(workdir: Path) -> None:
    registered = sceneos("party", "register", "-t", "bank_b", "--name", "Zhao Liu",
                         "--id-number", "11010519491231002X", "--phone", "13800138000", cwd=workdir)
    assert registered.returncode == 0, registered.stderr
    assert "11010519491231002X" not in registered.stdout and "110105********002X" in registered.stdout
    customer_no = registered.stdout.split()[1]
    shown = sceneos("party", "show", customer_no, "-t", "bank_b", cwd=workdir)
    assert shown.returncode == 0 and "Zhao Liu" in shown.stdout
    other_bank = sceneos("party", "show", customer_no, "-t", "bank_a", cwd=workdir)
    assert other_bank.returncode == 2
    assert other_bank.stderr.strip() == f"error: no customer '{customer_no}'"


def test_errors_are_one_line_with_a_non_zero_exit(workdir: Path) -> None:
    unknown_tenant = sceneos("party", "show", "cus_x", "-t", "bank_z", cwd=workdir)
    assert unknown_tenant.returncode == 2 and unknown_tenant.stderr.strip() == "error: unknown tenant 'bank_z'"
    bad_id = sceneos("party", "register", "-t", "bank_b", "--name", "X", "--id-number", "110105194912310021",
                     "--phone", "13800138000", cwd=workdir)
    assert bad_id.returncode == 2
    assert bad_id.stderr.strip() == "error: resident ID number has a wrong check digit"
    assert "Traceback" not in bad_id.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_health_and_openapi(workdir: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", str(port)], cwd=workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("server did not start") from None
                time.sleep(0.2)
        assert health.json()["tenants"] == ["bank_a", "bank_b"]
        assert health.json()["schema_current"] is True  # SQLite migrates on startup
        assert "/v1/tenants/{tenant_id}/party/customers" in httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["paths"]
    finally:
        process.terminate()
        process.wait(timeout=10)
