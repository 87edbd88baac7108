"""A reader holding one snapshot of a SQLite ledger for long (a `sqlite3 .backup`, an
open shell) keeps SQLite's checkpoints from finishing, so the -wal file grows with
every append meanwhile.  Once that reader is gone, a process that goes on appending
(`escrow serve`) cuts the -wal file back to WAL_SIZE_LIMIT instead of keeping it at
its largest for good."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ledger_helpers import LedgerEnv

from escrow.ledger.store import WAL_SIZE_LIMIT


def test_the_wal_file_is_cut_back_once_the_long_reader_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "db" / "ledger.db"
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{db}")
    wal = Path(f"{db}-wal")
    with env.open() as lg:
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ledger_entry").fetchone()
        n = 0
        while wal.stat().st_size <= WAL_SIZE_LIMIT + (1 << 20):
            lg.append(env.envelope(n))
            n += 1
        reader.close()

        for m in range(n, n + 5):  # the first commit checkpoints, the next start it again
            lg.append(env.envelope(m))

        assert os.path.getsize(wal) <= WAL_SIZE_LIMIT
        assert lg.size() == n + 6
