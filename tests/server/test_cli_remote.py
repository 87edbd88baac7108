"""The CLI as a client: ESCROW_SERVER/ESCROW_TOKEN make the commands work against a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from server_helpers import LiveServer, manifest

from escrow.signing.dsse import sign_statement


def test_post_log_show_verify_and_proofs_through_the_server(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = sign_statement(manifest("via-server"), live_server.build_key())
    path = tmp_path / "envelope.json"
    path.write_bytes(env.to_bytes())

    posted = cli(["post", str(path), "--json"])
    assert posted.exit_code == 0, posted.stderr
    result = posted.json()["results"][0]
    assert result["status"] == "appended"
    index = result["index"]
    with live_server.ledger() as ledger:
        assert ledger.get(index).leaf_hash == result["leaf_hash"]
    assert not (client_env / "ledger.db").exists()  # nothing local was written
    assert (client_env / "servers").is_dir()  # the server's log key is pinned

    again = cli(["post", str(path), "--json"])
    assert again.exit_code == 0, again.stderr
    assert again.json()["results"][0] == {**result, "status": "exists"}

    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    listed = cli(["log", "--project", "via-server", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert [e["index"] for e in listed.json()["entries"]] == [index]
    # the other filters go to the server too
    signer = live_server.build_key().keyid
    diff_id = manifest()["predicate"]["layers"][0]["diffId"]
    for args in (
        ["--kind", "build-manifest", "--signer", signer],
        ["--diff-id", diff_id, "--since", "2000-01-01"],
    ):
        got = cli(["log", "--json", *args])
        assert got.exit_code == 0, got.stderr
        assert [e["index"] for e in got.json()["entries"]] == [index], args
    assert cli(["log", "--json", "--kind", "audit-pack"]).json()["entries"] == []
    assert cli(["log", "--json", "--until", "2000-01-01"]).json()["entries"] == []

    shown = cli(["show", str(index), "--json"])
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["statement"]["predicate"]["build"]["project"] == "via-server"

    verified = cli(["verify", str(index), "--json"])
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    checks = {c["name"]: c["ok"] for c in verified.json()["checks"]}
    assert checks["signature"] and checks["inclusion"]

    cp = cli(["ledger", "checkpoint", "--json"])
    assert cp.exit_code == 0, cp.stderr
    with live_server.ledger() as ledger:
        assert cp.json()["root"] == ledger.root().hex()
        assert cp.json()["size"] == ledger.size()

    proof = cli(["ledger", "proof", str(index), "--json"])
    assert proof.exit_code == 0, proof.stderr

    saved = tmp_path / "old.checkpoint"
    saved.write_text(cp.json()["note"])
    with live_server.client("pipeline") as c:
        assert c.post("/v1/entries", json=live_server.envelope()).status_code == 201
    consistency = cli(["ledger", "consistency", "--from", str(saved), "--json"])
    assert consistency.exit_code == 0, consistency.stderr
    assert consistency.json()["consistent"] is True


def test_rejections_and_refusals_keep_their_exit_codes(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from escrow.signing.keys import SigningKey

    unknown = sign_statement(manifest(), SigningKey.generate())
    path = tmp_path / "unknown.json"
    path.write_bytes(unknown.to_bytes())
    r = cli(["post", str(path), "--json"])
    assert r.exit_code == 1, r.stderr
    assert r.json()["rejected"] == 1

    good = tmp_path / "good.json"
    good.write_bytes(sign_statement(manifest(), live_server.build_key()).to_bytes())
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    r = cli(["post", str(good), "--json"])
    assert r.exit_code == 3, r.stdout + r.stderr
    assert "403" in r.stderr

    monkeypatch.setenv("ESCROW_TOKEN", "escrow_wrong")
    r = cli(["log", "--json"])
    assert r.exit_code == 3
    assert "401" in r.stderr
    assert r.stdout == ""

    # a server that is not the pinned one: refused, exit 1
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    assert cli(["log", "--json"]).exit_code == 0  # pins the server's log key
    state = next((client_env / "servers").glob("*.json"))
    pinned = json.loads(state.read_text())
    from escrow.ledger.checkpoint import verifier_key_line

    pinned["verifier_key"] = verifier_key_line("escrow.local/ledger", SigningKey.generate().public)
    pinned.pop("checkpoint", None)
    state.write_text(json.dumps(pinned))
    r = cli(["log", "--json"])
    assert r.exit_code == 1, r.stdout + r.stderr


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_pack_through_the_server_is_rendered_there_and_verifies_here(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with live_server.client("pipeline") as c:
        env = live_server.envelope(manifest("packed-remotely"))
        assert c.post("/v1/entries", json=env).status_code == 201
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    out = tmp_path / "remote-pack.pdf"
    r = cli(["pack", "--project", "packed-remotely", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    result = r.json()
    import hashlib

    assert hashlib.sha256(out.read_bytes()).hexdigest() == result["sha256"]
    assert result["index"] is not None
    assert not (client_env / "ledger.db").exists()  # rendered and recorded on the server
    verified = cli(["pack", "verify", str(out)])
    assert verified.exit_code == 0, verified.stdout + verified.stderr

    r = cli(["pack", "--project", "x", "--render-only", "-o", str(tmp_path / "n.pdf")])
    assert r.exit_code == 2
    assert not (tmp_path / "n.pdf").exists()


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_pack_through_the_server_must_be_the_one_the_log_recorded(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client wrote whatever PDF the server sent (it only hashed it); now the pack's
    own ledger entry, its inclusion verified, must name the file's SHA-256."""
    from escrow.server.client import RemoteLedger

    with live_server.client("pipeline") as c:
        posted = c.post("/v1/entries", json=live_server.envelope(manifest("packed-checked")))
        assert posted.status_code == 201
    built = posted.json()["entry"]["index"]
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "packed-checked", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["entries"] == [built] and doc["pack_id"].startswith("EP-")
    assert doc["leaf_hash"] and doc["index"] > built
    assert doc["overall"].startswith("Verified"), doc  # as a local pack's --json gives it

    real = RemoteLedger.wait_pack

    def swapped(self: RemoteLedger, job_id: str, **kw: Any) -> bytes:
        pdf = real(self, job_id, **kw)
        return pdf.replace(b"%%EOF", b"%%EOF\n% another file", 1)

    monkeypatch.setattr(RemoteLedger, "wait_pack", swapped)
    other = tmp_path / "other.pdf"
    r = cli(["pack", "--project", "packed-checked", "-o", str(other)])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "is not the pack recorded as ledger entry" in r.stderr
    assert not other.exists()


def test_a_token_that_may_not_post_stops_a_build_before_it_is_done(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an auditor token, `escrow build` built the whole image and only then heard
    403 from the server; the token's role is now known while the engine builds."""
    import subprocess

    from tests.conftest import BASE_TAG, build_base_image

    def docker_image_exists(ref: str) -> bool:
        inspect = ["docker", "image", "inspect", ref]
        return subprocess.run(inspect, capture_output=True).returncode == 0

    if not docker_image_exists(BASE_TAG):
        build_base_image()
    monkeypatch.setenv("ESCROW_KEY", str(live_server.settings.key_path))
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nRUN sleep 3\nRUN echo done > /done\n")
    tag = "escrow-test/auditor-token:1"
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)  # a failed run's
    r = cli(["build", str(ctx), "-t", tag, "-q"])
    assert r.exit_code == 3, r.stdout + r.stderr
    assert "has the role auditor: it may not record entries" in r.stderr
    assert "pipeline token" in r.stderr
    assert not docker_image_exists(tag)  # stopped: never tagged
    with live_server.ledger() as ledger:
        assert all(e.project != "ctx" for e in ledger.entries(limit=1000))
