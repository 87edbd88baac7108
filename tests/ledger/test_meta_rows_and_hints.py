"""Ledger fixes found in review (SQLite and PostgreSQL where it applies).

- a ledger whose ``ledger_meta`` row ``schema`` names a schema this escrow does not know
  (a newer escrow's, or an edited row) is refused before anything is written, exit 3;
- a statement or lock timeout and a refused privilege get their own hints, not "check
  ESCROW_DB_URL and that the database server is running";
- ``escrow ledger verify`` names the part of the ledger a problem without an entry
  concerns instead of saying "in the checkpoints" for all of them.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, q, raw_sql
from pgkit import fresh_pg_database

from escrow.errors import DatabaseUnavailable
from escrow.ledger import store
from escrow.ledger.models import Problem
from escrow.ledger.store import SCHEMA, Ledger, db_errors

SERVER_HINT = "database server is running"


def _fill(env: LedgerEnv, n: int, tag: str = "r12f") -> None:
    with env.open() as lg:
        for i in range(n):
            lg.append(env.envelope(i, tag=tag))


def _state(url: str) -> tuple[Any, ...]:
    """What opening must leave as it was: ledger_meta, the entries, which tables exist."""
    from sqlalchemy import inspect

    with raw_sql(url) as conn:
        meta = sorted(tuple(r) for r in q(conn, "SELECT name, value FROM ledger_meta").all())
        entries = q(conn, "SELECT count(*) FROM ledger_entry").scalar()
        tables = sorted(inspect(conn).get_table_names())
    return meta, entries, tables


# -- 1. an unknown schema ----------------------------------------------------------------


def test_an_unknown_schema_is_refused_before_anything_is_written(env: LedgerEnv) -> None:
    _fill(env, 2)
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "UPDATE ledger_meta SET value = '3' WHERE name = 'schema'")
        # as a newer schema might: a table of schema 2 gone (opening must not remake it)
        q(conn, "DROP TABLE ledger_term")
    before = _state(env.settings.db_url)
    with pytest.raises(DatabaseUnavailable) as caught:
        env.open()
    err = caught.value
    assert err.exit_code == 3
    assert "schema '3'" in err.message and f"schema {SCHEMA}" in err.message
    assert err.message.count(". ") == 0  # one sentence (and one of advice)
    assert _state(env.settings.db_url) == before
    assert "ledger_term" not in before[2]


def test_an_unknown_schema_is_refused_under_the_write_lock_too(
    env: LedgerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer escrow may change the schema between the first read and the write
    transaction: the check is made again before the tables are created."""
    _fill(env, 1)
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "UPDATE ledger_meta SET value = '3' WHERE name = 'schema'")
        q(conn, "DROP TABLE ledger_term")
    real = store._check_schema
    calls: list[str] = []

    def skip_first(url: str, meta: Any) -> None:
        calls.append(str(meta.get("schema")))
        if len(calls) > 1:
            real(url, meta)

    monkeypatch.setattr(store, "_check_schema", skip_first)
    before = _state(env.settings.db_url)
    with pytest.raises(DatabaseUnavailable, match="schema '3'"):
        env.open()
    assert calls == ["3", "3"]
    assert _state(env.settings.db_url) == before


def test_the_cli_refuses_an_unknown_schema_with_exit_3(cli_env: LedgerEnv, cli: Any) -> None:
    _fill(cli_env, 1)
    with raw_sql(cli_env.settings.db_url) as conn:
        q(conn, "UPDATE ledger_meta SET value = '3' WHERE name = 'schema'")
    before = _state(cli_env.settings.db_url)
    for args in (["ledger", "verify"], ["ledger", "checkpoint"]):
        r = cli(args)
        assert r.exit_code == 3, (args, r.stdout, r.stderr)
        assert "schema '3'" in r.stderr and "this escrow does not know" in r.stderr
        assert "Traceback" not in r.stderr
    assert _state(cli_env.settings.db_url) == before


def test_schema_2_still_opens_and_appends(env: LedgerEnv) -> None:
    _fill(env, 2)
    with env.open() as lg:
        lg.append(env.envelope(9, tag="after"))
        assert lg.size() == 4  # the key event, two, and one more
        assert lg.verify().ok


# -- 2. hints for a timeout and a refused privilege ---------------------------------------


def _hint_of(url: str, error: BaseException) -> DatabaseUnavailable:
    with pytest.raises(DatabaseUnavailable) as caught, db_errors(url):
        raise error
    return caught.value


def test_sqlite_busy_gets_the_other_writer_hint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    err = _hint_of(url, sqlite3.OperationalError("database is locked"))
    assert err.exit_code == 3
    assert "Another writer or a long transaction" in str(err.hint)
    assert "can be read and written" not in str(err.hint)
    # anything else keeps the old hint
    other = _hint_of(url, sqlite3.OperationalError("unable to open database file"))
    assert "can be read and written" in str(other.hint)


@pytest.fixture
def pg_env(tmp_path: Path) -> Iterator[LedgerEnv]:
    for url in fresh_pg_database("escrow_r12f"):
        yield LedgerEnv.create(tmp_path / "home", url)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.mark.postgres
def test_a_statement_timeout_gets_its_own_hint(pg_env: LedgerEnv) -> None:
    """An append waiting for another writer's lock past the role's statement_timeout."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = pg_env.settings.db_url
    with psycopg.connect(_plain(url), autocommit=True) as admin:
        admin.execute(
            f"ALTER DATABASE \"{make_url(url).database}\" SET statement_timeout = '200ms'"
        )
    holder = psycopg.connect(_plain(url))
    holder.execute(f"SELECT pg_advisory_xact_lock({store.PG_LOCK_KEY})")
    release = threading.Timer(5.0, holder.rollback)
    release.start()
    try:
        with pg_env.open() as lg, pytest.raises(DatabaseUnavailable) as caught:
            lg.append(pg_env.envelope(1, tag="timeout"))
    finally:
        release.cancel()
        holder.close()
    err = caught.value
    assert err.exit_code == 3
    assert "statement timeout" in err.message
    hint = str(err.hint)
    assert SERVER_HINT not in hint
    assert "Another writer or a long transaction" in hint and "statement_timeout" in hint


@pytest.mark.postgres
def test_a_lock_timeout_gets_its_own_hint(pg_env: LedgerEnv) -> None:
    """A read waiting for a table another transaction locked, past the role's lock_timeout."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = pg_env.settings.db_url
    with psycopg.connect(_plain(url), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{make_url(url).database}\" SET lock_timeout = '100ms'")
    with pg_env.open() as lg:
        holder = psycopg.connect(_plain(url))
        try:
            holder.execute("LOCK TABLE ledger_entry IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DatabaseUnavailable) as caught:
                lg.size()
        finally:
            holder.close()
    err = caught.value
    assert err.exit_code == 3 and "lock timeout" in err.message
    assert SERVER_HINT not in str(err.hint)
    assert "Another writer or a long transaction" in str(err.hint)
    assert "lock_timeout" in str(err.hint) and "statement_timeout" not in str(err.hint)


@pytest.fixture
def bare_role(pg_env: LedgerEnv) -> Iterator[tuple[LedgerEnv, str]]:
    """A login role of the cluster that may connect to ``pg_env``'s database but holds no
    privilege on the ledger's tables; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(pg_env.settings.db_url)
    role = f"r12f_{uuid.uuid4().hex[:10]}"
    admin_url = _plain(pg_env.settings.db_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CONNECT ON DATABASE "{url.database}" TO "{role}"')
    try:
        yield pg_env, url.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_permission_denied_names_the_role_and_privilege(
    bare_role: tuple[LedgerEnv, str],
) -> None:
    env, url = bare_role
    role = url.split("://", 1)[1].split("@", 1)[0]
    with pytest.raises(DatabaseUnavailable) as caught:
        Ledger.open(env.settings._replace(db_url=url), create=False)
    err = caught.value
    assert err.exit_code == 3
    assert "permission denied for table ledger_" in err.message
    hint = str(err.hint)
    assert SERVER_HINT not in hint
    assert f"The database role '{role}' needs SELECT, INSERT and UPDATE on table ledger_" in hint


def test_permission_denied_hint_without_a_server(tmp_path: Path) -> None:
    """The hint is taken from the driver's message too (errors without an SQLSTATE)."""
    import sqlalchemy.exc

    url = "postgresql+psycopg://auditor@db.example:5432/escrow"

    class Denied(Exception):
        sqlstate = "42501"

    err = _hint_of(
        url,
        sqlalchemy.exc.ProgrammingError(
            "SELECT", {}, Denied("permission denied for schema public")
        ),
    )
    assert "The database role 'auditor' needs USAGE" in str(err.hint)
    assert "on schema public:" in str(err.hint)
    err = _hint_of(
        url,
        sqlalchemy.exc.OperationalError(
            "connect",
            {},
            Exception('connection failed: FATAL:  permission denied for database "escrow"'),
        ),
    )
    assert "needs CONNECT on database" in str(err.hint) and SERVER_HINT not in str(err.hint)
    timeout = _hint_of(
        url,
        sqlalchemy.exc.OperationalError(
            "SELECT", {}, Exception("canceling statement due to statement timeout")
        ),
    )
    assert "statement_timeout" in str(timeout.hint) and SERVER_HINT not in str(timeout.hint)
    down = _hint_of(
        url, sqlalchemy.exc.OperationalError("connect", {}, Exception("connection refused"))
    )
    assert SERVER_HINT in str(down.hint)


# -- 3. where a problem without an entry is -----------------------------------------------


def test_problems_without_an_entry_name_their_part() -> None:
    assert Problem(4, "edited", "x").where == "at entry 4"
    assert Problem(None, "checkpoint-signature", "x").where == "in its checkpoints"
    assert Problem(None, "index", "x").where == "in its query index"
    assert Problem(None, "key-table", "x").where == "in its key table"
    assert Problem(None, "empty", "x").where == ""


def test_ledger_verify_names_a_missing_meta_row_without_checkpoints(
    cli_env: LedgerEnv, cli: Any
) -> None:
    _fill(cli_env, 2)
    with raw_sql(cli_env.settings.db_url) as conn:
        q(conn, "DELETE FROM ledger_meta WHERE name = 'indexed'")
    r = cli(["ledger", "verify"])
    assert r.exit_code == 1, r.stderr
    assert "checkpoints" not in r.stderr
    assert (
        "The ledger failed verification in its query index: index "
        "(The ledger's row 'indexed' of ledger_meta is missing.)"
    ) in r.stderr


def test_ledger_verify_of_a_missing_key_version_row(cli_env: LedgerEnv, cli: Any) -> None:
    _fill(cli_env, 1)
    with raw_sql(cli_env.settings.db_url) as conn:
        q(conn, "DELETE FROM ledger_meta WHERE name = 'key_version'")
    r = cli(["ledger", "verify"])
    assert r.exit_code == 1, r.stderr
    assert "checkpoints" not in r.stderr
    assert "failed verification in its key table: key-table" in r.stderr
