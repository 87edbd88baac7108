"""A pack job renders for at most the server's time limit (`escrow serve --pack-time-limit`).

A renderer that hangs while its server lives (here: its Time-Stamping Authority takes the
request and never answers) used to keep its job "running" for ever, beating its heartbeat,
while the auditor's `escrow pack` waited its three hours.  Now the renderer, and whatever
it started, is killed once the limit has passed, the job fails saying so (``unavailable``:
`escrow pack` exits 3) and nothing is recorded.

Through a real `escrow serve` process and a real OpenSSL TSA, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    finished,
    free_port,
    make_tokens,
    one_build_ledger,
    start_serve,
    stop,
    wait_for,
)
from server_helpers import serving as uvicorn_serving
from tsakit import make_tsa_files, openssl_tsa

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "limited"
LIMIT_S = 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A fresh ledger holding one build of :data:`PROJECT`."""
    with one_build_ledger(request, tmp_path, monkeypatch, PROJECT, pg_name="escrow_limit") as s:
        yield s


def renderers_of(job_id: str) -> list[int]:
    """The processes rendering ``job_id`` (``python -m escrow.server.packs JOB_ID …``)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"escrow.server.packs" in argv and job_id.encode() in argv:
            found.append(int(pid))
    return found


def test_a_renderer_that_hangs_is_stopped_at_the_servers_limit_and_its_job_fails(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    from escrow.ledger.store import Ledger
    from escrow.server.packs import time_limit_error

    with Ledger.open(settings) as ledger:
        size = ledger.size()
    tokens = make_tokens(settings)
    port = free_port()
    log = tmp_path / "serve.log"
    with openssl_tsa(make_tsa_files(tmp_path / "tsa"), hold_from=1) as tsa:
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the server's environment
        proc = start_serve(
            settings.home,
            settings.db_url,
            port=port,
            log=log,
            extra=["--pack-time-limit", f"{LIMIT_S}s"],
        )
        url = f"http://127.0.0.1:{port}"
        try:
            auth = {"Authorization": f"Bearer {tokens['auditor']}"}
            with httpx.Client(base_url=url, headers=auth, timeout=60) as auditor:
                r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
                assert r.status_code == 202, r.text
                job_id = str(r.json()["id"])
                # its renderer has collected the builds and waits for the TSA, for ever
                assert tsa.held.wait(240), "the server's renderer never asked its TSA"
                assert renderers_of(job_id)
                doc = finished(auditor, job_id)
                # and an auditor asking now is told the same, by `escrow pack`
                monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "auditor-home"))
                monkeypatch.setenv("ESCROW_SERVER", url)
                monkeypatch.setenv("ESCROW_TOKEN", tokens["auditor"])
                monkeypatch.delenv("ESCROW_DB_URL", raising=False)
                out = tmp_path / "pack.pdf"
                ran = cli(["pack", "--project", PROJECT, "-o", str(out)])
        finally:
            stop(proc)
        said = log.read_text(encoding="utf-8", errors="replace")

    error = time_limit_error(LIMIT_S)
    assert error.startswith(
        f"The pack took longer than this server's limit of {LIMIT_S} s "
        "(escrow serve --pack-time-limit) and was stopped; nothing was recorded."
    )
    assert (doc["status"], doc["error"]) == ("failed", error), doc
    assert (doc["error_kind"], doc["error_exit_code"]) == ("unavailable", 3)
    assert (doc["pdf_url"], doc["entry_index"]) == (None, None)
    assert f"pack job {job_id} failed: {error}" in said, said[-3000:]
    # the renderer did not outlive its job (no process left holding the TSA or the ledger)
    wait_for("the killed renderer to be gone", lambda: not renderers_of(job_id), timeout=30)

    assert ran.exit_code == 3, ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("escrow: error: ")]
    assert errors == [f"escrow: error: The server could not make the pack: {error}"], ran.stderr
    assert not out.exists()
    with Ledger.open(settings) as ledger:
        assert ledger.size() == size  # nothing recorded


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("0", "'0' is not a duration longer than zero."),
        ("2x", "'2x' is not a duration; give seconds, or a number with s, m or h (90m, 2h)."),
        ("-5m", "'-5m' is not a duration; give seconds, or a number with s, m or h (90m, 2h)."),
    ],
)
def test_a_time_limit_that_is_not_a_duration_is_refused_before_serving(
    escrow_home: Path, cli: Any, given: str, said: str
) -> None:
    r = cli(["serve", "--port", str(free_port()), "--pack-time-limit", given])
    assert r.exit_code == 2, r.stderr
    assert f"Invalid value for '--pack-time-limit': {said}" in r.stderr


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("7200", 7200.0), ("90m", 5400.0), ("1.5h", 5400.0), ("30s", 30.0), (None, 7200.0)],
)
def test_the_time_limit_reaches_the_servers_pack_runner(
    given: str | None,
    seconds: float,
    escrow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
) -> None:
    """`escrow serve` hands its limit to its worker processes (through the environment, as
    its other settings), whose pack runner applies it; 2 h when none is given."""
    import uvicorn

    from escrow.server import app as server_app

    # `escrow serve` sets these for its workers: restored after the test
    for name in (
        "ESCROW_HOME",
        "ESCROW_DB_URL",
        "ESCROW_SERVER_MAX_BODY",
        "ESCROW_SERVER_REQUEST_TIMEOUT",
        "ESCROW_SERVER_PACK_WORKERS",
        "ESCROW_SERVER_PACK_TIME_LIMIT",
    ):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.delenv("ESCROW_SERVER_PACK_TIME_LIMIT")
    runners: list[Any] = []

    def worker(target: str, **_: Any) -> None:
        """What a Uvicorn worker does with the factory: the app, started and stopped."""
        assert target == "escrow.server.app:app_from_env"
        monkeypatch.setattr(server_app.PackRunner, "start", lambda self: runners.append(self))
        with uvicorn_serving(server_app.app_from_env()) as url:
            assert httpx.get(f"{url}/healthz").status_code == 200

    monkeypatch.setattr(uvicorn, "run", worker)
    r = cli(["serve", "--port", str(free_port())] + (["--pack-time-limit", given] if given else []))
    assert r.exit_code == 0, r.stderr
    assert [runner.time_limit for runner in runners] == [seconds]
