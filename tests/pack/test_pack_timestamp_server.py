"""`escrow serve` timestamps the packs it renders with the Time-Stamping Authority its own
ESCROW_TSA_URL names, as `escrow pack` does; a TSA that gives no timestamp fails the job,
naming the TSA, and records nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server.server_helpers import free_port, make_tokens, manifest, start_serve, stop
from tsakit import TSA_NAME, make_tsa_files, openssl_tsa

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]


def _finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        r = client.get(f"/v1/packs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def test_the_server_timestamps_its_packs_with_escrow_tsa_url(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.pack.verify import verify_pack
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    tokens = make_tokens(settings)
    with Ledger.open(settings) as ledger:
        ledger.append(sign_statement(manifest("stamped"), SigningKey.load(settings.key_path)))
        size = ledger.size()
    files = make_tsa_files(tmp_path / "tsa")
    port = free_port()
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}
    with (
        openssl_tsa(files, "error") as tsa,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as auditor,
    ):
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the server's environment
        proc = start_serve(escrow_home, settings.db_url, port=port, log=tmp_path / "serve.log")
        try:
            # the TSA answers HTTP 500: the job fails naming it, nothing is recorded
            r = auditor.post("/v1/packs", json={"projects": ["stamped"]})
            assert r.status_code == 202, r.text
            job = _finished(auditor, str(r.json()["id"]))
            assert job["status"] == "failed", job
            assert f"The Time-Stamping Authority {tsa.url} answered HTTP 500" in job["error"]
            with Ledger.open(settings) as ledger:
                assert ledger.size() == size

            # the TSA answers: the pack is timestamped by it
            tsa.mode = "ok"
            r = auditor.post("/v1/packs", json={"projects": ["stamped"]})
            assert r.status_code == 202, r.text
            job_id = str(r.json()["id"])
            job = _finished(auditor, job_id)
            assert job["status"] == "succeeded", job
            pdf = auditor.get(f"/v1/packs/{job_id}/pdf")
            assert pdf.status_code == 200
        finally:
            stop(proc)
    out = tmp_path / "pack.pdf"
    out.write_bytes(pdf.content)
    report = verify_pack(out, tsa_trust=files.ca_pem)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.timestamp is not None and TSA_NAME in report.timestamp.tsa
    assert len(tsa.answered) >= 1
