"""Token names stay unique among active tokens when servers share a PostgreSQL ledger.

`POST /v1/tokens` (and `escrow tokens create`) checked that no active token had the name,
then inserted it; on SQLite `BEGIN IMMEDIATE` made that one step, on PostgreSQL it was
not, so two admins (or one script retrying through two servers) creating the same name
at once both got a 201. `escrow tokens revoke NAME` then revoked one of them, said the
name was revoked, and left the other active.  Now creation is serialised by an advisory
lock, and a name several active tokens already share is refused by `tokens revoke`
(nothing revoked), listing their IDs.

A name refused for what it is (blank, control characters) is a 422 whose pointer names
``/name``, as every other field's error names its field.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ROOT, LiveServer, free_port, make_tokens, start_serve, stop


@pytest.fixture
def pg_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from pgkit import fresh_pg_database

    from escrow.config import load_settings

    pg = fresh_pg_database("escrow_hunt_tokens")
    url = next(pg)
    home = tmp_path / "home"
    for var in ("ESCROW_HOME", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_KEY"):
        monkeypatch.delenv(var, raising=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    cmd = [sys.executable, "-m", "escrow.cli.main", "--home", str(home), "--db-url", url]
    r = subprocess.run([*cmd, "init"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_DB_URL", url)
    try:
        yield load_settings()
    finally:
        next(pg, None)


def _psycopg_url(settings: Any) -> str:
    return str(settings.db_url).replace("postgresql+psycopg://", "postgresql://", 1)


def _waiting_locks(conn: Any) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return int(row[0])


@pytest.mark.postgres
@pytest.mark.slow
def test_two_servers_creating_one_token_name_at_once_make_one_token(
    pg_settings: Any, tmp_path: Path
) -> None:
    import psycopg

    tokens = make_tokens(pg_settings)
    ports = [free_port(), free_port()]
    servers = [
        start_serve(pg_settings.home, pg_settings.db_url, port=p, log=tmp_path / f"s{i}.log")
        for i, p in enumerate(ports)
    ]
    answers: list[httpx.Response] = []
    try:
        # Hold back every insert into the token table (reads go on), so that both
        # requests have made their check before either inserts: the interleaving two
        # servers meet by chance, every time.
        with psycopg.connect(_psycopg_url(pg_settings)) as holder:
            holder.execute("LOCK TABLE server_tokens IN SHARE MODE")

            def create(port: int) -> None:
                answers.append(
                    httpx.post(
                        f"http://127.0.0.1:{port}/v1/tokens",
                        json={"name": "ci-nightly", "role": "pipeline"},
                        headers={"Authorization": f"Bearer {tokens['admin']}"},
                        timeout=60,
                    )
                )

            threads = [threading.Thread(target=create, args=(p,)) for p in ports]
            for t in threads:
                t.start()
            with psycopg.connect(_psycopg_url(pg_settings), autocommit=True) as watcher:
                deadline = time.monotonic() + 30
                while _waiting_locks(watcher) < 2:  # both requests wait on a lock
                    assert time.monotonic() < deadline, "the two requests never waited"
                    assert all(t.is_alive() for t in threads), [a.text for a in answers]
                    time.sleep(0.05)
            holder.rollback()  # let them go
        for t in threads:
            t.join(60)
    finally:
        for s in servers:
            stop(s)

    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409).json()
    assert refused["message"].startswith("An active token named 'ci-nightly' already exists")
    from escrow.ledger.store import make_engine
    from escrow.server.auth import TokenStore

    engine = make_engine(pg_settings.db_url)
    try:
        active = TokenStore(engine).list(include_revoked=False)
        named = [t for t in active if t.name == "ci-nightly"]
    finally:
        engine.dispose()
    assert len(named) == 1, named


@pytest.mark.postgres
def test_revoking_a_name_two_active_tokens_share_revokes_nothing_and_lists_them(
    pg_settings: Any, cli: Any
) -> None:
    """Databases where the race above already made two active tokens of one name."""
    import psycopg

    from escrow.ledger.store import make_engine
    from escrow.server.auth import TokenStore

    make_tokens(pg_settings)  # the table
    now = datetime.now(UTC)
    with psycopg.connect(_psycopg_url(pg_settings)) as conn:
        for tid in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
            conn.execute(
                "INSERT INTO server_tokens (id, token_hash, name, role, created_at) "
                "VALUES (%s, %s, 'ci-nightly', 'pipeline', %s)",
                (tid, tid * 5 + "aaaa", now),
            )
    r = cli(["tokens", "revoke", "ci-nightly"])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip() == (
        "escrow: error: 2 active tokens are named 'ci-nightly' (aaaaaaaaaaaa, bbbbbbbbbbbb); "
        "nothing was revoked. Revoke each by its ID."
    )
    engine = make_engine(pg_settings.db_url)
    try:
        active = {t.id for t in TokenStore(engine).list(include_revoked=False)}
    finally:
        engine.dispose()
    assert {"aaaaaaaaaaaa", "bbbbbbbbbbbb"} <= active
    r = cli(["tokens", "revoke", "aaaaaaaaaaaa"])  # by its ID, as the hint says
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("name", ["   ", "ci\u202enightly", "\u200b"])
def test_a_refused_token_name_points_at_the_name(live_server: LiveServer, name: str) -> None:
    with live_server.client("admin") as admin:
        r = admin.post("/v1/tokens", json={"name": name, "role": "pipeline"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["location"], body["pointer"]) == ("body", "/name"), body
    assert body["message"].startswith("A token name must be 1 to 200 printable characters.")


def test_through_a_server_a_shared_name_revokes_nothing_either(
    live_server: LiveServer, client_env: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client picked the first active token of the name and revoked it."""
    from escrow.ledger.store import make_engine
    from escrow.server.auth import TokenStore

    engine = make_engine(live_server.settings.db_url)
    try:
        with engine.begin() as conn:
            for tid in ("cccccccccccc", "dddddddddddd"):
                conn.exec_driver_sql(
                    "INSERT INTO server_tokens (id, token_hash, name, role, created_at) "
                    "VALUES (?, ?, 'shared-name', 'pipeline', ?)",
                    (tid, tid * 5 + "cccc", datetime.now(UTC)),
                )
        monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["admin"])
        r = cli(["tokens", "revoke", "shared-name"])
        assert r.exit_code == 2, r.stderr
        assert "2 active tokens are named 'shared-name'" in r.stderr
        assert "(cccccccccccc, dddddddddddd); nothing was revoked" in r.stderr
        active = {t.id for t in TokenStore(engine).list(include_revoked=False)}
        assert {"cccccccccccc", "dddddddddddd"} <= active
    finally:
        engine.dispose()
