"""Run one job in a fresh process, for the kill test: ``python run_interest_job.py '<json>'``.

The JSON holds ``config`` (the application's config dict, database included), ``tenant``, ``job``
and ``date``. The process builds the application as the test does (same plugins, a simulated
clock at the same instant) and runs the job in-process until it finishes or is killed.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime

from conftest import PLUGINS

from core.clock import SimulatedClock
from core.testing.harness import make_app
from infra.compute import JobRunner


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    app = make_app(spec["config"], plugins=PLUGINS, clock=SimulatedClock(datetime.fromisoformat(spec["now"])))
    report = JobRunner(app).run(spec["tenant"], spec["job"], date.fromisoformat(spec["date"]))
    print(report.message, flush=True)
    app.close()


if __name__ == "__main__":
    main(sys.argv)
