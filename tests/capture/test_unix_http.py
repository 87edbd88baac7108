"""escrow's HTTP/1.1 client for the engine's Unix socket, against canned answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from escrow.capture.engine import EngineHTTPError, _json_messages, _LocalSocket
from escrow.errors import EngineUnavailable


class Canned:
    """A one-connection-at-a-time server: records each request, sends ``answer``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self.answer = b""
        self.early = False  # answer after the head, without reading the body, and hang up
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                if self.early:
                    self.requests.append(data)
                    conn.sendall(self.answer)
                    continue
                if b"chunked" in data.split(b"\r\n\r\n", 1)[0]:
                    while not data.endswith(b"0\r\n\r\n"):
                        data += conn.recv(65536)
                self.requests.append(data)
                try:
                    conn.sendall(self.answer)
                except OSError:  # the client hung up (a test of that)
                    pass


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[Canned]:
    c = Canned(tmp_path / "engine.sock")
    yield c
    c.server.close()


def test_a_chunked_answer_read_in_small_pieces(canned: Canned) -> None:
    canned.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"a": 1\r\n5;ext=1\r\n}{"b"\r\n4\r\n: 2}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    r = _LocalSocket(canned.path).request("GET", "/x")
    assert r.read1(0) == b"" and r.read(0) == b""
    assert r.read1(3) == b'{"a'  # never more than asked, never past a chunk
    assert r.read1(-1) == b'": 1'
    assert r.read() == b'}{"b": 2}'
    assert r.read() == b"" and r.read1(5) == b""
    r.close()
    r = _LocalSocket(canned.path).request("GET", "/x")
    assert list(_json_messages(r)) == [{"a": 1}, {"b": 2}]
    r.close()


def test_a_body_of_a_known_length_and_one_read_to_the_end(canned: Canned) -> None:
    canned.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and more"
    r = _LocalSocket(canned.path).request("GET", "/x")
    assert r.read(100) == b"hello"  # the length, not what follows
    r.close()
    canned.answer = b"HTTP/1.0 200 OK\r\n\r\nto the end"
    r = _LocalSocket(canned.path).request("GET", "/x")
    assert r.read(4) == b"to t" and r.read() == b"he end"
    r.close()


def test_the_request_body_goes_chunked_and_interim_answers_are_skipped(canned: Canned) -> None:
    canned.answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    r = _LocalSocket(canned.path).request(
        "POST",
        "/build?t=a",
        body=iter([b"abc", b"", b"0123456789abcdef"]),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status == 204 and r.read() == b""
    r.close()
    head, body = canned.requests[-1].split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /build?t=a HTTP/1.1\r\n")
    assert b"Content-Type: application/x-tar" in head and b"Transfer-Encoding: chunked" in head
    assert body == b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
    _LocalSocket(canned.path).request("POST", "/images/x/tag").close()
    assert b"Content-Length: 0" in canned.requests[-1]


def test_an_error_status_carries_the_engines_message(canned: Canned) -> None:
    canned.answer = (
        b'HTTP/1.1 404 Not Found\r\nContent-Length: 32\r\n\r\n{"message": "No such image: x"}\n'
    )
    with pytest.raises(EngineHTTPError) as e:
        _LocalSocket(canned.path).request("GET", "/images/x/json")
    assert e.value.status == 404 and e.value.message == "No such image: x"


def test_a_connection_cut_mid_answer_is_an_engine_problem(canned: Canned) -> None:
    canned.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"
    r = _LocalSocket(canned.path).request("GET", "/x")
    with pytest.raises(ConnectionError):
        r.read()
    r.close()
    canned.answer = b"garbage\r\n\r\n"
    with pytest.raises(EngineUnavailable, match="not reachable"):
        _LocalSocket(canned.path).request("GET", "/x")


def test_no_engine_on_the_socket(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="not reachable"):
        _LocalSocket(str(tmp_path / "absent.sock")).request("GET", "/x")


def test_on_sent_runs_once_the_whole_body_is_on_the_socket(canned: Canned) -> None:
    """``escrow build`` starts its background work then: not before the end of the
    body, which the engine waits for before it builds."""
    import time

    canned.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    complete: list[bool] = []

    def on_sent() -> None:
        # the server answers only once it has read the body's last chunk: called any
        # earlier (the end still unsent), this would wait in vain
        deadline = time.monotonic() + 10
        while not canned.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        complete.append(bool(canned.requests))

    r = _LocalSocket(canned.path).request(
        "POST", "/build", body=iter([b"abc", b"def"]), on_sent=on_sent
    )
    assert r.read() == b"ok" and complete == [True]
    r.close()
    assert canned.requests[-1].endswith(b"3\r\ndef\r\n0\r\n\r\n")

    def fails() -> None:
        raise RuntimeError("on_sent failed")

    with pytest.raises(RuntimeError, match="on_sent failed"):
        _LocalSocket(canned.path).request("POST", "/build", body=iter([b"x"]), on_sent=fails)


def test_an_answer_sent_before_the_body_was_read_is_reported(canned: Canned) -> None:
    """The engine refuses some requests (a bad option) before it reads the context, and
    hangs up: its answer is the error to report, not "the engine is not reachable"."""
    canned.early = True
    canned.answer = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 36\r\n"
        b'\r\n{"message": "invalid reference x"}\n\n'
    )
    body = iter([b"x" * (1 << 20)] * 64)  # more than the socket buffers take
    with pytest.raises(EngineHTTPError) as e:
        _LocalSocket(canned.path).request("POST", "/build", body=body)
    assert e.value.status == 400 and e.value.message == "invalid reference x"
