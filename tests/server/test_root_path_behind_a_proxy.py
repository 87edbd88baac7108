"""`escrow serve --root-path /escrow` behind a reverse proxy that publishes it under /escrow
and strips the prefix (nginx `location /escrow/ { proxy_pass http://127.0.0.1:8080/; }`):
every link the server hands out (the pack job's Location and pdf_url, /docs, the OpenAPI
`servers`) carries the prefix, the server still answers the stripped paths, and the CLI
works through the proxy. Without the option nothing changes. A bad prefix is one sentence,
exit 2."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpkit import loopback_server
from server_helpers import free_port, make_tokens, manifest, start_serve, stop

pytestmark = pytest.mark.slow

PREFIX = "/escrow"
#: hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy sets itself
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}


@dataclass
class Seen:
    """One request the proxy forwarded, and the server's answer."""

    method: str
    path: str  # as the client asked the proxy, prefix included
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Proxy:
    url: str  # the public base URL: http://127.0.0.1:PORT/escrow
    seen: list[Seen] = field(default_factory=list)


def _strip(path: str) -> str | None:
    """The upstream path of a public one: ``/escrow/x`` is ``/x``; others are not published."""
    return path[len(PREFIX) :] if path.startswith(PREFIX + "/") else None


Rewrite = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


def _stripping_handler(
    backend_port: int,
    seen: list[Seen],
    *,
    route: Callable[[str], str | None] = _strip,
    rewrite: Rewrite | None = None,
) -> type:
    """A handler forwarding ``/escrow/...`` to ``127.0.0.1:backend_port`` as ``/...``, as
    nginx's ``location /escrow/ { proxy_pass http://backend/; }`` does; anything else is
    the proxy's own 404. ``route`` maps the public paths to the server's, ``rewrite``
    changes the answers' headers and bodies."""

    class StripPrefix(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            upstream = route(self.path)
            if upstream is None:
                self.send_error(404, "not published by this proxy")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=120)
            try:
                conn.request(self.command, upstream, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                got = {k.lower(): v for k, v in answer.getheaders()}
            finally:
                conn.close()
            seen.append(Seen(self.command, self.path, answer.status, got, data))
            if rewrite is not None:
                got, data = rewrite(got, data)
            self.send_response(answer.status)
            for k, v in got.items():
                if k not in _HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815 - the handler's API

        def log_message(self, *args: Any) -> None:
            pass

    return StripPrefix


def _json_rewrite(change: Callable[[Any], Any]) -> Rewrite:
    def rewrite(headers: dict[str, str], data: bytes) -> tuple[dict[str, str], bytes]:
        if headers.get("content-type") == "application/json":
            data = json.dumps(change(json.loads(data))).encode()
        return headers, data

    return rewrite


@dataclass
class Served:
    port: int  # escrow serve's own port (the stripped paths)
    tokens: dict[str, str]
    settings: Any
    proc: subprocess.Popen[bytes]


@contextmanager
def _serve(home: Path, tmp_path: Path, extra: list[str]) -> Iterator[Served]:
    from escrow.config import load_settings

    settings = load_settings()
    tokens = make_tokens(settings)
    port = free_port()
    proc = start_serve(home, settings.db_url, port=port, log=tmp_path / "serve.log", extra=extra)
    try:
        yield Served(port, tokens, settings, proc)
    finally:
        stop(proc)


@pytest.fixture
def prefixed(escrow_home: Path, tmp_path: Path) -> Iterator[Served]:
    """``escrow serve --root-path /escrow`` (rendering pack jobs) on a loopback port."""
    with _serve(escrow_home, tmp_path, ["--root-path", PREFIX]) as served:
        yield served


@pytest.fixture
def proxy(prefixed: Served) -> Iterator[Proxy]:
    seen: list[Seen] = []
    with loopback_server(_stripping_handler(prefixed.port, seen)) as address:
        yield Proxy(f"http://{address}{PREFIX}", seen)


@pytest.fixture
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: Proxy) -> Path:
    """An auditor's or pipeline's ESCROW_HOME, with ESCROW_SERVER the proxy's URL."""
    home = tmp_path / "client-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", proxy.url)
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    return home


def test_the_cli_works_through_a_prefix_stripping_proxy_and_every_link_has_the_prefix(
    prefixed: Served,
    proxy: Proxy,
    client_home: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    key = SigningKey.load(prefixed.settings.key_path)
    envelope = tmp_path / "envelope.json"
    envelope.write_bytes(sign_statement(manifest("behind-proxy"), key).to_bytes())

    monkeypatch.setenv("ESCROW_TOKEN", prefixed.tokens["pipeline"])
    posted = cli(["post", str(envelope), "--json"])
    assert posted.exit_code == 0, posted.stderr
    index = posted.json()["results"][0]["index"]
    assert ("POST", f"{PREFIX}/v1/entries", 201) in [
        (s.method, s.path, s.status) for s in proxy.seen
    ]

    monkeypatch.setenv("ESCROW_TOKEN", prefixed.tokens["auditor"])
    listed = cli(["log", "--project", "behind-proxy", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert [e["index"] for e in listed.json()["entries"]] == [index]
    verified = cli(["verify", str(index), "--json"])
    assert verified.exit_code == 0, verified.stdout + verified.stderr

    pdf = tmp_path / "pack.pdf"
    packed = cli(["pack", "--project", "behind-proxy", "-o", str(pdf), "--json"])
    assert packed.exit_code == 0, packed.stdout + packed.stderr
    job_id = packed.json()["job"]
    queued = next(s for s in proxy.seen if (s.method, s.path) == ("POST", f"{PREFIX}/v1/packs"))
    assert queued.status == 202 and queued.json()["id"] == job_id
    # the links the server handed out lead back through the proxy
    assert queued.headers["location"] == f"{PREFIX}/v1/packs/{job_id}"
    done = [s.json() for s in proxy.seen if s.path == f"{PREFIX}/v1/packs/{job_id}"]
    assert done and done[-1]["status"] == "succeeded", done
    assert done[-1]["pdf_url"] == f"{PREFIX}/v1/packs/{job_id}/pdf"
    fetched = [s for s in proxy.seen if s.path == done[-1]["pdf_url"]]
    assert [s.status for s in fetched] == [200]
    assert fetched[0].body == pdf.read_bytes()
    assert cli(["pack", "verify", str(pdf)]).exit_code == 0

    # the API description and its page, through the proxy
    with httpx.Client(timeout=60) as c:
        docs = c.get(f"{proxy.url}/docs")
        assert docs.status_code == 200
        assert f"'{PREFIX}/openapi.json'" in docs.text or f'"{PREFIX}/openapi.json"' in docs.text
        spec = c.get(f"{proxy.url}/openapi.json")
        assert spec.status_code == 200
        assert spec.json()["servers"][0] == {"url": PREFIX}
        assert "/v1/packs" in spec.json()["paths"]  # paths are relative to the server URL
        # an error names the path as the client asked for it
        missing = c.get(f"{proxy.url}/v1/nothing-here", headers=_auth(prefixed, "auditor"))
        assert missing.status_code == 404
        assert missing.json()["message"] == f"There is no resource at {PREFIX}/v1/nothing-here."


def _auth(served: Served, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens[role]}"}


def test_a_change_without_a_token_is_still_refused_before_its_body(prefixed: Served) -> None:
    """The guard refuses a change request without a valid token before reading its body,
    checking that its path is under /v1/; with a root path the request's path begins with
    the prefix, so that check must be made on the path the routes see. The body is
    announced and never sent: the answer must come without it."""
    sock = socket.create_connection(("127.0.0.1", prefixed.port), timeout=20)
    try:
        sock.sendall(
            b"POST /v1/tokens HTTP/1.1\r\nHost: escrow\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200000\r\n\r\n"
        )
        answer = sock.recv(4096).decode("latin-1")  # times out if the body is awaited
    finally:
        sock.close()
    assert answer.startswith("HTTP/1.1 401"), answer
    assert 'Bearer realm="escrow"' in answer


def test_without_a_root_path_nothing_changes(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    monkeypatch.delenv("ESCROW_SERVER_ROOT_PATH", raising=False)
    with _serve(escrow_home, tmp_path, []) as served:
        key = SigningKey.load(served.settings.key_path)
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=60) as c:
            env = sign_statement(manifest("unprefixed"), key).to_dict()
            assert c.post("/v1/entries", json=env, headers=_auth(served, "pipeline")).is_success
            job = c.post(
                "/v1/packs", json={"projects": ["unprefixed"]}, headers=_auth(served, "auditor")
            )
            assert job.status_code == 202, job.text
            assert job.headers["location"] == f"/v1/packs/{job.json()['id']}"
            docs = c.get("/docs")
            assert "'/openapi.json'" in docs.text or '"/openapi.json"' in docs.text
            assert "servers" not in c.get("/openapi.json").json()
            refused = c.post("/v1/tokens", json={"name": "x", "role": "admin"})
            assert refused.status_code == 401
            done = _finished(c, job.headers["location"], _auth(served, "auditor"))
            assert done["pdf_url"] == f"/v1/packs/{done['id']}/pdf"
            pdf = c.get(done["pdf_url"], headers=_auth(served, "auditor"))
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")


def _finished(c: httpx.Client, location: str, headers: dict[str, str]) -> dict[str, Any]:
    """The pack job at ``location`` once it is no longer queued or running."""
    import time

    deadline = time.monotonic() + 600
    while True:
        job: dict[str, Any] = c.get(location, headers=headers).json()
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "succeeded", job
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"The pack job did not finish: {job}")
        time.sleep(0.5)


def _pack_through(proxy_url: str, tmp_path: Path, cli: Any, served: Served) -> Path:
    """Post a build and make its pack with the CLI through ``proxy_url``; the PDF's path."""
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    key = SigningKey.load(served.settings.key_path)
    envelope = tmp_path / "envelope.json"
    envelope.write_bytes(sign_statement(manifest("proxied"), key).to_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(tmp_path / "client-home"))
        mp.setenv("ESCROW_SERVER", proxy_url)
        mp.delenv("ESCROW_SERVER_KEY", raising=False)
        mp.setenv("ESCROW_TOKEN", served.tokens["pipeline"])
        posted = cli(["post", str(envelope)])
        assert posted.exit_code == 0, posted.stderr
        mp.setenv("ESCROW_TOKEN", served.tokens["auditor"])
        pdf = tmp_path / "pack.pdf"
        packed = cli(["pack", "--project", "proxied", "-o", str(pdf)])
        assert packed.exit_code == 0, packed.stdout + packed.stderr
        assert cli(["pack", "verify", str(pdf)]).exit_code == 0
    return pdf


def test_a_server_without_the_root_path_still_works_through_the_proxy(
    escrow_home: Path, tmp_path: Path, cli: Any
) -> None:
    """Its links lack the prefix; the CLI then uses the paths it knows under ESCROW_SERVER,
    as before."""
    seen: list[Seen] = []
    with (
        _serve(escrow_home, tmp_path, []) as served,
        loopback_server(_stripping_handler(served.port, seen)) as address,
    ):
        _pack_through(f"http://{address}{PREFIX}", tmp_path, cli, served)
    jobs = [s.json() for s in seen if re.fullmatch(f"{PREFIX}/v1/packs/[0-9a-f]+", s.path)]
    assert jobs and jobs[-1]["pdf_url"].startswith("/v1/packs/"), jobs[-1]
    assert any(s.path == PREFIX + jobs[-1]["pdf_url"] and s.status == 200 for s in seen)


def test_a_pdf_url_on_another_host_does_not_get_the_token(
    prefixed: Served, tmp_path: Path, cli: Any
) -> None:
    """The client follows the links a server gives only under ESCROW_SERVER: the bearer
    token goes nowhere else."""
    asked: list[tuple[str, str | None]] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's API
            asked.append((self.path, self.headers.get("Authorization")))
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    seen: list[Seen] = []
    with loopback_server(Elsewhere) as other:

        def elsewhere(doc: Any) -> Any:
            if isinstance(doc, dict) and doc.get("pdf_url"):
                return {**doc, "pdf_url": f"http://{other}{doc['pdf_url']}"}
            return doc

        handler = _stripping_handler(prefixed.port, seen, rewrite=_json_rewrite(elsewhere))
        with loopback_server(handler) as address:
            _pack_through(f"http://{address}{PREFIX}", tmp_path, cli, prefixed)
    assert asked == []
    assert any(s.path.endswith("/pdf") and s.status == 200 for s in seen)


def test_the_cli_follows_the_location_and_pdf_url_it_is_given(
    prefixed: Served, tmp_path: Path, cli: Any
) -> None:
    """`escrow pack` polls the job at the Location it is given and fetches the PDF at the
    job's pdf_url, not at paths of its own making: here the proxy publishes pack jobs only
    as /escrow/v1/jobs/ID and their PDFs as /escrow/v1/jobs/ID/file, and says so."""
    jobs = re.compile(r"/v1/packs/([0-9a-f]+)(/pdf)?")

    def route(path: str) -> str | None:
        upstream = _strip(path)
        if upstream is None or jobs.fullmatch(upstream):
            return None  # the server's own job paths are not published
        alias = re.fullmatch(r"/v1/jobs/([0-9a-f]+)(/file)?", upstream)
        if alias:
            return f"/v1/packs/{alias[1]}" + ("/pdf" if alias[2] else "")
        return upstream

    def public(link: str) -> str:
        found = jobs.fullmatch(link.removeprefix(PREFIX))
        assert found, link
        return f"{PREFIX}/v1/jobs/{found[1]}" + ("/file" if found[2] else "")

    def rewrite(headers: dict[str, str], data: bytes) -> tuple[dict[str, str], bytes]:
        if "location" in headers:
            headers = {**headers, "location": public(headers["location"])}
        if headers.get("content-type") == "application/json":
            doc = json.loads(data)
            if isinstance(doc, dict) and doc.get("pdf_url"):
                data = json.dumps({**doc, "pdf_url": public(doc["pdf_url"])}).encode()
        return headers, data

    seen: list[Seen] = []
    handler = _stripping_handler(prefixed.port, seen, route=route, rewrite=rewrite)
    with loopback_server(handler) as address:
        pdf = _pack_through(f"http://{address}{PREFIX}", tmp_path, cli, prefixed)
    fetched = [s for s in seen if s.path.endswith("/file")]
    assert [s.status for s in fetched] == [200]
    assert fetched[0].body == pdf.read_bytes()
    assert any(s.path.startswith(f"{PREFIX}/v1/jobs/") for s in seen if s.method == "GET")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("escrow", "does not begin with a slash; give it as /escrow."),
        ("/escrow/", "ends with a slash; give it as /escrow."),
        ("/", "ends with a slash; leave it out when there is no prefix."),
        ("https://proxy.example/escrow/", "is a URL; give only its path, /escrow."),
        ("//proxy.example/escrow", "is a URL; give only its path, /escrow."),
        ("/escrow//v2", "it has an empty segment (//)."),
        ("/esc row", "'esc row' is not a plain path segment (use letters, digits, - . _ ~)."),
        ("/a/../b", "'..' is not a plain path segment (use letters, digits, - . _ ~)."),
    ],
)
def test_a_bad_root_path_is_one_sentence_and_exit_2(
    escrow_home: Path, cli: Any, value: str, words: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # checked before the port: never served
        r = cli(["serve", "--port", str(taken.getsockname()[1]), "--root-path", value])
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert r.stderr.startswith(f"escrow: error: --root-path {value!r} "), r.stderr
    assert r.stderr.rstrip("\n").endswith(words), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # one sentence, one line
    assert "Traceback" not in r.stderr


def test_a_bad_root_path_from_the_environment_names_the_variable(
    escrow_home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SERVER_ROOT_PATH", "escrow/")
    with socket.create_server(("127.0.0.1", 0)) as taken:  # checked before the port: never served
        r = cli(["serve", "--port", str(taken.getsockname()[1])])
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert r.stderr.startswith(
        "escrow: error: ESCROW_SERVER_ROOT_PATH 'escrow/' does not begin with a slash"
    ), r.stderr
