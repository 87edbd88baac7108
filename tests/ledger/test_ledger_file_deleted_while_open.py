"""A SQLite ledger file deleted, or replaced by another file (a restored backup renamed
onto it), while a process has it open (`escrow serve`, a long `escrow post`): that
process refuses to read or append (DatabaseUnavailable, exit 3 / 503) instead of
acknowledging appends to a file nobody can see any more, or forking the log from the
one now at the path; once the file it opened is back, it goes on."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from ledger_helpers import LedgerEnv

from escrow.errors import DatabaseUnavailable
from escrow.ledger.store import Ledger

SUFFIXES = ("", "-wal", "-shm")


@pytest.fixture
def env(tmp_path: Path) -> LedgerEnv:
    return LedgerEnv.create(tmp_path / "home", f"sqlite:///{tmp_path / 'db' / 'ledger.db'}")


def _db(env: LedgerEnv) -> Path:
    return Path(env.settings.db_url.removeprefix("sqlite:///"))


def _move(src: Path, dst: Path) -> None:
    for suffix in SUFFIXES:
        if Path(f"{src}{suffix}").exists():
            os.rename(f"{src}{suffix}", f"{dst}{suffix}")


def test_appends_and_reads_stop_while_the_file_is_gone_and_go_on_once_it_is_back(
    env: LedgerEnv, tmp_path: Path
) -> None:
    db = _db(env)
    with env.open() as lg:
        lg.append(env.envelope(1))
        _move(db, tmp_path / "aside.db")  # `rm ledger.db*` as far as the path is concerned

        with pytest.raises(DatabaseUnavailable, match="was deleted while this process"):
            lg.append(env.envelope(2))
        with pytest.raises(DatabaseUnavailable, match="was deleted while this process"):
            lg.checkpoint()
        assert not db.exists()  # nothing made a new, empty file there

        _move(tmp_path / "aside.db", db)
        entry, created = lg.append(env.envelope(2))
        assert created and entry.index == 2
    with env.open() as lg:
        assert lg.size() == 3
        assert lg.verify().ok


def test_a_backup_renamed_onto_the_file_is_neither_appended_to_nor_forked(
    env: LedgerEnv, tmp_path: Path
) -> None:
    db = _db(env)
    backup = tmp_path / "db" / "backup.db"
    with env.open() as lg:
        lg.append(env.envelope(1))
        with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
            src.backup(dst)  # `sqlite3 ledger.db ".backup backup.db"`: 2 entries
        lg.append(env.envelope(2))
        # the operator restores it while the process runs (with the -wal and -shm files
        # at the path removed: SQLite would replay the old -wal file onto the backup)
        os.replace(backup, db)
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)

        with pytest.raises(DatabaseUnavailable, match="was replaced by another file"):
            lg.append(env.envelope(3))
        with pytest.raises(DatabaseUnavailable, match="was replaced by another file"):
            lg.entries()

    # the restored file is as it was; a process opened now works on it
    with Ledger.open(env.settings, create=False) as lg:
        assert lg.size() == 2
        entry, _ = lg.append(env.envelope(3))
        assert entry.index == 2
