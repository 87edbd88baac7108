"""Ledger test fixtures: every ledger test runs on SQLite and on PostgreSQL.

The PostgreSQL parameter needs ``ESCROW_TEST_PG_URL`` (``scripts/pg.sh`` prints it);
without it those tests FAIL, never skip.  Each test gets a fresh database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_helpers import LedgerEnv
from pgkit import fresh_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger database URL (SQLite file or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'ledger.db'}"
        return
    yield from fresh_pg_database("escrow_test")


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> LedgerEnv:
    """An ESCROW_HOME with a log key and a registered build key, on ``db_url``."""
    return LedgerEnv.create(tmp_path / "home", db_url)


@pytest.fixture
def cli_env(env: LedgerEnv, monkeypatch: pytest.MonkeyPatch) -> LedgerEnv:
    """``env`` as the CLI's ledger: ESCROW_HOME and ESCROW_DB_URL set, no server or key override."""
    monkeypatch.setenv("ESCROW_HOME", str(env.home))
    monkeypatch.setenv("ESCROW_DB_URL", env.settings.db_url)
    for var in ("ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    return env
