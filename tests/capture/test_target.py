"""``escrow build --target STAGE`` resolves and records the bases of the
stages up to the target only: the classic builder drops the later stages before it
resolves any ``FROM`` (``docker build --target`` succeeds when a later stage names an
image the engine does not have), so escrow neither refuses such a build nor records
base images the build never used."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG

from .conftest import show, write_tree

pytestmark = pytest.mark.docker

TAG = "escrow-test/review10-target:1"


@pytest.fixture
def built_tag() -> Iterator[str]:
    yield TAG
    subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True)


def test_stages_after_the_target_are_neither_required_nor_recorded(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, built_tag: str
) -> None:
    ctx = write_tree(
        tmp_path / "target",
        {
            "Dockerfile": f"ARG BASE={BASE_TAG}\n"
            "FROM ${BASE} AS one\nRUN echo one > /one\n"
            "FROM one AS two\nRUN echo two > /two\n"
            "FROM escrow-test/review10-no-such-base:never AS three\nRUN echo three\n"
            "FROM two\nCOPY --from=three /x /x\n",
        },
    )
    r = cli(["build", str(ctx), "-t", built_tag, "--target", "TWO", "--no-deposit", "--json"])
    assert r.exit_code == 0, r.stderr
    inputs = show(r.json()["index"])["predicate"]["inputs"]
    assert inputs["target"] == "TWO"
    bases = inputs["baseImages"]
    assert [(b["stage"], b["source"]) for b in bases] == [(0, "image"), (1, "stage")]
    assert bases[0]["imageId"] == base_image and bases[1]["fromStage"] == 0
    steps = show(r.json()["index"])["predicate"]["steps"]
    assert [s["instruction"] for s in steps][-1] == "RUN echo two > /two"


def test_an_unknown_target_is_still_an_error_before_the_build(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(tmp_path / "t2", {"Dockerfile": f"FROM {BASE_TAG} AS one\nRUN true\n"})
    r = cli(["build", str(ctx), "-t", TAG, "--target", "nope", "--no-deposit"])
    assert r.exit_code == 2
    assert "The Dockerfile has no stage named 'nope'." in r.stderr
    assert "Traceback" not in r.stderr
