"""`escrow tokens` (shown once, stored hashed, revocable) and background pack jobs."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import free_port, start_serve, stop


def test_tokens_create_list_revoke(escrow_home: Path, cli: Any) -> None:
    made = cli(["tokens", "create", "--role", "pipeline", "--name", "ci-nightly", "--json"])
    assert made.exit_code == 0, made.stderr
    doc = made.json()
    token = doc["token"]
    assert token.startswith("escrow_") and len(token) > 40
    assert doc["role"] == "pipeline" and doc["active"]

    plain = cli(["tokens", "create", "--role", "auditor", "--name", "auditor-1"])
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.strip().startswith("escrow_")  # the token alone on stdout
    assert "shown only now" in plain.stderr

    clash = cli(["tokens", "create", "--role", "admin", "--name", "ci-nightly"])
    assert clash.exit_code == 2
    bad_role = cli(["tokens", "create", "--role", "root", "--name", "x"])
    assert bad_role.exit_code == 2

    listed = cli(["tokens", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    rows = {t["name"]: t for t in listed.json()["tokens"]}
    assert set(rows) == {"ci-nightly", "auditor-1"}
    assert token not in listed.stdout

    # only the SHA-256 is stored; the token itself is nowhere in the database
    db = escrow_home / "ledger.db"
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT token_hash FROM server_tokens WHERE name = 'ci-nightly'"
        ).fetchone()[0]
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    for path in escrow_home.glob("ledger.db*"):
        assert token.encode() not in path.read_bytes()

    revoked = cli(["tokens", "revoke", "ci-nightly", "--json"])
    assert revoked.exit_code == 0, revoked.stderr
    assert revoked.json()["active"] is False
    again = cli(["tokens", "list", "--active", "--json"])
    assert [t["name"] for t in again.json()["tokens"]] == ["auditor-1"]
    missing = cli(["tokens", "revoke", "nobody"])
    assert missing.exit_code == 2

    from escrow.config import load_settings
    from escrow.ledger.store import make_engine
    from escrow.server.auth import TokenStore

    engine = make_engine(load_settings().db_url)
    try:
        assert TokenStore(engine).resolve(token) is None
    finally:
        engine.dispose()


@pytest.mark.slow
def test_pack_job_renders_in_the_background_and_serves_the_signed_pdf(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    from server_helpers import make_tokens, manifest

    from escrow.config import load_settings
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    tokens = make_tokens(settings)
    port = free_port()
    proc = start_serve(escrow_home, settings.db_url, port=port, log=tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        key = SigningKey.load(settings.key_path)
        pipeline = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {tokens['pipeline']}"}, timeout=60
        )
        auditor = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {tokens['auditor']}"}, timeout=60
        )
        with pipeline, auditor:
            env = sign_statement(manifest("packed"), key).to_dict()
            index = pipeline.post("/v1/entries", json=env).json()["entry"]["index"]
            r = auditor.post("/v1/packs", json={"projects": ["packed"]})
            assert r.status_code == 202, r.text
            job = r.json()
            assert r.headers["location"] == f"/v1/packs/{job['id']}"
            assert job["status"] in ("queued", "running")
            assert job["requested_by"] == "test-auditor"
            # posting is not blocked while the pack renders
            more = sign_statement(manifest("packed-later"), key).to_dict()
            assert pipeline.post("/v1/entries", json=more).status_code == 201
            early = auditor.get(f"/v1/packs/{job['id']}/pdf")
            # the job may have finished already (a fast machine): either the PDF, or a 409
            # saying the job is not finished, never anything else
            if early.status_code == 409:
                msg = early.json()["message"]
                assert f"The pack job {job['id']} is " in msg and "not finished" in msg, msg
            else:
                assert early.status_code == 200, early.text
                assert early.content.startswith(b"%PDF")
            deadline = time.monotonic() + 240
            while job["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.5)
                job = auditor.get(f"/v1/packs/{job['id']}").json()
            assert job["status"] == "succeeded", job
            pdf = auditor.get(job["pdf_url"])
            assert pdf.status_code == 200
            assert pdf.headers["content-type"] == "application/pdf"
            assert pdf.content.startswith(b"%PDF")
            assert hashlib.sha256(pdf.content).hexdigest() == job["pdf_sha256"]
            direct = auditor.get(f"/v1/packs/{job['id']}", headers={"Accept": "application/pdf"})
            assert direct.headers["content-type"] == "application/pdf"
            assert direct.content == pdf.content
            # issuing the pack is itself an entry in the ledger
            pack_entry = pipeline.get(f"/v1/entries/{job['entry_index']}").json()
            assert pack_entry["predicate_type"].endswith("/audit-pack/v1")
            assert job["entry_index"] > index
            # the same scope as the ledger stood right after the first build
            r = auditor.post("/v1/packs", json={"projects": ["packed"], "tree_size": index + 1})
            assert r.status_code == 202, r.text
            earlier = r.json()
            assert earlier["scope"]["tree_size"] == index + 1
            while earlier["status"] in ("queued", "running"):
                assert time.monotonic() < deadline + 240, earlier
                time.sleep(0.5)
                earlier = auditor.get(f"/v1/packs/{earlier['id']}").json()
            assert earlier["status"] == "succeeded", earlier
            earlier_pdf = auditor.get(earlier["pdf_url"]).content
            bad = auditor.post("/v1/packs", json={"projects": ["packed"], "tree_size": 0})
            assert bad.status_code == 422
    finally:
        stop(proc)
    out = tmp_path / "pack.pdf"
    out.write_bytes(pdf.content)
    verified = cli(["pack", "verify", str(out), "--json"])
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    (tmp_path / "earlier.pdf").write_bytes(earlier_pdf)
    at_size = cli(["pack", "verify", str(tmp_path / "earlier.pdf"), "--json"])
    assert at_size.exit_code == 0, at_size.stdout + at_size.stderr
    assert f"size {index + 1}" in at_size.stdout and "1 build" in at_size.stdout
    log = (tmp_path / "serve.log").read_text()
    assert f"queued pack job {job['id']}" in log and "'test-auditor'" in log
