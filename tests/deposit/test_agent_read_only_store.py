"""A deposit store on a read-only mount (an archive copy, a WORM volume): `escrow deposit
stats` and the dry run of `escrow gc` only read it, yet failed with exit 3 ("Cannot open the
deposit store: Read-only file system") because they took the store's lock, which opens
`.lock` for writing.  They now read a store that cannot be written without it (nothing can
change it); `gc --apply` is still refused."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from escrow.deposit.store import FileDepositStore
from tests.conftest import run_cli


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store whose folder behaves as on a read-only file system (root ignores modes)."""
    root = tmp_path / "store"
    FileDepositStore(root).put(b"an unreferenced blob")
    real_open, real_access = os.open, os.access

    def ro_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    def ro_access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if str(path).startswith(str(root)) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "access", ro_access)
    return root


def test_stats_and_a_dry_run_read_a_read_only_store(escrow_home: Path, read_only: Path) -> None:
    r = run_cli(["deposit", "stats", "--deposit-store", str(read_only), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["unreferenced"]["blobs"] == 1

    r = run_cli(["gc", "--deposit-store", str(read_only), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["reclaimBlobs"] == 1

    r = run_cli(["gc", "--apply", "--deposit-store", str(read_only)])
    assert r.exit_code == 3
    assert f"Cannot open the deposit store {read_only}: Read-only file system." in r.stderr
    assert FileDepositStore(read_only).has(next(iter(FileDepositStore(read_only))))
