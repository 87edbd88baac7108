"""`escrow post` through a server whose connection is cut after an envelope was sent (a
server stopped or restarted mid-request, a proxy's cut): the server may have appended it.
The post is made again at once (appends are idempotent), and when the server answers no
more, the message says that the line it stopped at may have been appended — it said
"none from it on", which was false for that line."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
from httpkit import loopback_server
from server_helpers import LiveServer


def _cutting_proxy(upstream: str, cut: set[int], dead_from: int | None) -> Any:
    """A proxy to ``upstream`` that forwards every request; the answers to the POSTs
    numbered in ``cut`` (from 1) are not sent (the connection is closed instead), and
    from POST number ``dead_from`` on nothing is forwarded any more."""
    posts = {"n": 0}
    lock = threading.Lock()

    class Cut(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(size) if size else None
            number = 0
            if self.command == "POST":
                with lock:
                    posts["n"] += 1
                    number = posts["n"]
                if dead_from is not None and number >= dead_from:
                    self.close_connection = True
                    return  # gone: closed without an answer, nothing forwarded
            headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
            if body is not None:
                headers["content-type"] = "application/json"
            r = httpx.request(
                self.command, upstream + self.path, content=body, headers=headers, timeout=60
            )
            if number in cut:
                self.close_connection = True
                return  # appended upstream; the answer is lost
            self.send_response(r.status_code)
            self.send_header("content-type", r.headers.get("content-type", "application/json"))
            self.send_header("content-length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        do_GET = do_POST = _forward  # noqa: N815 - the handler's API

        def log_message(self, *args: Any) -> None:
            pass

    return Cut


def test_a_post_whose_answer_was_lost_is_made_again(
    live_server: LiveServer, client_env: Path, cli: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    source = live_server.envelopes_file(tmp_path / "envelopes.jsonl", 3)
    with loopback_server(_cutting_proxy(live_server.url, {2}, None)) as address:
        monkeypatch.setenv("ESCROW_SERVER", f"http://{address}")
        r = cli(["post", str(source), "--json"])

    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    # the second was appended by the first try, whose answer was lost: the second try
    # finds it there
    assert [x["status"] for x in doc["results"]] == ["appended", "exists", "appended"]
    with live_server.ledger() as ledger:
        assert ledger.size() == 4  # the key event and the three, each once


def test_a_server_gone_after_a_post_was_sent_says_the_line_may_be_appended(
    live_server: LiveServer, client_env: Path, cli: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    source = live_server.envelopes_file(tmp_path / "envelopes.jsonl", 3)
    with loopback_server(_cutting_proxy(live_server.url, {2}, 3)) as address:
        monkeypatch.setenv("ESCROW_SERVER", f"http://{address}")
        r = cli(["post", str(source)])

    assert r.exit_code == 3, r.stderr
    assert "stopped at line 2, which the server may have appended" in r.stderr, r.stderr
    assert "none from it on" not in r.stderr
    with live_server.ledger() as ledger:
        assert ledger.size() == 3  # it was: the key event, line 1 and line 2
