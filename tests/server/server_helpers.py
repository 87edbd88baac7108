"""Helpers of the server tests: envelopes, tokens, ports, `escrow serve` processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ROOT = Path(__file__).resolve().parent.parent.parent
SMALL_LIMIT = 256 * 1024


def manifest(project: str = "example", build_id: str | None = None) -> dict[str, Any]:
    """The example build manifest, made unique by ``build_id``."""
    st: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    st["predicate"]["build"]["project"] = project
    st["predicate"]["build"]["id"] = build_id or str(uuid.uuid4())
    return st


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as s:
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    home: Path
    settings: Any
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def client(self, role: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth(role) if role else {}, timeout=60)

    def ledger(self) -> Any:
        from escrow.ledger.store import Ledger

        return Ledger.open(self.settings)

    def build_key(self) -> Any:
        from escrow.signing.keys import SigningKey

        return SigningKey.load(self.settings.key_path)

    def envelope(self, statement: dict[str, Any] | None = None) -> dict[str, Any]:
        from escrow.signing.dsse import sign_statement

        result: dict[str, Any] = sign_statement(statement or manifest(), self.build_key()).to_dict()
        return result

    def envelopes_file(self, path: Path, n: int) -> Path:
        """``n`` envelopes of distinct builds, signed by the build key, as JSON Lines."""
        from escrow.signing.dsse import sign_statement

        key = self.build_key()
        lines = [json.dumps(sign_statement(manifest(), key).to_dict()) for _ in range(n)]
        path.write_text("\n".join(lines) + "\n")
        return path


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run the ASGI ``app`` with uvicorn in a thread, on a free loopback port; its URL."""
    import threading

    import uvicorn

    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("The test server did not start.")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def make_tokens(settings: Any) -> dict[str, str]:
    from escrow.ledger.store import make_engine
    from escrow.server.auth import Role, TokenStore

    engine = make_engine(settings.db_url)
    TokenStore.create_tables(engine)
    store = TokenStore(engine)
    out = {role.value: store.create(f"test-{role.value}", role)[0] for role in Role}
    engine.dispose()
    return out


def start_serve(
    home: Path, db_url: str, *, port: int, log: Path, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """``escrow serve`` as a real process; returns once /healthz answers."""
    env = {**os.environ, "ESCROW_HOME": str(home), "ESCROW_DB_URL": db_url}
    env.pop("ESCROW_SERVER", None)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "escrow.cli.main", "serve", "--port", str(port), *(extra or [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"escrow serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"escrow serve did not become ready: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def one_build_ledger(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    project: str,
    *,
    pg_name: str,
) -> Iterator[Any]:
    """The settings of a fresh, initialised ledger holding one signed build of ``project``:
    the ``escrow_home`` fixture's SQLite ledger when ``request.param`` is ``"sqlite"``, else
    a fresh PostgreSQL database ``pg_name…`` (its ESCROW_HOME and ESCROW_DB_URL set for the
    test), dropped afterwards."""

    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    pg: Iterator[str] | None = None
    if request.param == "sqlite":
        request.getfixturevalue("escrow_home")
    else:
        from pgkit import fresh_pg_database

        pg = fresh_pg_database(pg_name)
        url = next(pg)
        home = tmp_path / "pg-home"
        for var in ("ESCROW_HOME", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_KEY"):
            monkeypatch.delenv(var, raising=False)
        cmd = [sys.executable, "-m", "escrow.cli.main", "--home", str(home), "--db-url", url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
        r = subprocess.run([*cmd, "init"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        monkeypatch.setenv("ESCROW_HOME", str(home))
        monkeypatch.setenv("ESCROW_DB_URL", url)
    settings = load_settings()
    with Ledger.open(settings) as ledger:
        ledger.append(sign_statement(manifest(project), SigningKey.load(settings.key_path)))
    try:
        yield settings
    finally:
        if pg is not None:
            next(pg, None)


def wait_for(what: str, check: Any, timeout: float = 240) -> Any:
    """What ``check()`` gives once it gives something true, asked every 50 ms; an
    assertion error naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def finished(auditor: httpx.Client, job_id: str) -> dict[str, Any]:
    """The pack job's document once it has ended (succeeded or failed)."""

    def done() -> dict[str, Any] | None:
        doc: dict[str, Any] = auditor.get(f"/v1/packs/{job_id}").json()
        return doc if doc["status"] not in ("queued", "running") else None

    found: dict[str, Any] = wait_for(f"the job {job_id} to end", done)
    return found


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def job_row(engine: Any, job_id: str) -> Any:
    """The pack job's row as stored (times in UTC)."""
    from sqlmodel import Session

    from escrow.server.packs import PackJob

    with Session(engine) as s:
        found = s.get(PackJob, job_id)
        assert found is not None
        s.expunge(found)
    for name in ("started_at", "finished_at", "heartbeat_at"):
        setattr(found, name, _utc(getattr(found, name)))
    return found
