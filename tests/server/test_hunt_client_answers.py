"""`escrow --server …` against a real `escrow serve` reached through a proxy that answers
for it (a proxy's HTML page, a redirect, broken JSON) or lies (another entry than the one
asked for, pages of entries that repeat or skip, entries outside the filter): each is
refused in one sentence with exit 3 (not an escrow answer) or 1 (a check failed), never
a traceback and never trusted."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import LiveServer, manifest

from escrow.server import client as client_mod

#: (status, headers, body) of an answer the proxy gives instead of the server's, or None
Forge = Callable[[str, str, int, bytes], tuple[int, dict[str, str], bytes] | None]


@contextmanager
def proxy(upstream: str, forge: Forge) -> Iterator[str]:
    """A loopback HTTP proxy to ``upstream`` whose answers ``forge`` may replace (it is
    given the method, the path with its query, and the server's status and body)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else None
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("authorization", "content-type", "accept")
            }
            r = httpx.request(
                self.command, upstream + self.path, content=body, headers=headers, timeout=60
            )
            answer = forge(self.command, self.path, r.status_code, r.content)
            if answer is None:
                ctype = r.headers.get("content-type", "application/json")
                answer = (r.status_code, {"content-type": ctype}, r.content)
            status, extra, data = answer
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def _post(live_server: LiveServer, projects: list[str]) -> list[int]:
    with live_server.ledger() as ledger:
        return [
            ledger.append(json.dumps(live_server.envelope(manifest(p))))[0].index for p in projects
        ]


def _json(edit: Callable[[Any], Any]) -> Callable[[bytes], tuple[int, dict[str, str], bytes]]:
    def answer(body: bytes) -> tuple[int, dict[str, str], bytes]:
        return (
            200,
            {"content-type": "application/json"},
            json.dumps(edit(json.loads(body))).encode(),
        )

    return answer


def _one_sentence(stderr: str) -> str:
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("escrow: trusting the log key")  # first use
    ]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("escrow: error: "), stderr
    return lines[0]


HTML = (200, {"content-type": "text/html"}, b"<html><body>Sign in to the proxy</body></html>")


def _no_hashes(d: Any) -> Any:
    return {**d, "hashes": ["not hex"]}


@pytest.mark.parametrize(
    ("where", "answer", "said"),
    [
        ("/v1/checkpoint", lambda body: HTML, "with text/html, not JSON"),
        (
            "/v1/checkpoint",
            lambda body: (302, {"location": "https://login.example/sso?t=x"}, b""),
            "answered 302, a redirect to https://login.example/sso; escrow follows no redirects",
        ),
        (
            "/v1/checkpoint",
            lambda body: (200, {"content-type": "application/json"}, b'{"size": 1'),
            "a body that is not valid JSON",
        ),
        (
            "/v1/checkpoint",
            lambda body: (200, {"content-type": "application/json"}, b"[]"),
            "JSON that is not an object",
        ),
        ("/v1/checkpoint", _json(lambda d: {**d, "size": None}), "cannot read"),
        (
            "/v1/entries/1",
            _json(lambda d: {k: v for k, v in d.items() if k != "integrated_at"}),
            "cannot read (no field 'integrated_at')",
        ),
        ("/v1/entries/1/proof", _json(_no_hashes), "cannot read"),
        ("/v1/entries/1", lambda body: HTML, "answered GET /v1/entries/1 with text/html"),
    ],
)
def test_an_answer_that_is_no_escrow_answer_is_one_sentence_exit_3(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    answer: Callable[[bytes], tuple[int, dict[str, str], bytes]],
    said: str,
) -> None:
    _post(live_server, ["hunt-a", "hunt-b"])

    def forge(method: str, path: str, status: int, body: bytes) -> Any:
        return answer(body) if path.split("?")[0] == where else None

    with proxy(live_server.url, forge) as url:
        monkeypatch.setenv("ESCROW_SERVER", url)
        r = cli(["show", "1"])

    assert r.exit_code == 3, r.stderr
    line = _one_sentence(r.stderr)
    assert said in line
    assert "?t=x" not in line
    assert r.stdout == ""


def test_an_entry_other_than_the_one_asked_for_is_refused(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, other = _post(live_server, ["hunt-a", "hunt-b"])
    token = live_server.tokens["pipeline"]
    entry_other = httpx.get(
        f"{live_server.url}/v1/entries/{other}", headers={"Authorization": f"Bearer {token}"}
    ).content

    def forge(method: str, path: str, status: int, body: bytes) -> Any:
        if path == f"/v1/entries/{first}":  # the other entry, its proof verifies as its own
            return 200, {"content-type": "application/json"}, entry_other
        return None

    with proxy(live_server.url, forge) as url:
        monkeypatch.setenv("ESCROW_SERVER", url)
        verified = cli(["verify", str(first)])
        shown = cli(["ledger", "leaf", str(first)])

    for r in (verified, shown):
        assert r.exit_code == 1, r.stdout + r.stderr
        assert _one_sentence(r.stderr) == (
            f"escrow: error: The escrow server {url} answered entry {other} when asked for "
            f"entry {first}."
        )
    assert "verified" not in verified.stdout
    assert shown.stdout == ""


def test_log_pages_follow_the_listed_entries_not_a_cursor_that_goes_back(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexes = _post(live_server, ["hunt-page"] * 5)
    monkeypatch.setattr(client_mod, "MAX_PAGE", 2)  # pages of 2 entries

    def forge(method: str, path: str, status: int, body: bytes) -> Any:
        if method == "GET" and path.startswith("/v1/entries?"):
            return _json(lambda d: {**d, "next_cursor": 0 if d["next_cursor"] else None})(body)
        return None

    with proxy(live_server.url, forge) as url:
        monkeypatch.setenv("ESCROW_SERVER", url)
        r = cli(["log", "--project", "hunt-page", "--json"])

    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == indexes


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (
            lambda d: {**d, "entries": d["entries"] + d["entries"][:1]},
            "is out of order or repeats entries",
        ),
        (lambda d: {**d, "entries": d["entries"][::-1]}, "is out of order or repeats entries"),
    ],
)
def test_a_list_of_entries_that_repeats_or_goes_back_is_refused(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[Any], Any],
    said: str,
) -> None:
    _post(live_server, ["hunt-dup"] * 3)

    def forge(method: str, path: str, status: int, body: bytes) -> Any:
        if method == "GET" and path.startswith("/v1/entries?"):
            return _json(edit)(body)
        return None

    with proxy(live_server.url, forge) as url:
        monkeypatch.setenv("ESCROW_SERVER", url)
        r = cli(["log", "--project", "hunt-dup"])

    assert r.exit_code == 1, r.stdout + r.stderr
    assert said in _one_sentence(r.stderr)
    assert r.stdout == ""


def test_entries_outside_the_filter_are_refused(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _post(live_server, ["hunt-other", "hunt-wanted"])
    token = live_server.tokens["pipeline"]

    def forge(method: str, path: str, status: int, body: bytes) -> Any:
        if method == "GET" and path.startswith("/v1/entries?"):  # the filter ignored
            everything = httpx.get(
                f"{live_server.url}/v1/entries", headers={"Authorization": f"Bearer {token}"}
            )
            return 200, {"content-type": "application/json"}, everything.content
        return None

    with proxy(live_server.url, forge) as url:
        monkeypatch.setenv("ESCROW_SERVER", url)
        r = cli(["log", "--project", "hunt-wanted", "--json"])

    assert r.exit_code == 1, r.stdout + r.stderr
    assert _one_sentence(r.stderr) == (
        f"escrow: error: The escrow server {url} listed entry 0, whose project is None, "
        "for the filter project='hunt-wanted'."
    )
    assert r.stdout == ""


def test_429_is_tried_again_then_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "RETRY_FOR_S", 0.2)
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(
            429,
            json={"error": "rate_limited", "message": "Too many requests"},
            headers={"Retry-After": "0"},
        )

    lg = client_mod.RemoteLedger(
        "http://escrow.test:8080", "tok", home=tmp_path, transport=httpx.MockTransport(handle)
    )
    with pytest.raises(client_mod.ServerUnavailable) as e:
        lg.checkpoint()
    assert e.value.exit_code == 3
    assert len(seen) > 1  # tried again, as a 503 is
    assert e.value.diagnostics() == (
        "The escrow server http://escrow.test:8080 answered 429: Too many requests. "
        "Try again later."
    )


def test_a_tree_size_beyond_the_log_is_said_as_a_local_ledger_says_it(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _post(live_server, ["hunt-size"])
    with live_server.ledger() as ledger:
        size = ledger.size()
        monkeypatch.setenv("ESCROW_SERVER_KEY", ledger.verifier_key())  # no first-use line
    remote = [
        cli(["ledger", "proof", "0", "--tree-size", "500"]),
        cli(["ledger", "consistency", "1", "500"]),
    ]
    monkeypatch.delenv("ESCROW_SERVER")
    monkeypatch.setenv("ESCROW_HOME", str(live_server.home))
    local = [
        cli(["ledger", "proof", "0", "--tree-size", "500"]),
        cli(["ledger", "consistency", "1", "500"]),
    ]
    for r, here in zip(remote, local, strict=True):
        assert (r.exit_code, r.stderr) == (here.exit_code, here.stderr)
        assert r.exit_code == 2
        assert r.stderr == (
            f"escrow: error: The tree size 500 is not between 0 and the log's size {size}.\n"
        )


def test_a_proof_that_does_not_verify_names_where_to_audit(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a forged proof for an older tree size said "Run `escrow ledger verify`",
    which does not work through a server: it reads the database itself."""
    first, *_ = _post(live_server, ["hunt-p1", "hunt-p2", "hunt-p3"])

    def flip(d: Any) -> Any:
        hashes = list(d["hashes"])
        hashes[0] = ("0" if hashes[0][0] != "0" else "1") + hashes[0][1:]
        return {**d, "hashes": hashes}

    forged = _json(flip)

    def forge(method: str, path: str, status: int, body: bytes) -> Any:
        if path.startswith(f"/v1/entries/{first}/proof") and "tree_size=2" in path:
            return forged(body)
        return None

    with proxy(live_server.url, forge) as url:
        monkeypatch.setenv("ESCROW_SERVER", url)
        r = cli(["ledger", "proof", str(first), "--tree-size", "2", "--json"])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert f"Run `escrow ledger verify` on the host of {url}." in r.stderr, r.stderr
