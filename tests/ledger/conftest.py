"""Ledger test fixtures: every ledger test runs on SQLite and on PostgreSQL.

The PostgreSQL parameter needs ``ESCROW_TEST_PG_URL`` (``scripts/pg.sh`` prints it);
without it those tests FAIL, never skip.  Each test gets a fresh database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_helpers import LedgerEnv


def _admin_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger database URL (SQLite file or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'ledger.db'}"
        return
    base = os.environ.get("ESCROW_TEST_PG_URL")
    if not base:
        pytest.fail(
            "ESCROW_TEST_PG_URL is not set; run `export ESCROW_TEST_PG_URL=$(scripts/pg.sh)`."
        )
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"escrow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> LedgerEnv:
    """An ESCROW_HOME with a log key and a registered build key, on ``db_url``."""
    return LedgerEnv.create(tmp_path / "home", db_url)
