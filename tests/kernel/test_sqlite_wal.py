"""A running application checkpoints SQLite's write-ahead log on a thread of its own, so no
committing unit of work pays for a checkpoint (core/sqlite_wal.py)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from sqlalchemy import func, select, text

from core.testing.factories import mobile, resident_id
from middle.party.models import Customer
from middle.party.service import CustomerDraft


def autocheckpoint(app) -> int:
    with app.engine.connect() as connection:
        return connection.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()


def test_a_running_application_checkpoints_the_wal_off_the_committing_thread(make_sceneos) -> None:
    app = make_sceneos()  # SQLite file, started
    checkpointer = app.wal_checkpointer
    assert checkpointer is not None and autocheckpoint(app) == 0
    party = app.tenant("bank").module("party")
    for n in range(40):
        with party.tenant.unit_of_work() as uow:
            party.container.service(uow=uow).register(
                CustomerDraft(name=f"C{n}", id_number=resident_id(date(1980, 1, 1 + n % 28), sequence=n),
                              phone=mobile(n)))
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.checkpoints >= 2
    with app.tenant("bank").unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Customer)) == 40

    database = Path(app.engine.url.database)
    app.close()
    assert app.wal_checkpointer is None and autocheckpoint(app) == 1000  # back to SQLite's own
    # The log was checkpointed on close: the database file alone holds every row.
    import sqlite3

    copy = database.with_name("copy.db")
    copy.write_bytes(database.read_bytes())
    with sqlite3.connect(copy) as connection:
        assert connection.execute("SELECT count(*) FROM party_customers").fetchone() == (40,)
