"""SQLite WAL checkpoints on a thread of their own, while the application runs.

In WAL mode with ``synchronous=NORMAL`` (the kernel's setting, :mod:`core.db`) a commit appends to
the write-ahead log and does not wait for the disk, except for the one commit that takes the log
past ``wal_autocheckpoint`` pages (1,000 by default): that commit copies the log into the database
and syncs it, on the thread that committed. Under steady writes that is a few percent of units of
work taking 1-20 ms instead of well under one: the tail of request latency (docs/risk.md measured
it as most of a risk decision's p99).

While the application runs (:meth:`core.app.SceneOS.start` to ``close``), connections of its
engine turn automatic checkpoints off and this checkpointer runs ``PRAGMA wal_checkpoint(PASSIVE)``
every ``interval`` seconds on a connection of its own. PASSIVE never waits for readers or writers,
so committing threads do not wait for it. Outside a running application (CLI commands, migrations)
SQLite checkpoints as usual; an in-memory database has no log.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, event

from core.logging import get_logger

log = get_logger("sceneos.db")
CHECKPOINT_INTERVAL_SECONDS = 0.25


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class WalCheckpointer:
    def __init__(self, engine: Engine, interval: float = CHECKPOINT_INTERVAL_SECONDS) -> None:
        self.engine = engine
        self.path = engine.url.database or ""
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    @staticmethod
    def applies_to(engine: Engine) -> bool:
        return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")

    def start(self) -> None:
        if self._thread is not None:
            return
        event.listen(self.engine, "connect", _no_autocheckpoint)
        # Pooled connections opened before (migrations) would still checkpoint on commit.
        self.engine.dispose()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sceneos-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        if event.contains(self.engine, "connect", _no_autocheckpoint):
            event.remove(self.engine, "connect", _no_autocheckpoint)
        self.checkpoint()  # leave the database file complete

    def checkpoint(self) -> None:
        """One checkpoint now, on a connection of its own."""
        try:
            connection = sqlite3.connect(self.path, timeout=1, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed", error=str(exc))
            return
        try:
            self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
        except sqlite3.Error as exc:  # a busy or vanished file: the next round (or SQLite) does it
            log.warning("WAL checkpoint failed", error=str(exc))

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, timeout=1, check_same_thread=False, isolation_level=None)
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint(connection)
        finally:
            connection.close()
