"""A SQLite ledger on a full disk says the disk is full, not "Check ESCROW_DB_URL".

Regression: with ESCROW_HOME on a full file system, `escrow record` and `escrow log` said
"The ledger database … is unavailable: disk I/O error. Check ESCROW_DB_URL and that the
database file can be read and written." — SQLite reports the full disk as an I/O error
when it cannot grow its -wal or -shm file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from escrow.ledger.store import _db_hint
from tests.conftest import run_cli


@pytest.fixture
def full_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:  # never a silent skip: the suite's set-up runs as root
        pytest.fail("mounting a tmpfs needs root; run the suite as root (scripts/test.sh)")
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(home)], check=True)
    try:
        monkeypatch.setenv("ESCROW_HOME", str(home))
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            monkeypatch.delenv(var, raising=False)
        assert run_cli(["init"]).exit_code == 0
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def _fill(folder: Path) -> None:
    with open(folder / ".fill", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_is_named_and_the_entry_is_not_half_kept(
    full_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"  # an empty folder to record in: no file list to store
    work.mkdir()
    monkeypatch.chdir(work)
    _fill(full_home)
    r = run_cli(["record", "--", "true"])
    assert r.exit_code == 3, r.stderr
    assert f"The disk holding {full_home} is full" in r.stderr, r.stderr
    assert "Check ESCROW_DB_URL" not in r.stderr
    assert "could not be kept either" in r.stderr  # on the same full disk
    kept = full_home / "unrecorded"
    assert not kept.exists() or not any(kept.iterdir())  # no partial file
    (full_home / ".fill").unlink()  # space again: the ledger is whole and readable
    assert run_cli(["ledger", "verify"]).exit_code == 0


def test_a_postgresql_disk_full_error_is_named() -> None:
    class DiskFull(Exception):
        sqlstate = "53100"

    hint = _db_hint(
        "postgresql+psycopg://escrow@db/ledger",
        DiskFull('could not extend file "base/16384/2619": No space left on device'),
    )
    assert hint.startswith("The database server's disk is full")
    # a SQLite URL never gets the server's sentence
    assert "server" not in _db_hint("sqlite:////nowhere/x/ledger.db", DiskFull("disk I/O error"))
