"""Fixtures for registry tests: the loopback docker-registry, private registries, bases.

``ESCROW_TEST_REGISTRY`` (``127.0.0.1:PORT``) is exported by ``scripts/test.sh``
from ``scripts/registry.sh``; a test that needs it and finds it unset fails.
Tests that tamper with a registry's storage start a private one of their own.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from httpkit import loopback_server

DOCKER = "/usr/bin/docker"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "registry.sh"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], check=check, capture_output=True, text=True)


def skopeo_digest(ref: str) -> str:
    import json

    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(out.stdout)["Digest"])


@pytest.fixture(scope="session")
def registry() -> str:
    addr = os.environ.get("ESCROW_TEST_REGISTRY")
    if not addr:
        pytest.fail(
            "ESCROW_TEST_REGISTRY is not set; scripts/test.sh exports it "
            "(locally: export ESCROW_TEST_REGISTRY=$(scripts/registry.sh))."
        )
    return addr


@dataclass
class PrivateRegistry:
    addr: str
    root: Path

    @property
    def storage(self) -> Path:
        return self.root / "storage" / "docker" / "registry" / "v2"

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "blobs" / "sha256" / hexd[:2] / hexd / "data"


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[PrivateRegistry]:
    """A registry of this test's own (its storage may be tampered with)."""
    root = tmp_path / "registry"
    env = {**os.environ, "ESCROW_REGISTRY_DIR": str(root)}
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    try:
        yield PrivateRegistry(out.stdout.strip(), root)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True)


class _Deny(http.server.BaseHTTPRequestHandler):
    def _deny(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="escrow-test"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _deny

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def denying_registry() -> Iterator[str]:
    """A registry endpoint that answers 401 to everything (credentials required)."""
    with loopback_server(_Deny) as address:
        yield address


@pytest.fixture
def closed_port() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


@dataclass
class Bases:
    """FROM-scratch busybox base images pushed to a registry under one tag."""

    root: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    local: list[str] = field(default_factory=list)

    def push(self, registry: str, variant: str, tag: str = "monthly") -> tuple[str, str, str]:
        """Build a base whose /marker holds ``variant``, push it as REGISTRY/…:TAG;
        (reference, image ID, manifest digest the engine reported)."""
        ctx = self.root / f"base-{variant}"
        ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", ctx / "busybox")
        (ctx / "marker").write_text(f"{self.run} {variant}\n")
        (ctx / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /marker\nENV PATH=/bin\n"
        )
        ref = f"{registry}/escrow-test/base-{self.run}:{tag}"
        docker("build", "-q", "-t", ref, str(ctx))
        self.local.append(ref)
        image_id = docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
        docker("push", ref)
        digest = skopeo_digest(ref)
        return ref, image_id, digest

    def app(self, base_ref: str, name: str = "app", tail: str = "") -> Path:
        """A context on ``base_ref``; ``tail``: instructions after its last layer."""
        ctx = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        ctx.mkdir(parents=True)
        (ctx / "app.txt").write_text("the application\n")
        (ctx / "Dockerfile").write_text(
            f"FROM {base_ref}\nCOPY app.txt /app/app.txt\n"
            'RUN ["/bin/busybox", "sh", "-c", "echo built > /app/built"]\n' + tail
        )
        return ctx

    def forget(self, *refs: str) -> None:
        """Remove images from the engine (by reference or ID)."""
        for ref in refs:
            docker("rmi", "-f", ref, check=False)

    def cleanup(self) -> None:
        for ref in reversed(self.local):
            docker("rmi", "-f", ref, check=False)


@pytest.fixture
def bases(tmp_path: Path, docker_client: Any) -> Iterator[Bases]:
    b = Bases(tmp_path / "work")
    try:
        yield b
    finally:
        b.cleanup()
