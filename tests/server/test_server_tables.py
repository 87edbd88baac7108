"""The server's own tables are created safely while another process writes the ledger."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize("store", ["tokens", "packs"])
def test_server_tables_wait_for_a_writer_instead_of_failing(tmp_path: Path, store: str) -> None:
    """A second `escrow serve --workers` worker starting while the first appends.

    Creating a table used to run in a deferred transaction: its read snapshot could not be
    upgraded to a write while another connection held the write lock, so SQLite said
    "database is locked" at once (no busy wait) and the worker failed to start, which made
    Uvicorn stop every worker.
    """
    from escrow.ledger.store import make_engine
    from escrow.server.auth import TokenStore
    from escrow.server.packs import PackJobs

    db = tmp_path / "ledger.db"
    setup = sqlite3.connect(db)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE other (x INTEGER)")
    setup.commit()
    setup.close()

    locked = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO other VALUES (1)")
        locked.set()
        time.sleep(1.0)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    locked.wait(10)
    engine = make_engine(f"sqlite:///{db}")
    try:
        (TokenStore if store == "tokens" else PackJobs).create_tables(engine)
    finally:
        thread.join()
        engine.dispose()
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert ("server_tokens" if store == "tokens" else "server_pack_job") in tables
