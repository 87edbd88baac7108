"""`escrow build` through a server deposits its inputs like a local build: it silently made
no deposit, so `escrow rebuild INDEX` without `--context` had nothing to rebuild from."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from server_helpers import LiveServer


@pytest.fixture
def client_env(live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "client-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["pipeline"])
    monkeypatch.setenv("ESCROW_KEY", str(live_server.settings.key_path))
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    return home


def test_a_build_through_the_server_is_deposited_on_the_pipeline_machine(
    live_server: LiveServer, client_env: Path, cli: Any, tmp_path: Path
) -> None:
    from tests.conftest import BASE_TAG, build_base_image

    if subprocess.run(["docker", "image", "inspect", BASE_TAG], capture_output=True).returncode:
        build_base_image()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("deposited through a server\n")
    tag = "escrow-test/remote-deposit:1"
    try:
        r = cli(["build", str(ctx), "-t", tag, "--json"])
        assert r.exit_code == 0, r.stdout + r.stderr
        doc = r.json()
        assert doc["deposit"] == {"complete": True, "missing": []}, doc
        index = doc["index"]
        assert (client_env / "deposits" / "refs" / "entries" / doc["leaf_hash"]).is_file()
        # the entry is the server's; the deposit is checked against it
        r = cli(["deposit", "check", str(index), "--verify"])
        assert r.exit_code == 0, r.stdout + r.stderr
        with live_server.ledger() as ledger:
            assert ledger.get(index).leaf_hash == doc["leaf_hash"]
        # and --no-deposit still makes none
        r = cli(["build", str(ctx), "-t", tag, "--json", "--no-deposit"])
        assert r.exit_code == 0, r.stdout + r.stderr
        assert "deposit" not in r.json()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_a_build_through_the_server_rebuilds_from_its_deposit(
    live_server: LiveServer, client_env: Path, cli: Any, tmp_path: Path
) -> None:
    """The deposit made through a server is enough to rebuild without the checkout; the
    verdict is recorded on the server."""
    from tests.conftest import BASE_TAG, build_base_image

    if subprocess.run(["docker", "image", "inspect", BASE_TAG], capture_output=True).returncode:
        build_base_image()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("rebuilt from a deposit made through a server\n")
    tag = "escrow-test/remote-deposit:2"
    try:
        r = cli(["build", str(ctx), "-t", tag, "--json"])
        assert r.exit_code == 0, r.stdout + r.stderr
        index = r.json()["index"]
        (ctx / "a.txt").unlink()  # the checkout is gone: only the deposit remains
        r = cli(["rebuild", str(index), "--rm", "--json"])
        assert r.exit_code == 0, r.stdout + r.stderr
        assert r.json()["verdict"] in ("identical", "equivalent"), r.json()
        with live_server.ledger() as ledger:
            last = ledger.get(ledger.size() - 1)
        assert last.predicate_type.endswith("rebuild-verification/v1"), last.predicate_type
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
