"""What an unavailable ledger database's error tells the user to check."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from escrow.errors import DatabaseUnavailable
from escrow.ledger.store import db_errors


def _hint(url: str) -> str:
    with pytest.raises(DatabaseUnavailable) as caught, db_errors(url):
        raise sqlite3.OperationalError("unable to open database file")
    assert caught.value.exit_code == 3
    return str(caught.value.hint)


def test_a_read_only_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a ledger in a read-only folder (a read-only mount) could not even be
    read, and the hint sent the user to a database server SQLite does not have."""
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode)
    )  # as root, chmod alone does not make a folder read-only
    hint = _hint(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert f"The folder {tmp_path} is read-only" in hint and "-wal" in hint
    assert "server" not in hint


def test_sqlite_and_postgresql_hints(tmp_path: Path) -> None:
    assert "server" not in _hint(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert "server" not in _hint(f"sqlite:///{tmp_path / 'ledger.db'}?timeout=5")
    assert "database server is running" in _hint("postgresql+psycopg://u@127.0.0.1:1/db")
