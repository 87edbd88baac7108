"""What the README and `escrow build --help` say, checked against the program."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpkit import loopback_server

from tests.conftest import BASE_TAG


@pytest.fixture
def web_server() -> Iterator[str]:
    """A plain web server on loopback, not a container registry (a "wrong port")."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with loopback_server(Quiet) as address:
        yield address


def test_a_push_to_a_server_that_is_no_registry_is_refused_before_the_build(
    escrow_home: Path,
    cli: Any,
    base_image: str,
    tmp_path: Path,
    docker_client: Any,
    web_server: str,
) -> None:
    """Regression: the README says an address that answers but is not a registry is
    named "The server at HOST is not a container registry" (exit 3).  `escrow build
    --push` to a web server on the wrong port exited 2 with the engine's "501
    Unsupported method ('POST')"; then it built, recorded, and waited most of a minute
    for the engine's retries before saying so.  It is known before the build: nothing
    is built or recorded."""
    import docker.errors

    ctx = tmp_path / "push"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nRUN echo pushed > /p\n")
    tag = f"{web_server}/escrow-test/push:1"
    try:
        r = cli(["build", str(ctx), "-t", tag, "--push", "--no-deposit", "-q"])
        built = True
        docker_client.images.get(tag)
    except docker.errors.ImageNotFound:
        built = False
    finally:
        try:
            docker_client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass
    assert r.exit_code == 3, r.stderr
    assert f"The server at {web_server} is not a container registry" in r.stderr, r.stderr
    assert r.stderr.count("\n") <= 2, r.stderr  # the sentence and its hint
    assert not built
    log = cli(["log", "--kind", "build-manifest", "--json"])
    assert log.exit_code == 0 and log.json()["entries"] == [], log.stdout
