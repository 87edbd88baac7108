"""Fixtures for rebuild tests: recorded phoenix builds on the real engine, a tiny HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# a real ledger filled with synthetic signed build manifests (``escrow diff`` of them)
from tests.pack.conftest import pack_ledger  # noqa: F401 - a fixture, shared


@dataclass
class Recorded:
    index: int
    context: Path
    image_id: str | None
    tag: str
    statement: dict[str, Any]


@dataclass
class Recorder:
    """Records phoenix builds (``escrow build``'s library path) in the test's ESCROW_HOME."""

    root: Path
    docker: Any
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    tags: list[str] = field(default_factory=list)
    count: int = 0

    def tag(self, name: str) -> str:
        tag = f"escrow-test/rebuild-{self.run}:{name}"
        self.tags.append(tag)
        return tag

    def context(self, files: dict[str, str], name: str | None = None) -> Path:
        self.count += 1
        ctx = self.root / (name or f"ctx{self.count}")
        ctx.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            path = ctx / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return ctx

    def build(
        self,
        files: dict[str, str],
        *,
        name: str | None = None,
        build_args: tuple[tuple[str, str], ...] = (),
        project: str = "rebuild-test",
        context: Path | None = None,
        retries: int = 0,
    ) -> Recorded:
        """Build and record; a failed build is built again up to ``retries`` times first
        (for recipes that fetch over the Docker bridge, which a loaded machine now and
        then fails), and the last attempt is recorded."""
        from escrow.blobs import BlobStore
        from escrow.capture.build import BuildRequest, phoenix_build
        from escrow.capture.engine import DockerEngine
        from escrow.capture.publish import Publisher
        from escrow.config import load_settings

        settings = load_settings()
        ctx = context or self.context(files, name)
        tag = self.tag(name or f"b{self.count}")
        for attempt in range(retries + 1):
            outcome = phoenix_build(
                BuildRequest(context=ctx, tags=(tag,), build_args=build_args, project=project),
                engine=DockerEngine(),
                blobs=BlobStore(settings.blobs_dir),
            )
            if outcome.status == "succeeded" or attempt == retries:
                break
        publisher = Publisher.open(settings)
        entry, _ = publisher.publish(outcome.statement)
        return Recorded(entry.index, ctx, outcome.image_id, tag, outcome.statement)

    def cleanup(self) -> None:
        import docker.errors

        for tag in reversed(self.tags):
            try:
                self.docker.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass


@pytest.fixture
def recorder(
    escrow_home: Path, docker_client: Any, base_image: str, tmp_path: Path
) -> Iterator[Recorder]:
    rec = Recorder(tmp_path / "contexts", docker_client)
    yield rec
    rec.cleanup()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None


@dataclass
class FileServer:
    """An HTTP server on all interfaces, so build containers reach it through their gateway."""

    root: Path
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url_in_container(self, name: str) -> str:
        """A shell expression for the URL, from inside a build container (busybox ``route``)."""
        gateway = "$(route -n | awk '$1==\"0.0.0.0\" {print $2}')"
        return f"http://{gateway}:{self.port}/{name}"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)  # noqa: S104 - containers
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fs = FileServer(root, server, thread)
    yield fs
    fs.stop()
