"""Where partitions run: in this process (default) or on a Dask cluster.

An executor takes the partitions still to do and yields each one's :class:`PartitionOutcome` as it
finishes; the runner around it (``service.JobRunner``) keeps the run's books. Either way a
partition's work and its done-marker commit in one unit of work opened where the partition runs.

Dask workers rebuild the application
====================================
A pluggy plugin manager (and with it a built :class:`~core.app.SceneOS`) cannot be pickled. What
is shipped to a worker instead is an :class:`AppBlueprint`: the validated ``Settings`` (a pydantic
model, picklable), the import paths (``"pkg.module:attr"``) of the plugins registered in code
(plugins found through entry points are found again by the worker, which must have the same
packages installed), and the clock. Each worker process builds the application once per
blueprint (``SceneOS.build(settings, migrate=False, catalog=...)``, cached by a hash of the
blueprint) and opens its own database sessions from it; it never migrates and never calls
startup hooks.

The clock: production runs on :class:`~core.clock.SystemClock`, which every worker has. A test on
a :class:`~core.clock.SimulatedClock` ships the clock's current instant; the worker builds a
``SimulatedClock`` standing at that instant, so rows written in workers carry the same times as
rows written in-process. (The instant is part of the cache key: moving the test's clock makes
workers build a fresh application for the next run.)
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretBytes, SecretStr
from sqlalchemy.engine import make_url

from core.clock import Clock, SimulatedClock, SystemClock
from core.settings import Settings
from infra.compute.errors import NotShippable
from infra.compute.partitions import (
    PartitionOutcome,
    PartitionTask,
    error_line,
    execute_partition,
    record_failure,
)

if TYPE_CHECKING:
    from distributed import Client

    from core.app import SceneOS


class Executor(Protocol):
    """Runs partitions and yields their outcomes as they finish (in any order)."""

    name: str

    def execute(self, app: SceneOS, tasks: Sequence[PartitionTask]) -> Iterator[PartitionOutcome]: ...


class InProcessExecutor:
    """Runs partitions one after another in this process, in the order the job listed them."""

    name = "inprocess"

    def execute(self, app: SceneOS, tasks: Sequence[PartitionTask]) -> Iterator[PartitionOutcome]:
        for task in tasks:
            yield execute_partition(app, task)


# --- the blueprint shipped to workers ------------------------------------------------------------


def import_path_of(name: str, plugin: Any) -> str:
    """``"pkg.module"`` for a plugin module, ``"pkg.module:attr"`` for a module-level object."""
    if isinstance(plugin, ModuleType):
        module_name, attr = plugin.__name__, None
    else:
        module_name = getattr(plugin, "__module__", None) or type(plugin).__module__
        module = sys.modules.get(module_name)
        attr = next((key for key, value in vars(module).items() if value is plugin), None) if module else None
        if attr is None:
            raise NotShippable(f"plugin {name!r} ({type(plugin).__name__}) is not a module or a module-level "
                               "object, so a Dask worker cannot import it; pass plugin_paths to DaskExecutor")
    if module_name == "__main__":
        raise NotShippable(f"plugin {name!r} is defined in __main__, which a Dask worker cannot import; "
                           "move it to an importable module")
    return module_name if attr is None else f"{module_name}:{attr}"


def load_import_path(path: str) -> Any:
    import importlib

    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return value.get_secret_value()
    return str(value)


@dataclass(frozen=True)
class AppBlueprint:
    """Everything a worker needs to build the same application: picklable, hashable by content."""

    settings: Settings
    # Plugins registered in code: (name, "pkg.module:attr"). Entry-point plugins are rediscovered.
    plugin_paths: tuple[tuple[str, str], ...] = ()
    entry_points: bool = True
    # None: the worker uses SystemClock. Else the SimulatedClock's instant when the run started.
    simulated_now: datetime | None = None
    source: str = "<dask worker>"

    @classmethod
    def of(cls, app: SceneOS, *, plugin_paths: Mapping[str, str] | None = None) -> AppBlueprint:
        """The blueprint of a built application. ``plugin_paths`` overrides derived import paths."""
        url = make_url(app.settings.database.url)
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise NotShippable("Dask workers cannot reach an in-memory SQLite database; use a file or PostgreSQL")
        given = dict(plugin_paths or {})
        paths: list[tuple[str, str]] = []
        entry_points = False
        for info in app.catalog:
            if info.origin.startswith("entry point"):
                entry_points = True
                continue
            paths.append((info.name, given.get(info.name) or import_path_of(info.name, info.plugin)))
        clock = app.clock
        if isinstance(clock, SimulatedClock):
            simulated_now: datetime | None = clock.now()
        elif isinstance(clock, SystemClock):
            simulated_now = None
        else:
            raise NotShippable(f"cannot ship a {type(clock).__name__} to Dask workers (SystemClock or SimulatedClock)")
        return cls(settings=app.settings, plugin_paths=tuple(sorted(paths)), entry_points=entry_points,
                   simulated_now=simulated_now, source=app.source)

    def cache_key(self) -> str:
        content = {
            "settings": self.settings.model_dump(mode="python"),
            "plugins": self.plugin_paths,
            "entry_points": self.entry_points,
            "clock": self.simulated_now.isoformat() if self.simulated_now else "system",
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=_reveal).encode()).hexdigest()

    def clock(self) -> Clock:
        return SystemClock() if self.simulated_now is None else SimulatedClock(self.simulated_now)

    def build(self) -> SceneOS:
        from core.app import SceneOS
        from core.plugins import PluginCatalog

        catalog = PluginCatalog.discover(entry_points=self.entry_points)
        for name, path in self.plugin_paths:
            catalog.register(name, load_import_path(path), origin=f"shipped to worker as {path}")
        return SceneOS.build(self.settings, source=self.source, clock=self.clock(), catalog=catalog, migrate=False)


# --- worker side ---------------------------------------------------------------------------------

_WORKER_APPS_MAX = 4
_worker_apps: OrderedDict[str, SceneOS] = OrderedDict()
_worker_apps_lock = threading.Lock()


def worker_app(blueprint: AppBlueprint) -> SceneOS:
    """This process's application for ``blueprint``, built once (a few kept, oldest disposed)."""
    key = blueprint.cache_key()
    with _worker_apps_lock:
        app = _worker_apps.get(key)
        if app is not None:
            _worker_apps.move_to_end(key)
            return app
        app = blueprint.build()
        _worker_apps[key] = app
        while len(_worker_apps) > _WORKER_APPS_MAX:
            _, evicted = _worker_apps.popitem(last=False)
            evicted.close()
        return app


def run_partition_in_worker(task: PartitionTask, blueprint: AppBlueprint) -> PartitionOutcome:
    """The function Dask runs: rebuild (or reuse) the application, then run one partition."""
    return execute_partition(worker_app(blueprint), task)


# --- Dask ----------------------------------------------------------------------------------------


class DaskExecutor:
    """Runs partitions on a Dask cluster, one task per partition, yielding outcomes as they finish.

    Give exactly one of: ``client`` (a connected ``distributed.Client``, left open), ``scheduler``
    (an address such as ``tcp://scheduler:8786``: production), or ``n_workers`` (a
    ``LocalCluster`` of that many worker processes started for the run and closed after it).
    ``plugin_paths`` names import paths for code-registered plugins the blueprint cannot derive.
    """

    name = "dask"

    def __init__(
        self,
        *,
        client: Client | None = None,
        scheduler: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        plugin_paths: Mapping[str, str] | None = None,
    ) -> None:
        given = [value for value in (client, scheduler, n_workers) if value is not None]
        if len(given) > 1:
            raise ValueError("give one of client, scheduler or n_workers")
        if n_workers is not None and not 1 <= n_workers <= 1024:
            raise ValueError("n_workers must be between 1 and 1024")
        self.client = client
        self.scheduler = scheduler
        self.n_workers = n_workers if given else 2
        self.threads_per_worker = threads_per_worker
        self.plugin_paths = dict(plugin_paths or {})

    @contextmanager
    def _connected(self) -> Iterator[Client]:
        from distributed import Client, LocalCluster

        if self.client is not None:
            yield self.client
        elif self.scheduler is not None:
            with Client(self.scheduler) as client:
                yield client
        else:
            with (
                LocalCluster(n_workers=self.n_workers, processes=True, threads_per_worker=self.threads_per_worker,
                             dashboard_address=None) as cluster,
                Client(cluster) as client,
            ):
                yield client

    def execute(self, app: SceneOS, tasks: Sequence[PartitionTask]) -> Iterator[PartitionOutcome]:
        from distributed import as_completed

        if not tasks:
            return
        blueprint = AppBlueprint.of(app, plugin_paths=self.plugin_paths)
        with self._connected() as client:
            shipped = client.scatter(blueprint, broadcast=True, hash=False)
            futures = client.map(run_partition_in_worker, list(tasks), blueprint=shipped, pure=False)
            task_of = {future.key: task for future, task in zip(futures, tasks, strict=True)}
            pending = set(futures)
            try:
                for future in as_completed(futures):
                    pending.discard(future)
                    task = task_of[future.key]
                    try:
                        outcome: PartitionOutcome = future.result()
                    except Exception as exc:  # the worker died, or could not record the partition
                        error = "worker failed: " + error_line(exc)
                        attempts = record_failure(app, task, error)
                        outcome = PartitionOutcome(task.partition_id, task.key, "failed", error=error, attempts=attempts)
                    future.release()
                    yield outcome
            finally:
                # The runner stopped early (an error, Ctrl-C): do not leave partitions running.
                if pending:
                    client.cancel(list(pending))
                shipped.release()
