"""A statement whose stored text holds U+0000 (a project named "a\\u0000b") is one
rejected envelope on both backends.

PostgreSQL text cannot hold NUL: on it such an envelope used to fail its transaction as
a database error, so `escrow post` stopped there with exit 3 ("the ledger database
failed"), the good envelopes after it never appended, and the server answered 503
"try again shortly" (its clients retrying for 30 s), while SQLite stored it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, manifest, raw_sign

from escrow.errors import SchemaError


def _nul_envelope(env: LedgerEnv, n: int) -> bytes:
    return raw_sign(manifest(n, project="a\x00b", tag="r10nul"), env.build_key).to_bytes()


def test_post_rejects_the_nul_envelope_alone(cli_env: LedgerEnv, cli: Any) -> None:
    good1 = cli_env.envelope(1, tag="r10nul").to_bytes()
    good2 = cli_env.envelope(3, tag="r10nul").to_bytes()
    text = b"\n".join([good1, _nul_envelope(cli_env, 2), good2]).decode() + "\n"
    r = cli(["post", "--json"], input=text)
    assert r.exit_code == 1, r.stdout + r.stderr
    doc = r.json()
    assert "stopped" not in doc
    assert [res["status"] for res in doc["results"]] == ["appended", "rejected", "appended"]
    error = doc["results"][1]["error"]
    assert "NUL" in error and "project" in error
    assert "database" not in error
    assert "escrow: error: 1 of 3 envelopes was rejected." in r.stderr
    assert cli(["ledger", "verify"]).exit_code == 0


def test_append_refuses_a_nul_project_as_a_schema_error(env: LedgerEnv) -> None:
    with env.open() as lg:
        with pytest.raises(SchemaError) as info:
            lg.append(_nul_envelope(env, 4))
        assert info.value.pointer == "/predicate/build/project"
        assert lg.size() == 1  # the key event only
        entry, created = lg.append(env.envelope(5, tag="r10nul"))  # the ledger still works
        assert created and entry.index == 1


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn from a thread on a free loopback port; its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_the_server_answers_422_not_503(env: LedgerEnv) -> None:
    import httpx

    from escrow.ledger.store import make_engine
    from escrow.server.app import ServerConfig, create_app
    from escrow.server.auth import Role, TokenStore

    engine = make_engine(env.settings.db_url)
    TokenStore.create_tables(engine)
    token = TokenStore(engine).create("r10nul", Role("pipeline"))[0]
    engine.dispose()
    app = create_app(ServerConfig(env.settings, pack_workers=0))
    with _serving(app) as url:
        r = httpx.post(
            f"{url}/v1/entries",
            content=_nul_envelope(env, 6),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30,
        )
    assert r.status_code == 422, r.text
    body = json.loads(r.text)
    assert "NUL" in body["message"]
    assert body["pointer"] == "/predicate/build/project"
