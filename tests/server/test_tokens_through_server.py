"""`escrow tokens` with ESCROW_SERVER set works through the server, as `escrow keys` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import LiveServer


@pytest.fixture
def admin_machine(live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ESCROW_HOME (no local ledger) pointed at the live server, with an admin token."""
    home = tmp_path / "admin-laptop"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["admin"])
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    monkeypatch.delenv("ESCROW_DB_URL", raising=False)
    return home


def test_tokens_create_list_revoke_through_the_server(
    live_server: LiveServer, admin_machine: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cli(["tokens", "create", "--role", "pipeline", "--name", "ci-remote", "--json"])
    assert made.exit_code == 0, made.stderr
    token = made.json()["token"]
    assert token.startswith("escrow_")
    assert made.json()["role"] == "pipeline"
    # the new token works on the server
    with httpx.Client(base_url=live_server.url) as c:
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/v1/checkpoint", headers=auth).status_code == 200

    listed = cli(["tokens", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    names = {t["name"]: t for t in listed.json()["tokens"]}
    assert names["ci-remote"]["active"] is True
    assert "token" not in names["ci-remote"]

    again = cli(["tokens", "create", "--role", "pipeline", "--name", "ci-remote"])
    assert again.exit_code == 2, again.stderr
    assert "already exists" in again.stderr

    revoked = cli(["tokens", "revoke", "ci-remote", "--json"])  # by its active name
    assert revoked.exit_code == 0, revoked.stderr
    assert revoked.json()["active"] is False
    with httpx.Client(base_url=live_server.url) as c:
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/v1/checkpoint", headers=auth).status_code == 401
    active = cli(["tokens", "list", "--active", "--json"])
    assert "ci-remote" not in {t["name"] for t in active.json()["tokens"]}

    missing = cli(["tokens", "revoke", "nobody"])
    assert missing.exit_code == 2, missing.stderr
    assert "no token with the ID or active name 'nobody'" in missing.stderr

    assert not (admin_machine / "ledger.db").exists()  # nothing local was made

    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["pipeline"])
    refused = cli(["tokens", "list"])
    assert refused.exit_code == 3, refused.stderr
    assert "answered 403" in refused.stderr
