"""`escrow pack` through a server fails as the same failure fails on the server's own ledger.

A pack job that fails on the server records what kind of failure it was (`error_kind` and
`error_exit_code` in the job document), and `escrow pack` with ESCROW_SERVER exits with the
code a local `escrow pack` has for it, saying what the local run says (what to check about
a Time-Stamping Authority is the server's setting): 3 when the server's Time-Stamping
Authority cannot be reached or the server's renderer process is killed, 1 for a check that
failed (it used to be 2 whatever the failure).  On SQLite and on PostgreSQL, with a real
`escrow serve`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import ROOT, free_port, make_tokens, one_build_ledger, start_serve, stop
from tsakit import closed_port_url

from escrow.server.packs import SERVER_TSA_HINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "audited"


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    proc: subprocess.Popen[bytes]


@dataclass
class Host:
    """The server's host: its ESCROW_HOME and ledger database."""

    home: Path
    db_url: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def host(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Host]:
    """A fresh ledger holding one build of :data:`PROJECT`."""
    with one_build_ledger(request, tmp_path, monkeypatch, PROJECT, pg_name="escrow_jobkind") as s:
        yield Host(s.home, s.db_url)


@contextmanager
def serving(
    host: Host, tsa: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    """`escrow serve` of ``host``'s ledger, its pack jobs timestamped by ``tsa``."""
    from escrow.config import load_settings

    tokens = make_tokens(load_settings(home=host.home, db_url=host.db_url))
    port = free_port()
    with monkeypatch.context() as m:
        m.setenv("ESCROW_TSA_URL", tsa)  # the server's own environment
        proc = start_serve(host.home, host.db_url, port=port, log=tmp_path / "serve.log")
    try:
        yield Served(f"http://127.0.0.1:{port}", tokens, proc)
    finally:
        stop(proc)


def on_the_host(monkeypatch: pytest.MonkeyPatch, host: Host, tsa: str) -> None:
    """The environment of `escrow pack` run on the server's host, on its ledger."""
    monkeypatch.setenv("ESCROW_HOME", str(host.home))
    monkeypatch.setenv("ESCROW_DB_URL", host.db_url)
    monkeypatch.setenv("ESCROW_TSA_URL", tsa)
    for var in ("ESCROW_SERVER", "ESCROW_TOKEN", "ESCROW_SERVER_KEY"):
        monkeypatch.delenv(var, raising=False)


def as_auditor(monkeypatch: pytest.MonkeyPatch, served: Served, tmp_path: Path) -> None:
    """The environment of `escrow pack` run on an auditor's machine, through the server."""
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "auditor-home"))
    monkeypatch.setenv("ESCROW_SERVER", served.url)
    monkeypatch.setenv("ESCROW_TOKEN", served.tokens["auditor"])
    for var in ("ESCROW_DB_URL", "ESCROW_TSA_URL", "ESCROW_SERVER_KEY"):
        monkeypatch.delenv(var, raising=False)


def said(stderr: str) -> str:
    """The one error a run printed, without ``escrow: error:``."""
    errors = [line for line in stderr.splitlines() if line.startswith("escrow: error: ")]
    assert len(errors) == 1, stderr
    return errors[0].removeprefix("escrow: error: ")


def job_of(served: Served, stderr: str) -> dict[str, Any]:
    """The job document of the pack job `escrow pack` said it queued."""
    found = re.search(r"Pack job ([0-9a-f]+) queued", stderr)
    assert found is not None, stderr
    r = httpx.get(
        f"{served.url}/v1/packs/{found.group(1)}",
        headers={"Authorization": f"Bearer {served.tokens['auditor']}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def test_a_tsa_that_is_down_fails_a_pack_through_the_server_with_exit_3(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    tsa = closed_port_url()
    with serving(host, tsa, tmp_path, monkeypatch) as served:
        on_the_host(monkeypatch, host, tsa)
        local = cli(["pack", "--project", PROJECT, "-o", str(tmp_path / "local.pdf")])
        assert local.exit_code == 3, local.stderr
        local_error = said(local.stderr)
        assert f"The Time-Stamping Authority {tsa} cannot be reached" in local_error
        # the same failure; what to check is the server's TSA setting, not `--tsa`
        local_hint = "Check the --tsa URL (or ESCROW_TSA_URL) and the network; nothing was "
        assert local_error.endswith(local_hint + "written or recorded.")
        server_error = local_error.split(local_hint)[0] + SERVER_TSA_HINT

        as_auditor(monkeypatch, served, tmp_path)
        remote = cli(["pack", "--project", PROJECT, "-o", str(tmp_path / "remote.pdf")])
        assert remote.exit_code == 3, remote.stderr
        assert said(remote.stderr) == f"The server could not make the pack: {server_error}"
        assert not (tmp_path / "remote.pdf").exists()
        job = job_of(served, remote.stderr)
    assert job["status"] == "failed"
    assert (job["error_kind"], job["error_exit_code"]) == ("unavailable", 3)
    assert job["error"] == server_error


def test_a_pack_job_failing_a_check_fails_the_pack_with_exit_1(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """A checkpoint note of another log is read by the client (it is a checkpoint note) and
    refused by the renderer: a check that failed (the log does not extend it), as on the
    local ledger and as `escrow ledger consistency --from` says of it."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings(home=host.home, db_url=host.db_url)) as ledger:
        note = ledger.checkpoint().note
    other = tmp_path / "other-log.checkpoint"
    other.write_text("example.org/another-log\n" + note.split("\n", 1)[1], encoding="utf-8")
    tsa = closed_port_url()  # never reached: the scope is refused first
    with serving(host, tsa, tmp_path, monkeypatch) as served:
        on_the_host(monkeypatch, host, tsa)
        args = ["pack", "--project", PROJECT, "--since-checkpoint", str(other), "-o"]
        local = cli([*args, str(tmp_path / "local.pdf")])
        assert local.exit_code == 1, local.stderr
        local_error = said(local.stderr)
        assert "'example.org/another-log', not this one" in local_error

        as_auditor(monkeypatch, served, tmp_path)
        remote = cli([*args, str(tmp_path / "remote.pdf")])
        assert remote.exit_code == 1, remote.stderr
        assert said(remote.stderr) == f"The server could not make the pack: {local_error}"
        job = job_of(served, remote.stderr)
    assert job["status"] == "failed"
    assert (job["error_kind"], job["error_exit_code"]) == ("check", 1)


@contextmanager
def silent_tsa() -> Iterator[tuple[str, threading.Event]]:
    """A TSA that takes requests and never answers: its URL, and an event set once it has
    been asked."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    asked = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed: the test is over
            held.append(conn)
            asked.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/tsa", asked
    finally:
        server.close()
        for conn in held:
            conn.close()
        thread.join(timeout=10)


def renderers_of(pid: int) -> list[int]:
    """The pack renderer processes (``python -m escrow.server.packs``) below process ``pid``."""

    def parent(p: int) -> int:
        stat = Path(f"/proc/{p}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"escrow.server.packs" not in (entry / "cmdline").read_bytes():
                continue
            p = int(entry.name)
            while p > 1:
                p = parent(p)
                if p == pid:
                    found.append(int(entry.name))
                    break
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def test_a_killed_renderer_fails_the_pack_through_the_server_with_exit_3(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's renderer process killed (the kernel's OOM killer, an operator) is the
    server's environment: exit 3, as for a server that cannot be reached."""
    with silent_tsa() as (tsa, asked), serving(host, tsa, tmp_path, monkeypatch) as served:
        as_auditor(monkeypatch, served, tmp_path)
        client = subprocess.Popen(
            [sys.executable, "-m", "escrow.cli.main", "pack", "--project", PROJECT, "-o"]
            + [str(tmp_path / "remote.pdf")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            # the renderer has rendered and signed the pack, and waits for its timestamp
            assert asked.wait(240), "the server's renderer never asked its TSA"
            renderers = renderers_of(served.proc.pid)
            assert len(renderers) == 1, renderers
            os.kill(renderers[0], signal.SIGKILL)
            _, err = client.communicate(timeout=300)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        assert client.returncode == 3, err
        assert said(err) == (
            "The server could not make the pack: The process rendering this pack was killed "
            "(signal 9); request it again."
        )
        job = job_of(served, err)
    assert (job["error_kind"], job["error_exit_code"]) == ("unavailable", 3)


def test_a_stale_pack_job_fails_as_unavailable(host: Host) -> None:
    """A job still running long after its renderer started belongs to a server that died:
    the server's environment, exit 3 for `escrow pack` waiting for it."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from escrow.errors import EnvironmentProblem
    from escrow.ledger.store import make_engine
    from escrow.server.packs import STALE_AFTER_S, PackJob, PackJobs

    engine = make_engine(host.db_url)
    try:
        PackJobs.create_tables(engine)
        jobs = PackJobs(engine)
        stale = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
        assert jobs.claim() == stale
        tbl = PackJob.__table__  # type: ignore[attr-defined]
        long_ago = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)
        with engine.begin() as conn:
            conn.execute(update(tbl).where(tbl.c.id == stale).values(started_at=long_ago))
        assert jobs.claim() is None  # nothing queued: the stale job is failed
        job = jobs.get(stale)
        assert job is not None
        doc = job.to_dict()
    finally:
        engine.dispose()
    assert doc["status"] == "failed"
    assert (doc["error_kind"], doc["error_exit_code"]) == ("unavailable", 3)
    from escrow.server.client import _job_failure  # what `escrow pack` makes of it

    error = _job_failure(doc)
    assert isinstance(error, EnvironmentProblem) and error.exit_code == 3
    assert error.message == (
        "The server could not make the pack: The server rendering this pack stopped; "
        "request it again."
    )
