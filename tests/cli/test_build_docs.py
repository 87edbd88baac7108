"""escrow build as the README describes it, against the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG


@pytest.mark.parametrize(
    ("line", "feature"),
    [
        ("RUN --mount=type=cache,target=/x echo hi", "RUN --mount"),
        ("COPY --chmod=755 a /a", "COPY/ADD --link/--chmod"),
    ],
)
def test_buildkit_only_syntax_the_classic_builder_runs_into_is_named(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, line: str, feature: str
) -> None:
    """Regression: the README says BuildKit-only syntax is refused and named, but
    `RUN --mount` (and `COPY --chmod` on Debian's 20.10 engine) parse, start the build
    and fail at their step: the failed build was recorded and escrow said only
    "Step 2 failed", never that the step uses syntax only BuildKit runs."""
    ctx = tmp_path / "bk"
    ctx.mkdir()
    (ctx / "a").write_text("a\n")
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\n{line}\n")
    r = cli(["build", str(ctx), "-t", "escrow-test/bk:1", "--no-deposit", "-q", "--json"])
    assert r.exit_code == 1, r.stderr
    result = r.json()
    assert result["status"] == "failed" and result["failure"]["step"] == 2
    assert "Step 2 failed" in r.stderr
    assert f"BuildKit-only syntax ({feature}" in r.stderr, r.stderr


def test_a_failed_step_without_buildkit_syntax_gets_no_buildkit_hint(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "plain"
    ctx.mkdir()
    # a `# syntax=` line is a comment to the classic builder: not the failing step's fault
    (ctx / "Dockerfile").write_text(f"# syntax=docker/dockerfile:1\nFROM {BASE_TAG}\nRUN exit 4\n")
    r = cli(["build", str(ctx), "-t", "escrow-test/bk:2", "--no-deposit", "-q"])
    assert r.exit_code == 1, r.stderr
    assert "Step 2 failed with exit code 4" in r.stderr
    assert "BuildKit" not in r.stderr


def test_a_push_that_fails_says_the_build_is_recorded_and_nothing_contrary(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, docker_client: Any
) -> None:
    """Regression: a failed --push said "…is not reachable (…); nothing was recorded. The
    build is recorded as ledger entry 1 without any pushed digest." — both at once — and
    its --json left out the deposit that was made all the same."""
    ctx = tmp_path / "push"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nRUN echo pushed > /p\n")
    tag = "127.0.0.1:1/escrow-test/push:1"  # nothing listens on port 1
    try:
        r = cli(["build", str(ctx), "-t", tag, "--push", "-q", "--json"])
    finally:
        try:
            docker_client.images.remove(tag)
        except Exception:  # noqa: BLE001, S110 - docker.errors.ImageNotFound: never built
            pass
    assert r.exit_code == 3, r.stderr
    result = r.json()
    assert result["status"] == "succeeded" and result["pushed"] == []
    assert result["deposit"] == {"complete": True, "missing": []}
    assert f"recorded as ledger entry {result['index']} without any pushed digest" in r.stderr
    assert "nothing was recorded" not in r.stderr, r.stderr
