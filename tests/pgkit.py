"""A throwaway PostgreSQL database per test, on the cluster scripts/pg.sh starts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test cluster (ESCROW_TEST_PG_URL), dropped afterwards.

    A generator for fixtures to ``yield from``; fails (never skips) without the cluster.
    """
    base = os.environ.get("ESCROW_TEST_PG_URL")
    if not base:
        pytest.fail(
            "ESCROW_TEST_PG_URL is not set; run `export ESCROW_TEST_PG_URL=$(scripts/pg.sh)`."
        )
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    admin = base.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
