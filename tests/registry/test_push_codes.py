"""`escrow build --push`: the exit code of each kind of failed push, as the help says.

Regression: `escrow build --help` said a push that fails exits with 3, but a registry
that answered 5xx or a status the engine did not expect exited 2 (the engine's words
were not recognised), and so did a tag the engine no longer held; a registry's
"digest invalid" was named in a pull's words.  The README's table: 3 for the
environment (a registry or engine that fails, refuses or is unreachable), 1 for a
check that failed (a digest that does not match).
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from httpkit import loopback_server

from tests.conftest import BASE_TAG


def _registry_failing_manifests(status: int, body: bytes) -> Any:
    """A reachable registry (``GET /v2/`` answers 200 ``{}``) that takes every blob the
    engine uploads and then answers the manifest's ``PUT`` with ``status`` and ``body``
    (failing there, not in an upload the engine retries for most of a minute)."""
    blobs: set[str] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            size = self._read_body()
            path, _, query = self.path.partition("?")
            if self.command == "GET" and path == "/v2/":  # the API is there
                self._send(200, b"{}")
            elif "/blobs/uploads/" in path and self.command in ("POST", "PATCH"):
                location = f"{path.rsplit('/uploads/', 1)[0]}/uploads/u1"
                self._send(202, b"", Location=location, Range=f"0-{max(size - 1, 0)}")
            elif "/blobs/uploads/" in path and self.command == "PUT":
                digest = parse_qs(query)["digest"][0]
                blobs.add(digest)
                self._send(201, b"", **{"Docker-Content-Digest": digest})
            elif "/blobs/" in path and self.command == "HEAD":
                digest = path.rsplit("/", 1)[-1]
                self._send(200 if digest in blobs else 404, b"", **{"Content-Length": "1"})
            else:  # the manifest
                self._send(status, body)

        def _read_body(self) -> int:
            """Read (and drop) the request's body; its size."""
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            total = 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += len(self.rfile.read(size + 2)) - 2
            self.rfile.readline()
            return total

        def _send(self, code: int, payload: bytes, **headers: str) -> None:
            self.send_response(code)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Type", "application/json")
            headers.setdefault("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's
            pass

    return Handler


def _serve(handler: Any) -> Iterator[str]:
    with loopback_server(handler) as address:
        yield address


@pytest.fixture(params=[(500, b"internal error"), (418, b"teapot")], ids=["500", "418"])
def failing_registry(request: pytest.FixtureRequest) -> Iterator[str]:
    """A registry that fails the push with a server error, or with a status no registry
    API uses."""
    yield from _serve(_registry_failing_manifests(*request.param))


@pytest.fixture
def digest_refusing_registry() -> Iterator[str]:
    """A registry that says the manifest pushed does not match its digest."""
    body = (
        b'{"errors":[{"code":"DIGEST_INVALID",'
        b'"message":"provided digest did not match uploaded content"}]}'
    )
    yield from _serve(_registry_failing_manifests(400, body))


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "push"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nRUN echo pushed > /p\n")
    return ctx


def _build_and_push(cli: Any, docker_client: Any, ctx: Path, tag: str) -> Any:
    try:
        return cli(["build", str(ctx), "-t", tag, "--push", "--no-deposit", "-q", "--json"])
    finally:
        try:
            docker_client.images.remove(tag)
        except Exception:  # noqa: BLE001, S110 - docker.errors.ImageNotFound: gone already
            pass


def _recorded_without_push(r: Any) -> dict[str, Any]:
    result: dict[str, Any] = r.json()
    assert result["status"] == "succeeded" and result["pushed"] == []
    assert f"recorded as ledger entry {result['index']} without any pushed digest" in r.stderr
    assert "nothing was recorded" not in r.stderr, r.stderr
    return result


def test_a_registry_that_fails_the_push_is_an_environment_problem(
    escrow_home: Path,
    cli: Any,
    base_image: str,
    tmp_path: Path,
    docker_client: Any,
    failing_registry: str,
) -> None:
    """Exited 2 with the engine's "received unexpected HTTP status: 500 Internal Server
    Error" (or "error parsing HTTP 418 response body")."""
    tag = f"{failing_registry}/escrow-test/push:1"
    r = _build_and_push(cli, docker_client, _context(tmp_path), tag)
    assert r.exit_code == 3, r.stderr
    _recorded_without_push(r)
    assert f"Pushing {tag} failed: the registry {failing_registry} refused or failed" in r.stderr


def test_a_tag_removed_before_the_push_is_an_environment_problem(
    escrow_home: Path,
    cli: Any,
    base_image: str,
    tmp_path: Path,
    docker_client: Any,
    registry: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Something removes the tag between the build and its push (a `docker rmi` at that
    moment): the engine's "An image does not exist locally with the tag" exited 2, as if
    the user had named a wrong image."""
    from escrow.capture.engine import DockerEngine

    push = DockerEngine.push

    def removed_first(self: DockerEngine, ref: str) -> dict[str, Any]:
        docker_client.images.remove(ref)
        return push(self, ref)

    monkeypatch.setattr(DockerEngine, "push", removed_first)
    tag = f"{registry}/escrow-test/review12-removed:1"
    r = _build_and_push(cli, docker_client, _context(tmp_path), tag)
    assert r.exit_code == 3, r.stderr
    _recorded_without_push(r)
    assert f"the Docker Engine no longer holds an image tagged {tag}" in r.stderr, r.stderr


def test_a_registry_refusing_the_uploaded_digest_is_a_failed_check(
    escrow_home: Path,
    cli: Any,
    base_image: str,
    tmp_path: Path,
    docker_client: Any,
    digest_refusing_registry: str,
) -> None:
    """The engine's "digest invalid" (exit 1, kept) was named in a pull's words: "the
    registry's bytes do not match their digest", with a hint to re-push "from a trusted
    source"."""
    tag = f"{digest_refusing_registry}/escrow-test/push:1"
    r = _build_and_push(cli, docker_client, _context(tmp_path), tag)
    assert r.exit_code == 1, r.stderr
    _recorded_without_push(r)
    assert (
        f"Pushing {tag} failed: the registry {digest_refusing_registry} received bytes that "
        "do not match their digest (digest invalid)"
    ) in r.stderr, r.stderr


def test_a_tag_the_registry_serves_otherwise_after_the_push_is_a_failed_check(
    escrow_home: Path,
    cli: Any,
    base_image: str,
    tmp_path: Path,
    docker_client: Any,
    registry: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another push to the same tag right after escrow's: the registry's manifest for the
    tag is not the one pushed (exit 1, kept), said as one sentence about the push, not
    "…; the push is not recorded. The build is recorded …"."""
    from escrow.capture.engine import DockerEngine

    push = DockerEngine.push
    tag = f"{registry}/escrow-test/review12-raced:1"
    built: list[str] = []

    def raced(self: DockerEngine, ref: str) -> dict[str, Any]:
        aux = push(self, ref)
        built.append(docker_client.images.get(ref).id)
        docker_client.images.get(BASE_TAG).tag(ref)  # someone else's image, same tag
        for _ in docker_client.api.push(ref, stream=True, decode=True):
            pass
        return aux

    monkeypatch.setattr(DockerEngine, "push", raced)
    try:
        r = _build_and_push(cli, docker_client, _context(tmp_path), tag)
    finally:
        for image_id in built:
            docker_client.images.remove(image_id)
    assert r.exit_code == 1, r.stderr
    _recorded_without_push(r)
    assert f"Pushing {tag} failed: the engine pushed it as sha256:" in r.stderr, r.stderr
    assert "the push is not recorded" not in r.stderr


def test_the_help_says_which_failed_push_exits_how(cli: Any) -> None:
    r = cli(["build", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "A push that fails leaves the build recorded without any pushed digest" in text
    assert "exits with 3 (the registry or the engine failed, refused or could not be" in text
    assert "or with 1 when a digest does not match" in text


@pytest.mark.parametrize(
    "message",
    [
        "received unexpected HTTP status: 503 Service Unavailable",
        "error parsing HTTP 418 response body: invalid character 'e'",
    ],
)
def test_a_pull_from_a_registry_that_fails_is_an_environment_problem(message: str) -> None:
    from escrow.registry.errors import RegistryUnavailable
    from escrow.registry.pull import classify

    error = classify("127.0.0.1:5000/escrow-test/base:1", message, "Pulling the base image")
    assert type(error) is RegistryUnavailable and error.exit_code == 3
