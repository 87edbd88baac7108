"""`escrow capture NAME` without a tag means NAME:latest; when the engine holds other tags
of NAME, the error lists them (it said only "does not exist", which read as a wrong name)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BASE_TAG, run_cli

REPO = "escrow-test/untagged-hint"


@pytest.fixture
def two_tags(base_image: str) -> Iterator[None]:
    for tag in ("1", "2"):
        subprocess.run(["/usr/bin/docker", "tag", BASE_TAG, f"{REPO}:{tag}"], check=True)
    yield
    subprocess.run(
        ["/usr/bin/docker", "image", "rm", f"{REPO}:1", f"{REPO}:2"], capture_output=True
    )


@pytest.mark.usefixtures("two_tags")
def test_the_tags_the_engine_holds_are_named(module_home: Path) -> None:
    r = run_cli(["capture", REPO])
    assert r.exit_code == 2, r.stderr
    assert f"The image {REPO} does not exist in the Docker Engine." in r.stderr
    assert f"Without a tag it means {REPO}:latest; the engine holds {REPO}:1, {REPO}:2." in (
        r.stderr
    )


def test_a_name_with_no_tags_at_all_keeps_the_usual_hint(module_home: Path) -> None:
    r = run_cli(["capture", f"{REPO}-none"])
    assert r.exit_code == 2, r.stderr
    assert "Check the name with `docker images`, or build it first." in r.stderr
