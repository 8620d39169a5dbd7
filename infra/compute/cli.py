"""``sceneos compute ...``: run a job for a business date, list jobs, show runs and their failures."""

from __future__ import annotations

from datetime import date

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.cli_support import open_app
from infra.compute.errors import ComputeError, RunNotCompleted
from infra.compute.executors import DaskExecutor, Executor, InProcessExecutor

cli = typer.Typer(help="Batch jobs per business date: run, resume, inspect.", no_args_is_help=True)
console = Console()

EXECUTORS = ("inprocess", "dask")
ConfigOption = typer.Option(None, "--config", "-c", help="config file (default: $SCENEOS_CONFIG or ./sceneos.toml)")


def _business_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ComputeError(f"--date must be a date as YYYY-MM-DD, not {text!r}") from None


def _executor(kind: str, scheduler: str | None, workers: int | None) -> Executor:
    if kind not in EXECUTORS:
        raise ComputeError(f"--executor must be one of {', '.join(EXECUTORS)}, not {kind!r}")
    if kind == "inprocess":
        if scheduler or workers:
            raise ComputeError("--scheduler and --workers need --executor dask")
        return InProcessExecutor()
    if scheduler and workers:
        raise ComputeError("give --scheduler (a running cluster) or --workers (a local cluster), not both")
    if workers is not None and not 1 <= workers <= 1024:
        raise ComputeError("--workers must be between 1 and 1024")
    return DaskExecutor(scheduler=scheduler) if scheduler else DaskExecutor(n_workers=workers or 2)


@cli.command("run")
def run(
    name: str = typer.Argument(..., help="job name, e.g. ledger.expire_pending (see `sceneos compute jobs`)"),
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant (bank) id"),
    business_date: str = typer.Option(..., "--date", "-d", help="business date, YYYY-MM-DD"),
    executor: str = typer.Option("inprocess", "--executor", "-e", help="inprocess or dask"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786"),
    workers: int | None = typer.Option(None, "--workers", "-w", help="start a local Dask cluster of N worker processes"),
    config: str | None = ConfigOption,
) -> None:
    """Run a job for a business date; resumes an interrupted or failed run, skips a completed one."""
    from infra.compute.service import JobRunner, RunProgress

    day = _business_date(business_date)
    chosen = _executor(executor, scheduler, workers)
    with open_app(config) as app:
        runner = JobRunner(app)
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as bar:
            task_id = bar.add_task(f"{name} {day.isoformat()}", total=None, failed="")

            def on_progress(update: RunProgress) -> None:
                failed = f"[red]{update.failed} failed[/red]" if update.failed else ""
                bar.update(task_id, total=update.total, completed=update.done + update.failed, failed=failed)

            report = runner.run(tenant, name, day, executor=chosen, progress=on_progress)
    console.print(report.message, highlight=False)
    if report.summary and not report.already_completed:
        label = "summary" if report.completed else "summary of the partitions done"
        console.print(f"{label}: " + ", ".join(f"{key}={value}" for key, value in report.summary.items()),
                      highlight=False)
    if report.failures:
        table = Table(title="failed partitions")
        for column in ("partition", "attempts", "error"):
            table.add_column(column)
        for failure in report.failures:
            table.add_row(failure.key, str(failure.attempts), failure.error)
        console.print(table)
    if not report.completed:
        # An error (exit 2), so a scheduler (cron, Airflow) sees the run did not complete.
        raise RunNotCompleted(f"{name} for {tenant} on {day.isoformat()} did not complete ({report.error}); "
                              "run it again to retry what failed")


@cli.command("status")
def status(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="one tenant (default: every tenant)"),
    job: str | None = typer.Option(None, "--job", help="one job"),
    limit: int = typer.Option(50, "--limit", help="newest N runs"),
    config: str | None = ConfigOption,
) -> None:
    """Runs, newest first: status, partitions done/total, failures with their errors."""
    from infra.compute.service import JobRunner

    with open_app(config) as app:
        runs = JobRunner(app).status(tenant, job_name=job, limit=limit)
    if not runs:
        console.print("no runs", highlight=False)
        return
    table = Table(title="compute runs")
    for column in ("tenant", "job", "date", "status", "done/total", "failed", "starts", "executor", "finished", "note"):
        table.add_column(column)
    for run in runs:
        note = run.error or ""
        if run.interrupted:
            note = "runner gone: run it again to resume"
        elif run.status == "running" and run.claimed_by:
            note = f"running on {run.claimed_by}"
        table.add_row(
            run.tenant_id, run.job_name, run.business_date.isoformat(), run.shown_status,
            f"{run.partitions_done}/{run.partitions_total}", str(run.partitions_failed), str(run.starts),
            run.executor or "-", run.finished_at.isoformat(timespec="seconds") if run.finished_at else "-", note,
        )
    console.print(table)
    for run in runs:
        if run.failures:
            failures = Table(title=f"failures: {run.tenant_id} {run.job_name} {run.business_date.isoformat()}")
            for column in ("partition", "attempts", "error"):
                failures.add_column(column)
            for failure in run.failures:
                failures.add_row(failure.key, str(failure.attempts), failure.error)
            console.print(failures)


@cli.command("jobs")
def jobs(
    tenant: str = typer.Option(..., "--tenant", "-t", help="tenant (bank) id"),
    config: str | None = ConfigOption,
) -> None:
    """Jobs a tenant can run: its modules' jobs and those its plugins add."""
    from infra.compute.service import JobRunner

    with open_app(config) as app:
        listed = JobRunner(app).jobs(tenant)
    if not listed:
        console.print(f"tenant {tenant} has no jobs", highlight=False)
        return
    table = Table(title=f"jobs of {tenant}")
    for column in ("job", "from", "description"):
        table.add_column(column)
    for job in listed:
        table.add_row(job.name, job.origin, job.description)
    console.print(table)
