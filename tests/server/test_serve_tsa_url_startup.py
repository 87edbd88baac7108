"""`escrow serve` refuses a malformed ESCROW_TSA_URL when it starts (exit 2, one sentence),
rather than failing every pack job it would take; with ``--no-packs`` it takes none, and
starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from server_helpers import ROOT, free_port, start_serve, stop

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def test_serve_refuses_a_malformed_tsa_url_and_serves_with_no_packs(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings

    settings = load_settings()
    port = free_port()
    url = "ftp://ops:s3cret@tsa.example.com/tsr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env |= {"ESCROW_HOME": str(escrow_home), "ESCROW_TSA_URL": url}
    r = subprocess.run(
        [sys.executable, "-m", "escrow.cli.main", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "escrow: error: ESCROW_TSA_URL is not an http(s) URL of a Time-Stamping Authority: "
        "'ftp://tsa.example.com/tsr'. Give the RFC 3161 URL your TSA publishes, e.g. "
        "https://tsa.example.com/tsr."
    )
    assert "s3cret" not in r.stderr
    monkeypatch.setenv("ESCROW_TSA_URL", url)
    server = start_serve(
        escrow_home, settings.db_url, port=port, log=tmp_path / "serve.log", extra=["--no-packs"]
    )
    stop(server)
