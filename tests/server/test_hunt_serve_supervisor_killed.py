"""`escrow serve --workers N` whose own process is killed outright (SIGKILL: the OOM
killer, `kill -9`, a supervisor giving up on it).

Uvicorn's worker processes used to outlive it: they went on serving on the port, so the
operator's restart failed ("another process is using the port") until someone found and
killed them, and the pack job one of them was rendering stayed claimed by a server nobody
ran.  Now each worker watches the process that started it and, once it is gone, stops as
SIGTERM stops it: the port is free again, and the job it was rendering is queued again
and rendered by the next server.
"""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import (
    finished,
    free_port,
    make_tokens,
    manifest,
    start_serve,
    stop,
    wait_for,
)
from tsakit import make_tsa_files, openssl_tsa

pytestmark = pytest.mark.slow


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def test_workers_stop_and_requeue_their_job_when_the_server_process_is_killed(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger, make_engine
    from escrow.server.packs import PackJobs
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    with Ledger.open(settings) as ledger:
        ledger.append(sign_statement(manifest("orphans"), SigningKey.load(settings.key_path)))
    tokens = make_tokens(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}
    with openssl_tsa(make_tsa_files(tmp_path / "tsa"), hold_from=1) as tsa:
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the renderer waits on it
        first = start_serve(
            escrow_home, settings.db_url, port=port, log=tmp_path / "first.log",
            extra=["--workers", "2"],
        )  # fmt: skip
        try:
            with httpx.Client(base_url=url, headers=auth, timeout=60) as auditor:
                r = auditor.post("/v1/packs", json={"projects": ["orphans"]})
                assert r.status_code == 202, r.text
                job_id = str(r.json()["id"])
                assert tsa.held.wait(120), "the renderer never asked its TSA"
                assert auditor.get(f"/v1/packs/{job_id}").json()["status"] == "running"
            first.kill()  # SIGKILL: it cannot pass anything on to its workers
            first.wait()
            deadline = time.monotonic() + 30
            while not _port_free(port):
                assert time.monotonic() < deadline, "the workers still hold the port"
                time.sleep(0.1)
            # the port is let go first; the job is queued again as the worker shuts down
            requeued = f"pack job {job_id}: queued again (the server is stopping)"
            wait_for(
                "the worker to queue its job again",
                lambda: requeued in (tmp_path / "first.log").read_text(),
                timeout=30,
            )
        finally:
            stop(first)
        said = (tmp_path / "first.log").read_text()
        assert "that started this worker is gone; stopping" in said, said[-3000:]

        engine = make_engine(settings.db_url)
        try:
            job = PackJobs(engine).get(job_id)
        finally:
            engine.dispose()
        assert job is not None and job.status == "queued", job

        tsa.answer()
        second = start_serve(escrow_home, settings.db_url, port=port, log=tmp_path / "second.log")
        try:
            with httpx.Client(base_url=url, headers=auth, timeout=60) as auditor:
                doc = finished(auditor, job_id)
        finally:
            stop(second)
    assert doc["status"] == "succeeded", doc
    with Ledger.open(settings) as ledger:
        assert ledger.size() == 3  # the key event, the build, one pack
