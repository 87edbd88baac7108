"""A change request without an active token is refused before its body is read, and a
client that goes away mid-body is one log line, not a crash."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlsplit

import pytest
from server_helpers import LiveServer


def _send_head(url: str, path: str, headers: dict[str, str], length: int) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer esc_not-a-token"}, {"Authorization": "Basic abc"}],
    ids=["no-token", "unknown-token", "other-scheme"],
)
def test_no_valid_token_is_refused_before_the_body(
    live_server: LiveServer, headers: dict[str, str]
) -> None:
    """Routes whose body FastAPI parses (/v1/tokens, /v1/keys, /v1/packs) read and parsed
    the whole body before checking the token: anyone could make the server hold the body
    limit per connection. Here the body is announced and never sent: the answer must come
    without it."""
    sock = _send_head(
        live_server.url,
        "/v1/tokens",
        {"Content-Type": "application/json", **headers},
        200_000,
    )
    try:
        answer = sock.recv(4096).decode("latin-1")  # times out (10 s) if the body is awaited
    finally:
        sock.close()
    assert answer.startswith("HTTP/1.1 401"), answer
    assert 'Bearer realm="escrow"' in answer


def test_a_client_gone_mid_body_is_not_a_crash(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = live_server.tokens["pipeline"]
    with caplog.at_level(logging.INFO):
        sock = _send_head(
            live_server.url,
            "/v1/entries",
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            100_000,
        )
        sock.sendall(b'{"payload": "')
        sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            "disconnected" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert any("the client disconnected before its body was in" in m for m in messages), messages
    assert not any("crashed" in m for m in messages), messages
    assert all(r.exc_info is None for r in caplog.records if "disconnect" in r.getMessage())
    # and the server still answers
    with live_server.client("auditor") as c:
        assert c.get("/v1/checkpoint").status_code == 200
