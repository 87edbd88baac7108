"""An auditor's copy of a SQLite ledger, taken with its -wal file, is read by `escrow
ledger verify|checkpoint|proof|consistency`, `escrow log` and `escrow show` as it is:
the entries in the -wal file are seen, and the copy (the database and its -wal file)
is left byte for byte as it was.  A command that appends still folds the -wal file into
the database when it ends."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("ledger.db*")}


@pytest.fixture
def copy_with_wal(tmp_path: Path) -> tuple[Path, int]:
    """A copy of a ledger whose last entries are only in its -wal file, and its size."""
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{tmp_path / 'live' / 'ledger.db'}")
    live = tmp_path / "live" / "ledger.db"
    reader = sqlite3.connect(live, isolation_level=None)
    try:
        # a snapshot held open: no checkpoint can copy what follows into the database
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ledger_entry").fetchone()
        with env.open() as lg:
            for n in range(5):
                lg.append(env.envelope(n))
            size = lg.size()
        copy = tmp_path / "copy"
        copy.mkdir()
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{live}{suffix}", copy / f"ledger.db{suffix}")
    finally:
        reader.close()
    assert (copy / "ledger.db-wal").stat().st_size > 0
    return copy, size


@pytest.mark.parametrize(
    "args",
    [
        ["ledger", "verify", "--json"],
        ["ledger", "checkpoint", "--json"],
        ["ledger", "proof", "3", "--json"],
        ["ledger", "consistency", "2", "--json"],
        ["log", "--json"],
        ["show", "5", "--json"],
    ],
)
def test_reading_a_copy_with_its_wal_file_changes_nothing(
    copy_with_wal: tuple[Path, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
    args: list[str],
) -> None:
    copy, size = copy_with_wal
    (tmp_path / "auditor").mkdir()
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "auditor"))
    monkeypatch.setenv("ESCROW_DB_URL", f"sqlite:///{copy / 'ledger.db'}")
    for var in ("ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    before = _digests(copy)

    r = cli(args)

    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    if args[:2] == ["ledger", "verify"]:
        assert doc["ok"] and doc["size"] == size
    elif args[:2] == ["ledger", "checkpoint"]:
        assert doc["size"] == size  # the entries only the -wal file holds are seen
    elif args[0] == "log":
        assert doc["size"] == size and doc["entries"][-1]["index"] == size - 1
    # the database, its -wal file (and the -shm file) are all still there, the first
    # two unchanged; the -shm file is SQLite's shared index of the -wal file, not data
    after = _digests(copy)
    assert set(after) == set(before)
    assert after["ledger.db"] == before["ledger.db"]
    assert after["ledger.db-wal"] == before["ledger.db-wal"]


def test_a_command_that_appends_folds_the_wal_file_into_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    db = tmp_path / "db" / "ledger.db"
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{db}")
    monkeypatch.setenv("ESCROW_HOME", str(env.home))
    monkeypatch.setenv("ESCROW_DB_URL", env.settings.db_url)
    lines = "".join(env.envelope(n).to_bytes().decode() + "\n" for n in range(3))
    assert cli(["log"]).exit_code == 0  # a read first, as a build's checks do

    r = cli(["post"], input=lines)

    assert r.exit_code == 0, r.stderr
    # the last connection to close is the writer's: it copies the -wal file into the
    # database and deletes it, so that a copy of the database file alone is whole
    assert not Path(f"{db}-wal").exists()
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as alone:
        assert alone.execute("SELECT count(*) FROM ledger_entry").fetchone()[0] == 4
