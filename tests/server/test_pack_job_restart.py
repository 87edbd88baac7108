"""A pack job the server was rendering when it stopped is queued again, and rendered by the
server that starts next, rather than failed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import free_port, make_tokens, manifest, start_serve, stop

pytestmark = pytest.mark.slow


def _status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/packs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def test_a_pack_job_interrupted_by_a_restart_is_rendered_after_it(
    escrow_home: Path, tmp_path: Path
) -> None:
    from escrow.config import load_settings
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    tokens = make_tokens(settings)
    env = sign_statement(manifest("restarted"), SigningKey.load(settings.key_path)).to_dict()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as auditor:
        proc = start_serve(escrow_home, settings.db_url, port=port, log=tmp_path / "first.log")
        try:
            pipeline = {"Authorization": f"Bearer {tokens['pipeline']}"}
            assert httpx.post(f"{url}/v1/entries", json=env, headers=pipeline).status_code == 201
            r = auditor.post("/v1/packs", json={"projects": ["restarted"]})
            assert r.status_code == 202, r.text
            job_id = str(r.json()["id"])
            deadline = time.monotonic() + 60
            while _status(auditor, job_id)["status"] == "queued":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert _status(auditor, job_id)["status"] == "running"  # its renderer started
        finally:
            stop(proc)  # SIGTERM, as a restart or a deploy does
        first_log = (tmp_path / "first.log").read_text()
        assert f"pack job {job_id}: queued again (the server is stopping)" in first_log

        proc = start_serve(escrow_home, settings.db_url, port=port, log=tmp_path / "second.log")
        try:
            job = _status(auditor, job_id)
            deadline = time.monotonic() + 240
            while job["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.5)
                job = _status(auditor, job_id)
            assert job["status"] == "succeeded", job
            pdf = auditor.get(f"/v1/packs/{job_id}/pdf")
            assert pdf.status_code == 200
            assert pdf.content.startswith(b"%PDF")
        finally:
            stop(proc)
