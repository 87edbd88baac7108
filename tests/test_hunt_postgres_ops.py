"""The ledger on PostgreSQL as operators run it: roles that may only read, schemas other
than ``public``, ``escrow init`` racing itself, connections killed under `escrow serve`,
and the messages of a database that refuses a connection.

Bugs this found: a password given as ``?password=…`` (a libpq parameter SQLAlchemy
passes on) was printed in every database error and in `escrow serve`'s banner; a role
or database set to ``default_transaction_read_only`` (or a standby) refused writes
with the bare "cannot execute INSERT in a read-only transaction" and no hint; and a
``search_path`` naming no schema that exists failed `escrow init` with PostgreSQL's
"no schema has been selected to create in" and nothing to say which setting it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "ledger"))
sys.path.insert(0, str(Path(__file__).parent / "server"))

from ledger_helpers import LedgerEnv  # noqa: E402
from pgkit import fresh_pg_database  # noqa: E402
from server_helpers import ROOT, free_port, make_tokens, manifest, start_serve, stop  # noqa: E402

pytestmark = pytest.mark.postgres

#: the commands an auditor runs, which only read
READING = [
    ["log"],
    ["show", "1"],
    ["verify", "1"],
    ["ledger", "verify"],
    ["ledger", "checkpoint"],
    ["ledger", "proof", "1"],
    ["ledger", "consistency", "2"],
    ["ledger", "verifier-key"],
    ["export", "--slsa", "1"],
    ["keys", "list"],
]


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _as(url: str, role: str, password: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=role, password=password).render_as_string(False)


def _escrow(home: Path, url: str, *args: str, stdin: str | None = None) -> Any:
    """``escrow ARGS`` as its own process, with only this ledger in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env.update(ESCROW_HOME=str(home), ESCROW_DB_URL=url, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "escrow.cli.main", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("escrow: error: "), stderr
    return lines[0]


def _state(url: str) -> list[Any]:
    """Every row of the ledger's tables, to tell that nothing changed."""
    import psycopg

    with psycopg.connect(_plain(url)) as conn:
        tables = ("ledger_meta", "ledger_entry", "ledger_key", "ledger_node", "ledger_term")
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables]


@pytest.fixture
def database() -> Iterator[str]:
    yield from fresh_pg_database("hunt_pg")


@pytest.fixture
def ledger(database: str, tmp_path: Path) -> LedgerEnv:
    """A ledger of a key event and three builds, made by the database's owner."""
    env = LedgerEnv.create(tmp_path / "home", database)
    with env.open() as lg:
        for n in range(3):
            lg.append(env.envelope(n))
    return env


@pytest.fixture
def role(database: str) -> Iterator[str]:
    """A new login role (no privilege of its own), dropped afterwards."""
    import psycopg

    name = f"hunt_pg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_plain(database), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        yield name
    finally:
        with psycopg.connect(_plain(database), autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{name}"')
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def _grant(database: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_plain(database), autocommit=True) as admin:
        admin.execute(sql)


# -- an auditor's role: GRANT SELECT only -----------------------------------------------


def test_an_auditor_role_with_select_only_runs_every_reading_command(
    ledger: LedgerEnv, database: str, role: str
) -> None:
    _grant(database, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    url = _as(database, role)
    before = _state(database)
    for args in READING:
        r = _escrow(ledger.home, url, *args)
        assert r.returncode == 0, (args, r.stderr)
    assert "OK: 4 entries" in _escrow(ledger.home, url, "ledger", "verify").stdout
    assert _state(database) == before


def test_an_auditor_role_appending_is_refused_naming_the_privilege(
    ledger: LedgerEnv, database: str, role: str
) -> None:
    _grant(database, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    before = _state(database)
    envelope = json.dumps(ledger.envelope(99).to_dict())
    r = _escrow(ledger.home, _as(database, role), "post", stdin=envelope)
    assert r.returncode == 3, r.stderr
    line = _one_error_line(r.stderr)
    assert "permission denied for table ledger_entry" in line
    assert f"The database role '{role}' needs SELECT, INSERT and UPDATE" in line
    assert _state(database) == before


def test_a_role_set_to_read_only_transactions_says_so_when_a_write_is_refused(
    ledger: LedgerEnv, database: str, role: str
) -> None:
    """``ALTER ROLE … SET default_transaction_read_only = on`` (or a standby): reads
    work, and a write names the setting instead of the bare driver sentence."""
    _grant(database, f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"')
    _grant(database, f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
    url = _as(database, role)
    before = _state(database)
    assert _escrow(ledger.home, url, "ledger", "verify").returncode == 0
    for args, stdin in (
        (["post"], json.dumps(ledger.envelope(99).to_dict())),
        (["keys", "revoke", "build", "--reason", "audit"], None),
    ):
        r = _escrow(ledger.home, url, *args, stdin=stdin)
        assert r.returncode == 3, r.stderr
        line = _one_error_line(r.stderr)
        assert "in a read-only transaction" in line
        assert f"The database role '{role}' may only read here" in line
        assert "default_transaction_read_only" in line
    assert _state(database) == before


# -- escrow init: privileges, schemas, two at once --------------------------------------


def test_init_by_a_role_without_create_on_the_schema_writes_nothing(
    database: str, role: str, tmp_path: Path
) -> None:
    # PostgreSQL 15 and later: only the database owner may create in public
    home = tmp_path / "home"
    r = _escrow(home, _as(database, role), "init")
    assert r.returncode == 3, r.stderr
    line = _one_error_line(r.stderr)
    assert "permission denied for schema public" in line
    assert f"The database role '{role}' needs USAGE (and CREATE" in line
    assert not home.exists()


def test_a_search_path_option_puts_the_ledger_in_that_schema(
    database: str, role: str, tmp_path: Path
) -> None:
    import psycopg

    _grant(database, f'CREATE SCHEMA audit AUTHORIZATION "{role}"')
    url = _as(database, role) + "?options=-csearch_path%3Daudit"
    home = tmp_path / "home"
    assert _escrow(home, url, "init").returncode == 0
    envelope = json.dumps(LedgerEnv.load(home, url).envelope(1).to_dict())
    assert _escrow(home, url, "post", stdin=envelope).returncode == 0
    r = _escrow(home, url, "ledger", "verify")
    assert r.returncode == 0 and "OK: 2 entries" in r.stdout, r.stderr
    with psycopg.connect(_plain(database)) as conn:
        where = conn.execute(
            "SELECT DISTINCT table_schema FROM information_schema.tables "
            "WHERE table_name LIKE 'ledger_%'"
        ).fetchall()
    assert where == [("audit",)]
    # the same database without the option holds no ledger, and says so
    r = _escrow(home, _as(database, role), "log")
    assert r.returncode == 3 and "holds no escrow ledger" in _one_error_line(r.stderr)


def test_a_search_path_naming_no_schema_is_named_at_init(database: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = database + "?options=-csearch_path%3Dnot_made_yet"
    r = _escrow(home, url, "init")
    assert r.returncode == 3, r.stderr
    line = _one_error_line(r.stderr)
    assert "no schema has been selected to create in" in line
    assert "search_path names no schema that exists" in line
    assert not home.exists()


def test_two_inits_at_once_bind_exactly_one_log_key(database: str, tmp_path: Path) -> None:
    import psycopg

    homes = [tmp_path / "a", tmp_path / "b"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "escrow.cli.main",
                "--home",
                str(h),
                "--db-url",
                database,
                "init",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for h in homes
    ]
    results = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 3], results
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    line = _one_error_line(results[loser][1])
    assert "does not belong to this ledger" in line
    assert not homes[loser].exists()  # nothing of the refused run is left
    with psycopg.connect(_plain(database)) as conn:
        pem = conn.execute("SELECT value FROM ledger_meta WHERE name = 'log_public_key'").fetchall()
    from escrow.signing.keys import PublicKey

    assert len(pem) == 1
    bound = PublicKey.from_pem(pem[0][0]).keyid
    assert bound == PublicKey.from_pem((homes[winner] / "keys" / "log.pub.pem").read_bytes()).keyid
    r = _escrow(homes[winner], database, "ledger", "verify")
    assert r.returncode == 0, r.stderr


# -- connections refused, passwords kept out of messages --------------------------------


def test_a_password_in_the_url_query_is_not_printed(database: str, tmp_path: Path) -> None:
    """libpq (and so SQLAlchemy's psycopg URL) takes the password as ``?password=``."""
    from escrow.config import redact_url

    secret = "hunt-pg-s3cret"
    gone = _as(database, "postgres").rsplit("/", 1)[0] + "/hunt_pg_no_such_database"
    for url in (f"{gone}?password={secret}", f"{gone}?sslmode=disable&password={secret}"):
        r = _escrow(tmp_path / "home", url, "log")
        assert r.returncode == 3, r.stderr
        line = _one_error_line(r.stderr)
        assert "does not exist" in line
        assert secret not in r.stderr + r.stdout
        assert "password=***" in line
        assert secret not in redact_url(url)  # what `escrow serve` and `init --json` print


def test_an_unknown_role_and_an_ssl_only_client_get_one_sentence(
    database: str, tmp_path: Path
) -> None:
    secret = "hunt-pg-s3cret"
    nobody = _as(database, f"hunt_pg_nobody_{uuid.uuid4().hex[:6]}", secret)
    r = _escrow(tmp_path / "home", nobody, "log")
    assert r.returncode == 3
    assert "does not exist" in _one_error_line(r.stderr) and secret not in r.stderr
    r = _escrow(tmp_path / "home", _as(database, "postgres", secret) + "?sslmode=require", "log")
    assert r.returncode == 3
    assert "SSL was required" in _one_error_line(r.stderr) and secret not in r.stderr


# -- connections killed under escrow serve ----------------------------------------------


def _terminate(database: str, *, waiting_only: bool = False) -> int:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(database).database
    with psycopg.connect(_plain(database), autocommit=True) as admin:
        extra = " AND wait_event_type = 'Lock'" if waiting_only else ""
        return int(
            admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = %s AND pid <> pg_backend_pid(){extra}",
                (name,),
            ).fetchone()[0]
        )


@pytest.mark.slow
def test_connections_killed_between_and_during_appends_lose_nothing(
    database: str, tmp_path: Path
) -> None:
    import psycopg

    from escrow.config import load_settings
    from escrow.ledger.store import PG_LOCK_KEY, Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    home = tmp_path / "home"
    assert _escrow(home, database, "init").returncode == 0
    settings = load_settings(home=home, db_url=database)
    tokens = make_tokens(settings)
    key = SigningKey.load(settings.key_path)
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_serve(home, database, port=port, log=log)
    acked: dict[str, int] = {}
    auth = {"Authorization": f"Bearer {tokens['pipeline']}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=120) as c:

            def post() -> httpx.Response:
                r = c.post("/v1/entries", json=sign_statement(manifest(), key).to_dict())
                if r.status_code == 201:
                    acked[r.json()["entry"]["leaf_hash"]] = r.json()["entry"]["index"]
                return r

            assert post().status_code == 201
            # between appends: every pooled connection is gone
            assert _terminate(database) >= 1
            for _ in range(3):
                r = post()
                assert r.status_code == 201, r.text
            # during one: it waits for the ledger's write lock when its backend is killed
            with psycopg.connect(_plain(database), autocommit=True) as holder:
                holder.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))
                answer: dict[str, httpx.Response] = {}
                t = threading.Thread(target=lambda: answer.setdefault("r", post()))
                t.start()
                deadline = time.monotonic() + 60
                while not _terminate(database, waiting_only=True):
                    assert time.monotonic() < deadline, "the append never waited for the lock"
                    time.sleep(0.05)
                t.join(timeout=120)
            during = answer["r"]
            assert during.status_code == 503, during.text
            assert during.json()["error"] == "unavailable"
            assert str(port) not in during.text and "postgres" not in during.text
            for _ in range(3):
                r = post()
                assert r.status_code == 201, r.text
            assert c.get("/v1/checkpoint").status_code == 200
    finally:
        stop(server)
    assert "Traceback" not in log.read_text()
    with Ledger.open(settings, create=False) as lg:
        assert lg.verify().ok
        assert lg.size() == 1 + len(acked)
        for leaf, index in acked.items():
            assert lg.get(index).leaf_hash == leaf
