"""`https://` to a port that answers plain HTTP (as `escrow serve` does) says so.

Regression: the error was "Cannot reach the escrow server https://…: [SSL:
WRONG_VERSION_NUMBER] wrong version number (_ssl.c:…). Check ESCROW_SERVER and that
`escrow serve` is running." — true, and no help: the server is running."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def plain_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_tls_to_a_plain_http_port_says_to_use_http(
    escrow_home: Any, cli: Any, plain_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SERVER", f"https://127.0.0.1:{plain_port}")
    monkeypatch.setenv("ESCROW_TOKEN", "escrow_x")
    r = cli(["log"])
    assert r.exit_code == 3, r.stderr
    assert f"speaks plain HTTP: use http://127.0.0.1:{plain_port}" in r.stderr, r.stderr
    assert "escrow_x" not in r.stderr


def test_other_failures_keep_the_usual_hint(
    escrow_home: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SERVER", "https://127.0.0.1:1")
    monkeypatch.setenv("ESCROW_TOKEN", "escrow_x")
    r = cli(["log"])
    assert r.exit_code == 3, r.stderr
    assert "Check ESCROW_SERVER and that `escrow serve` is running." in r.stderr
