"""Fixtures for deposit tests: a private base image (removable), recorded builds."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DOCKER = "/usr/bin/docker"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], check=check, capture_output=True, text=True)


@dataclass
class Builds:
    """A private FROM-scratch base image and phoenix builds on it, recorded in the ledger."""

    root: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    tags: list[str] = field(default_factory=list)
    base_tag: str = ""
    base_id: str = ""
    count: int = 0

    def make_base(self) -> str:
        ctx = self.root / "base"
        ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", ctx / "busybox")
        (ctx / "marker").write_text(self.run)
        (ctx / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /marker\nENV PATH=/bin\n"
        )
        self.base_tag = f"escrow-test/deposit-base-{self.run}:1"
        docker("build", "-q", "-t", self.base_tag, str(ctx))
        self.base_id = docker("image", "inspect", "-f", "{{.Id}}", self.base_tag).stdout.strip()
        self.tags.append(self.base_tag)
        return self.base_id

    def context(self, files: dict[str, str], name: str | None = None) -> Path:
        self.count += 1
        ctx = self.root / (name or f"ctx{self.count}")
        ctx.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            path = ctx / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return ctx

    def dockerfile(self, run: bool = True) -> str:
        text = f"FROM {self.base_tag}\nCOPY app.txt /app/app.txt\n"
        if run:
            text += 'RUN ["/bin/busybox", "sh", "-c", "echo built > /app/built"]\n'
        return text

    def build(self, ctx: Path, *, project: str = "deposit-test") -> tuple[int, dict[str, Any]]:
        """``escrow build``'s library path, then sign and append; (index, statement)."""
        from escrow.blobs import BlobStore
        from escrow.capture.build import BuildRequest, phoenix_build
        from escrow.capture.engine import DockerEngine
        from escrow.capture.publish import Publisher
        from escrow.config import load_settings

        settings = load_settings()
        tag = f"escrow-test/deposit-{self.run}:b{self.count}"
        self.tags.append(tag)
        outcome = phoenix_build(
            BuildRequest(context=ctx, tags=(tag,), project=project),
            engine=DockerEngine(),
            blobs=BlobStore(settings.blobs_dir),
        )
        entry, _ = Publisher.open(settings).publish(outcome.statement)
        return entry.index, outcome.statement

    def rebuild_tag(self) -> str:
        tag = f"escrow-test/deposit-{self.run}:rebuilt{len(self.tags)}"
        self.tags.append(tag)
        return tag

    def cleanup(self) -> None:
        for tag in reversed(self.tags):
            docker("rmi", "-f", tag, check=False)
        if self.base_id:
            docker("rmi", "-f", self.base_id, check=False)


@pytest.fixture
def builds(tmp_path: Path, escrow_home: Path, docker_client: Any) -> Iterator[Builds]:
    b = Builds(tmp_path / "work")
    b.make_base()
    try:
        yield b
    finally:
        b.cleanup()
