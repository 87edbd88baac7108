"""A shared ledger on PostgreSQL (and SQLite alike where it applies).

- a database whose ledger has no stored log key binds to the first home that opens it:
  a second home with another log key is refused, not let sign over the first's entries;
- a missing ``origin`` row of ``ledger_meta`` is not made up anew for a ledger that holds
  entries, and an origin changed by hand is named by ``ledger verify`` even after
  entries were appended under it;
- missing ``indexed``/``key_version`` rows are one named problem, not a traceback on
  ``post`` nor an "index" problem on every entry;
- a password holding an unencoded ``@`` is refused without printing any of it;
- PostgreSQL write transactions wait for the advisory lock whatever the role's
  ``lock_timeout``, and commit with ``synchronous_commit`` on (acknowledged appends and
  their signed checkpoints survive a server crash).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, q, raw_sql
from pgkit import fresh_pg_database

from escrow.config import load_settings
from escrow.errors import InputError, KeyLocked, LedgerTamperError
from escrow.ledger import store
from escrow.ledger.store import Ledger


def _fill(env: LedgerEnv, n: int, tag: str = "r12") -> None:
    with env.open() as lg:
        for i in range(n):
            lg.append(env.envelope(i, tag=tag))


# -- the log key of a ledger made without one ------------------------------------------


def test_a_second_log_key_is_refused_where_none_was_stored(db_url: str, tmp_path: Path) -> None:
    # made by a process without key files: no log key recorded yet
    Ledger.open(load_settings(home=tmp_path / "bare")._replace(db_url=db_url)).close()
    first = LedgerEnv.create(tmp_path / "a", db_url)  # appends its key event
    with pytest.raises(KeyLocked, match="does not belong to this ledger"):
        LedgerEnv.create(tmp_path / "b", db_url)
    with first.open() as lg:
        report = lg.verify()
    assert report.ok, report.problems


# -- the origin -------------------------------------------------------------------------


def test_a_deleted_origin_row_is_not_made_up_anew(env: LedgerEnv) -> None:
    _fill(env, 3)
    with env.open() as lg:
        origin = lg.origin
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "DELETE FROM ledger_meta WHERE name = 'origin'")
    with pytest.raises(LedgerTamperError, match="origin") as caught:
        env.open()
    assert origin in (caught.value.hint or "")
    with raw_sql(env.settings.db_url) as conn:
        rows = q(conn, "SELECT value FROM ledger_meta WHERE name = 'origin'").all()
    assert rows == []  # nothing was written


def test_an_origin_changed_by_hand_is_named_after_appends(env: LedgerEnv) -> None:
    _fill(env, 3)
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "UPDATE ledger_meta SET value = 'evil.example/log' WHERE name = 'origin'")
    with env.open() as lg:
        lg.append(env.envelope(99, tag="after"))  # signed under the new origin
        report = lg.verify()
    assert not report.ok
    first = report.first
    assert first is not None
    assert (first.index, first.kind) == (0, "checkpoint-signature"), report.problems
    assert "evil.example/log" in first.message


# -- missing ledger_meta rows -------------------------------------------------------------


def test_a_missing_indexed_row_is_named_not_a_traceback(env: LedgerEnv) -> None:
    _fill(env, 3)
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "DELETE FROM ledger_meta WHERE name = 'indexed'")
    with env.open() as lg:
        with pytest.raises(LedgerTamperError, match="'indexed'"):
            lg.append(env.envelope(50, tag="more"))
        with pytest.raises(LedgerTamperError, match="'indexed'"):
            lg.inclusion_proof(1)
        report = lg.verify()
    assert [(p.index, p.kind) for p in report.problems] == [(None, "index")], report.problems


def test_a_missing_key_version_row_is_named(env: LedgerEnv) -> None:
    _fill(env, 2)
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "DELETE FROM ledger_meta WHERE name = 'key_version'")
    with env.open() as lg:
        with pytest.raises(LedgerTamperError, match="'key_version'"):
            lg.append(env.envelope(50, tag="more"))
        report = lg.verify()
    assert [(p.index, p.kind) for p in report.problems] == [(None, "key-table")]


# -- an unencoded @ in the password ---------------------------------------------------------


def test_an_unencoded_at_in_the_password_is_refused_unprinted(tmp_path: Path) -> None:
    url = "postgresql+psycopg://escrow:Wr0ng@S3cret@127.0.0.1:5432/db"
    assert "S3cret" not in store.redacted(url)
    with pytest.raises(InputError) as caught:
        Ledger.open(load_settings(home=tmp_path / "h")._replace(db_url=url), create=False)
    shown = caught.value.message + (caught.value.hint or "")
    assert "unencoded @" in shown
    assert "S3cret" not in shown and "Wr0ng" not in shown


# -- PostgreSQL write transactions -------------------------------------------------------------


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[LedgerEnv]:
    for url in fresh_pg_database("escrow_r12"):
        yield LedgerEnv.create(tmp_path / "home", url)


@pytest.mark.postgres
def test_appends_wait_for_the_lock_past_a_low_lock_timeout(pg_env: LedgerEnv) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = pg_env.settings.db_url
    name = make_url(url).database
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '5ms'")
    holder = psycopg.connect(plain)
    holder.execute(f"SELECT pg_advisory_xact_lock({store.PG_LOCK_KEY})")
    release = threading.Timer(0.5, holder.rollback)
    release.start()
    try:
        with pg_env.open() as lg:  # a new connection: the database's lock_timeout applies
            entry, created = lg.append(pg_env.envelope(1, tag="wait"))
        assert created and entry.index == 1
    finally:
        release.join()
        holder.close()


@pytest.mark.postgres
def test_appends_commit_with_synchronous_commit_on(
    pg_env: LedgerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = pg_env.settings.db_url
    name = make_url(url).database
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    seen: list[str] = []
    real = store.run_sql

    def spy(conn: Any, sql: str, params: Any, *, pg: bool) -> Any:
        if sql == store._INSERT_ENTRY_SQL:
            seen.append(conn.exec_driver_sql("SHOW synchronous_commit").scalar())
        return real(conn, sql, params, pg=pg)

    monkeypatch.setattr(store, "run_sql", spy)
    with pg_env.open() as lg:
        lg.append(pg_env.envelope(1, tag="durable"))
        list(lg.append_many([pg_env.envelope(i, tag="durable-many") for i in range(3)]))
        with lg._read() as conn:  # noqa: SLF001 - outside a write: the database's setting
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    assert seen == ["on"] * 4
