"""`escrow serve` on PostgreSQL while the database goes away and comes back.

A cluster of the test's own (scripts/pg.sh on a free port) is stopped under a running
`escrow serve --workers 2`: the server answers 503 (no database address in it), logs
one line per failure and no traceback, survives a worker dying meanwhile (Uvicorn
starts a new one, which must not fail its start-up and stop the whole server), and
serves again once the database is back, having lost nothing it acknowledged.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ROOT, free_port, make_tokens, manifest, start_serve, stop

PG_SH = ROOT / "scripts" / "pg.sh"


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL is not installed here; scripts/test.sh installs it.")
    return found[-1]


class Cluster:
    """A throwaway PostgreSQL cluster (scripts/pg.sh) that the test may stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="/tmp/r9pg-")  # short: the socket lives here
        self.env = {**os.environ, "ESCROW_PG_PORT": str(self.port), "ESCROW_PG_DIR": self.dir}
        self.url = self.start()

    def start(self) -> str:
        r = subprocess.run(["bash", str(PG_SH)], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"cannot start a PostgreSQL cluster: {r.stderr[-500:]}")
        return r.stdout.strip()

    def stop(self) -> None:
        cmd = [str(_pg_bin()), "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, capture_output=True, check=True)

    def remove(self) -> None:
        subprocess.run(["bash", str(PG_SH), "stop"], env=self.env, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    _pg_bin()
    c = Cluster()
    try:
        yield c
    finally:
        c.remove()


def _init(home: Path, url: str) -> Any:
    from escrow.config import load_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    r = subprocess.run(
        [sys.executable, "-m", "escrow.cli.main", "--home", str(home), "--db-url", url, "init"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    return load_settings(home=home, db_url=url)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _workers(pid: int) -> set[int]:
    """The Uvicorn worker processes of the server ``pid`` (not its resource tracker)."""
    r = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    return {int(p) for p in r.stdout.split()}


@pytest.mark.postgres
@pytest.mark.slow
def test_a_database_outage_with_a_worker_dying_leaves_the_server_serving(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    for var in ("ESCROW_HOME", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_KEY"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    settings = _init(home, cluster.url)
    tokens = make_tokens(settings)
    key = SigningKey.load(settings.key_path)
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_serve(home, cluster.url, port=port, log=log, extra=["--workers", "2"])
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tokens['pipeline']}"}
    acked: dict[str, int] = {}
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
            for _ in range(5):
                r = c.post("/v1/entries", json=sign_statement(manifest(), key).to_dict())
                assert r.status_code == 201, r.text
                acked[r.json()["entry"]["leaf_hash"]] = r.json()["entry"]["index"]

            cluster.stop()
            for path in ("/healthz", "/v1/checkpoint"):
                r = c.get(path)
                assert r.status_code == 503, r.text
                body = r.json()
                assert body["error"] == "unavailable"
                assert r.headers.get("retry-after")
                # the database's address is the operator's business, not every client's
                assert str(cluster.port) not in body["message"], body
            r = c.post("/v1/entries", json=sign_statement(manifest(), key).to_dict())
            assert r.status_code == 503, r.text

            # a worker dies while the database is down; Uvicorn starts another
            before = _workers(server.pid)
            os.kill(min(before), signal.SIGKILL)
            assert len(before) == 2, before
            _wait(
                lambda: (_workers(server.pid) - before) or server.poll() is not None,
                30,
                "Uvicorn to start a new worker",
            )
            time.sleep(3)  # the new worker's start-up, against the stopped database
            assert server.poll() is None, "escrow serve stopped: " + log.read_text()[-3000:]

            cluster.start()

            def healthy() -> bool:
                try:
                    return c.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            _wait(healthy, 30, "the server to serve again")
            for _ in range(8):  # both workers, whichever answers
                r = c.post("/v1/entries", json=sign_statement(manifest(), key).to_dict())
                assert r.status_code == 201, r.text
                acked[r.json()["entry"]["leaf_hash"]] = r.json()["entry"]["index"]
            assert server.poll() is None
    finally:
        stop(server)

    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert "unavailable at start-up" in text or "cannot claim" in text
    runner_lines = [ln for ln in text.splitlines() if "pack runner: cannot claim" in ln]
    assert len(runner_lines) <= 3, runner_lines  # one per worker and outage, not every poll

    from escrow.ledger.store import Ledger

    with Ledger.open(settings, create=False) as ledger:
        assert ledger.verify().ok
        for leaf, index in acked.items():
            assert ledger.get(index).leaf_hash == leaf


def test_a_database_failure_is_a_503_without_the_database_address() -> None:
    from escrow.errors import DatabaseUnavailable
    from escrow.server.http import from_escrow_error

    err = from_escrow_error(
        DatabaseUnavailable(
            "The ledger database postgresql+psycopg://ops:***@db.internal:5432/ledger is "
            "unavailable: connection refused.",
            hint="Check ESCROW_DB_URL and that the database server is running.",
        )
    )
    assert err.status == 503 and err.error == "unavailable"
    assert "db.internal" not in err.message and "ESCROW_DB_URL" not in err.message
    assert err.headers and err.headers.get("Retry-After")


def test_the_token_check_says_why_the_database_failed() -> None:
    from sqlalchemy import create_engine

    from escrow.errors import DatabaseUnavailable
    from escrow.server.auth import TokenStore

    engine = create_engine("sqlite:////nonexistent-r9/dir/ledger.db")
    with pytest.raises(DatabaseUnavailable) as got:
        TokenStore(engine).resolve("escrow_" + "x" * 43)
    assert "OperationalError" not in got.value.message
    assert "unable to open database file" in got.value.message


def test_the_pack_runner_logs_a_database_outage_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from sqlalchemy.exc import OperationalError

    from escrow.server.packs import PackRunner

    class DownJobs:
        calls = 0

        def claim(self) -> str | None:
            DownJobs.calls += 1
            if DownJobs.calls <= 5:
                raise OperationalError("SELECT", {}, Exception("connection refused\nIs it up?"))
            return None

    runner = PackRunner(DownJobs(), settings=None, poll_s=0.01)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="escrow.server"):
        runner.start()
        _wait(lambda: DownJobs.calls > 7, 10, "the runner to poll")
        runner.stop()
    lines = [r for r in caplog.records if "pack runner" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.INFO], [
        r.getMessage() for r in lines
    ]
    assert all(r.exc_info is None for r in lines)
    assert "connection refused" in lines[0].getMessage()
