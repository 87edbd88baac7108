"""`escrow post` through a server stops — naming the line, exit 1 — when the server is not
the trusted one or its answer to a post does not verify, instead of reporting every
envelope as "rejected" (which they were not: the server took them) and going on to post
the rest to a server it cannot trust. Envelopes the server does refuse are still
rejected one by one."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpkit import loopback_server
from server_helpers import LiveServer, manifest

from escrow.ledger.checkpoint import verifier_key_line
from escrow.signing.dsse import sign_statement
from escrow.signing.keys import SigningKey


def test_a_server_signing_with_another_key_stops_the_post(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = live_server.envelopes_file(tmp_path / "envelopes.jsonl", 3)
    monkeypatch.setenv(
        "ESCROW_SERVER_KEY", verifier_key_line("escrow.local/ledger", SigningKey.generate().public)
    )

    r = cli(["post", str(source), "--json"])

    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["results"] == []
    assert doc["rejected"] == 0
    assert doc["stopped"]["line"] == 1
    assert "signs with the log key" in doc["stopped"]["error"]
    assert r.stderr.count("signs with the log key") == 1
    assert "stopped at line 1" in r.stderr


def _forging_proxy(upstream: str) -> type[BaseHTTPRequestHandler]:
    """A proxy to ``upstream`` that changes the signed note of the checkpoint it returns
    for a post."""

    class Forge(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(size) if size else None
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization",)}
            if body is not None:
                headers["content-type"] = "application/json"
            r = httpx.request(
                self.command, upstream + self.path, content=body, headers=headers, timeout=60
            )
            out = r.content
            if self.command == "POST" and r.status_code < 300:
                doc = r.json()
                lines = doc["checkpoint"]["note"].split("\n")
                lines[2] = ("B" if lines[2][0] == "A" else "A") + lines[2][1:]  # the root
                doc["checkpoint"]["note"] = "\n".join(lines)
                out = json.dumps(doc).encode()
            self.send_response(r.status_code)
            self.send_header("content-type", r.headers.get("content-type", "application/json"))
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _forward  # noqa: N815 - the handler's API

        def log_message(self, *args: Any) -> None:
            pass

    return Forge


def test_a_forged_checkpoint_in_the_answer_stops_the_post(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = live_server.envelopes_file(tmp_path / "envelopes.jsonl", 3)
    with loopback_server(_forging_proxy(live_server.url)) as address:
        monkeypatch.setenv("ESCROW_SERVER", f"http://{address}")
        r = cli(["post", str(source)])

    assert r.exit_code == 1, r.stderr
    assert "rejected" not in r.stdout
    assert "is not signed by the log key" in r.stderr
    assert "stopped at line 1" in r.stderr
    with live_server.ledger() as ledger:  # only the first was posted; the rest were not
        assert ledger.size() == 2


def test_envelopes_the_server_refuses_are_still_rejected_one_by_one(
    live_server: LiveServer, client_env: Path, cli: Any, tmp_path: Path
) -> None:
    good = live_server.envelopes_file(tmp_path / "envelopes.jsonl", 2).read_text().splitlines()
    stranger = sign_statement(manifest(), SigningKey.generate())  # no registered key
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join([good[0], json.dumps(stranger.to_dict()), good[1]]) + "\n")

    r = cli(["post", str(source), "--json"])

    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert [x["status"] for x in doc["results"]] == ["appended", "rejected", "appended"]
    assert "stopped" not in doc
