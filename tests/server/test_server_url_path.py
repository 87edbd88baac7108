"""An ESCROW_SERVER that is not an escrow server's base URL — `/v1` added, a path the
server does not have, or another HTTP server — is one sentence naming the URL and saying
what to give (exit 3, as for a registry address that is no registry), instead of "There is
no resource at /v1/v1/checkpoint." (exit 2, no server named) or "answered 404: HTTP 404."."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from httpkit import loopback_server
from server_helpers import LiveServer


@pytest.fixture
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "auditor-laptop"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_SERVER_KEY", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def plain_http() -> Iterator[str]:
    """An HTTP server that answers 404 (HTML) to everything: not an escrow server."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's API
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(NotFound) as address:
        yield f"http://{address}"


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/escrow"])
@pytest.mark.parametrize("command", [["log"], ["show", "0"], ["tokens", "list"]])
def test_a_path_the_server_does_not_have_is_named(
    live_server: LiveServer,
    client_home: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    command: list[str],
) -> None:
    url = live_server.url + suffix
    monkeypatch.setenv("ESCROW_SERVER", url)
    token = live_server.tokens["admin"]
    monkeypatch.setenv("ESCROW_TOKEN", token)
    r = cli(command)
    assert r.exit_code == 3, (r.exit_code, r.stderr)
    assert r.stderr.startswith(
        f"escrow: error: {url.rstrip('/')} is not the base URL of an escrow server: "
        "it has no /v1/checkpoint (404)."
    ), r.stderr
    assert "http://host:port" in r.stderr
    assert token not in r.stderr + r.stdout


def test_another_http_server_is_named(
    plain_http: str, client_home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SERVER", plain_http)
    monkeypatch.setenv("ESCROW_TOKEN", "escrow_abc")
    r = cli(["log"])
    assert r.exit_code == 3, (r.exit_code, r.stderr)
    assert r.stderr.startswith(
        f"escrow: error: {plain_http} is not the base URL of an escrow server: "
        "it has no /v1/checkpoint (404)."
    ), r.stderr
    assert "HTTP 404" not in r.stderr


def test_the_base_url_still_works(
    live_server: LiveServer, client_home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SERVER", live_server.url + "/")
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    r = cli(["show", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["index"] == 0
