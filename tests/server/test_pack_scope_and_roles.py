"""Through a server: a pack scope holding no recorded build is refused before it is queued
(422, then exit 2), and a token whose role may not do something exits 3, as documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from server_helpers import LiveServer, manifest

NO_BUILD = "No recorded build is in the scope of this pack"


def _jobs(live_server: LiveServer) -> int:
    from sqlmodel import Session, select

    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJob

    engine = make_engine(live_server.settings.db_url)
    try:
        with Session(engine) as s:
            return len(s.exec(select(PackJob)).all())
    finally:
        engine.dispose()


@pytest.fixture
def client_env(live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A separate, empty ESCROW_HOME pointed at the live server."""
    home = tmp_path / "client-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    monkeypatch.delenv("ESCROW_DB_URL", raising=False)
    return home


def test_a_pack_scope_without_a_build_is_refused_before_it_is_queued(
    live_server: LiveServer,
) -> None:
    with live_server.client("pipeline") as pipeline:
        indexes = {}
        for project in ("alpha", "beta", "alpha"):
            r = pipeline.post("/v1/entries", json=live_server.envelope(manifest(project)))
            assert r.status_code == 201, r.text
            indexes.setdefault(project, []).append(r.json()["entry"]["index"])
    alpha, beta = indexes["alpha"], indexes["beta"][0]
    with live_server.client("auditor") as auditor:
        refused = [
            {"projects": ["nope"]},
            {"projects": ["nope", "nope"], "since": "2020-01-01"},
            {"since": "2999-01-01"},
            {"until": "2000-01-01"},
            {"projects": ["alpha"], "entries": [beta]},
            {"projects": ["beta"], "entries": alpha},
            {"projects": ["alpha"], "tree_size": alpha[0]},  # before its first build
        ]
        for body in refused:
            r = auditor.post("/v1/packs", json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["error"] == "invalid", r.text
            assert r.json()["message"].startswith(NO_BUILD), r.text
            assert r.json()["location"] == "body", r.text
        assert _jobs(live_server) == 0
        accepted = [
            {"projects": ["nope", "beta"]},
            {"projects": ["alpha"], "entries": [beta, alpha[1]]},
            {"entries": [beta]},
            {"projects": ["alpha"], "tree_size": alpha[0] + 1},
            {"since": "2020-01-01"},
        ]
        for body in accepted:
            r = auditor.post("/v1/packs", json=body)
            assert r.status_code == 202, (body, r.text)
    assert _jobs(live_server) == len(accepted)


# a pack worker: a job queued for this scope fails (rather than waits) without the check
@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_escrow_pack_of_an_empty_scope_through_the_server_exits_2(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with live_server.client("pipeline") as pipeline:
        r = pipeline.post("/v1/entries", json=live_server.envelope(manifest("alpha")))
        assert r.status_code == 201, r.text
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "nope", "-o", str(out)])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert NO_BUILD in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("escrow: error:")]
    assert len(errors) == 1 and NO_BUILD in errors[0], r.stderr
    assert not out.exists()
    assert _jobs(live_server) == 0


def test_a_token_whose_role_may_not_do_it_exits_3_as_documented(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with live_server.client("pipeline") as pipeline:
        r = pipeline.post("/v1/entries", json=live_server.envelope(manifest("alpha")))
        assert r.status_code == 201, r.text
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["pipeline"])
    for args in (["tokens", "list"], ["pack", "--project", "alpha", "-o", str(tmp_path / "p.pdf")]):
        r = cli(args)
        assert r.exit_code == 3, (args, r.stdout + r.stderr)
        assert "403" in r.stderr and "role pipeline" in r.stderr, r.stderr
    assert _jobs(live_server) == 0

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit codes", 1)[1]
    row = re.search(r"^\| 3 \|(.*)\|$", table, re.MULTILINE)
    assert row is not None
    assert "403" in row.group(1) and "401" in row.group(1), row.group(1)
