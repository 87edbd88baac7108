"""A client that sends its request a byte now and then — its headers, or its body — or
nothing at all, does not hold a connection of `escrow serve` for ever: once the request
has taken `--request-timeout` seconds to arrive it gets a JSON 408 and the connection is
closed. Uvicorn alone waits as long as bytes keep coming (its keep-alive timer stops at a
request's first byte), so a few hundred such clients, a pipeline token each or none at
all, would take every connection of `--max-connections`. Fast clients on a kept-alive
connection are not cut off, however long the connection lives."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port, make_tokens, start_serve, stop

pytestmark = pytest.mark.slow

#: the request timeout the server is started with
TIMEOUT_S = 1
#: how long the test client keeps trickling before it gives up (a server without a
#: request timeout answers only once the whole request is in, long after this)
TRICKLE_S = 20.0


@pytest.fixture
def server(escrow_home: Path, tmp_path: Path) -> Iterator[tuple[int, dict[str, str], Path]]:
    from escrow.config import load_settings

    settings = load_settings()
    tokens = make_tokens(settings)
    port = free_port()
    log = tmp_path / "serve.log"
    proc: subprocess.Popen[bytes] = start_serve(
        escrow_home,
        settings.db_url,
        port=port,
        log=log,
        extra=["--request-timeout", str(TIMEOUT_S), "--no-packs"],
    )
    try:
        yield port, tokens, log
    finally:
        stop(proc)


def _trickle(port: int, head: bytes, body: bytes) -> bytes:
    """Send ``head`` and then ``body``, a byte every 0.2 s (``head`` too when ``body`` is
    empty), and return what the server answered before the whole request was out (b""
    when it answered nothing by then)."""
    sent = head if body else b""
    slow = body or head
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if sent:
            sock.sendall(sent)
        deadline = time.monotonic() + TRICKLE_S
        for i in range(len(slow) - 1):  # never the last byte: the request stays unfinished
            try:
                sock.sendall(slow[i : i + 1])
            except OSError:
                break  # closed by the server: read what it said
            sock.settimeout(0.2)
            try:
                got = sock.recv(65536)
            except TimeoutError:
                if time.monotonic() > deadline:
                    return b""
                continue
            sock.settimeout(10)
            answer = got
            while got:
                got = sock.recv(65536)
                answer += got
            return answer
        sock.settimeout(10)
        try:
            return sock.recv(65536)
        except OSError:
            return b""


def _json_408(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    doc = json.loads(body)
    assert isinstance(doc, dict)
    return doc


def test_a_body_sent_a_byte_at_a_time_gets_408(
    server: tuple[int, dict[str, str], Path],
) -> None:
    port, tokens, log = server
    body = json.dumps({"payload": "eA==", "payloadType": "x", "signatures": []}).encode()
    body += b" " * (200 - len(body))
    head = (
        f"POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {tokens['pipeline']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    doc = _json_408(_trickle(port, head, body))

    assert doc["error"] == "request_timeout"
    assert doc["message"] == f"The request did not arrive in whole within {TIMEOUT_S} s."
    assert "did not arrive within" in log.read_text()
    # the server serves on
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200


def test_headers_sent_a_byte_at_a_time_get_408(
    server: tuple[int, dict[str, str], Path],
) -> None:
    port, _, _ = server
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: {'a' * 150}\r\n\r\n"

    doc = _json_408(_trickle(port, head.encode(), b""))

    assert doc["error"] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed(
    server: tuple[int, dict[str, str], Path],
) -> None:
    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=TRICKLE_S) as sock:
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            pytest.fail("The server kept an idle connection open.")
    assert _json_408(answer)["error"] == "request_timeout"


def test_fast_requests_on_a_kept_alive_connection_are_not_cut_off(
    server: tuple[int, dict[str, str], Path],
) -> None:
    port, tokens, _ = server
    headers = {"Authorization": f"Bearer {tokens['pipeline']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
        statuses = []
        for _ in range(4):  # longer in all than the request timeout, on one connection
            statuses.append(c.get("/v1/checkpoint").status_code)
            statuses.append(c.post("/v1/entries", json={}).status_code)
            time.sleep(TIMEOUT_S * 0.6)
    assert statuses == [200, 422] * 4


def test_a_client_still_sending_after_the_timeout_reads_the_408(
    server: tuple[int, dict[str, str], Path],
) -> None:
    """The server shuts its sending side and drops what arrives after the 408 for a
    while (RFC 9112 §9.6). Closed at once, its kernel answered the client's next bytes
    with a reset, which threw away the 408 waiting unread at the client: the client saw
    "connection reset by peer" (and the suite failed now and then on it)."""
    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(TIMEOUT_S + 0.5)  # the deadline passes: the 408 is sent
        for _ in range(5):  # the client, not reading yet, sends on
            sock.sendall(b"X-Pad: " + b"a" * 100 + b"\r\n")
            time.sleep(0.05)
        time.sleep(0.3)
        answer = b""
        while got := sock.recv(65536):
            answer += got
    assert _json_408(answer)["error"] == "request_timeout"
