"""A server (or anything between it and the client) that cannot sign checkpoints but edits
the fields of the entries it lists: the client must not believe them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpkit import loopback_server
from server_helpers import LiveServer, manifest

OTHER_IMAGE = "sha256:" + "e" * 64


@contextmanager
def lying_proxy(upstream: str, project: str, image_id: str) -> Iterator[str]:
    """Forwards every request to ``upstream``; in each entry it returns, ``project`` and
    ``image_id`` are replaced by "victim" and OTHER_IMAGE (the envelope, its hash and its
    proofs are left intact), and queries for those are asked as queries for the real ones."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")
            }
            if body is not None:
                headers["Content-Type"] = self.headers.get("Content-Type", "application/json")
            path = self.path.replace("victim", project)
            path = path.replace(
                OTHER_IMAGE.removeprefix("sha256:"), image_id.removeprefix("sha256:")
            )
            r = httpx.request(self.command, upstream + path, headers=headers, content=body)
            content = r.content
            if r.headers.get("content-type", "").startswith("application/json"):
                doc = r.json()
                listed = doc.get("entries") if isinstance(doc, dict) else None
                for e in listed if isinstance(listed, list) else [doc]:
                    if isinstance(e, dict) and e.get("project"):
                        e["project"], e["image_id"] = "victim", OTHER_IMAGE
                content = json.dumps(doc).encode()
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _forward

    with loopback_server(Handler) as address:
        yield f"http://{address}"


def test_edited_entry_fields_from_a_server_are_refused(
    live_server: LiveServer, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a server that edited an entry's project and image ID (not its envelope)
    had `escrow log --project victim` list it and `escrow verify <that image>` report it
    verified (exit 0)."""
    st = manifest("real")
    with live_server.client("pipeline") as c:
        r = c.post("/v1/entries", json=live_server.envelope(st))
        assert r.status_code == 201, r.text
        index = r.json()["entry"]["index"]
    with live_server.ledger() as ledger:
        key = ledger.verifier_key()
    with lying_proxy(live_server.url, "real", st["predicate"]["image"]["id"]) as url:
        monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "client"))
        monkeypatch.setenv("ESCROW_SERVER", url)
        monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
        monkeypatch.setenv("ESCROW_SERVER_KEY", key)
        r = cli(["verify", OTHER_IMAGE])
        assert r.exit_code == 1, r.stdout + r.stderr
        assert "Entry" not in r.stdout and "verified" not in r.stderr
        for args in (["log"], ["log", "--project", "victim"]):
            r = cli(args)
            assert r.exit_code == 1, r.stdout + r.stderr
            assert "victim" not in r.stdout
        assert "another project, image ID than its signed envelope states" in r.stderr
        r = cli(["show", str(index)])
        assert r.exit_code == 1, r.stdout + r.stderr
    # the same commands straight to the server are fine
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    r = cli(["log", "--project", "real"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "real" in r.stdout
