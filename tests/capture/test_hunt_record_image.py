"""``escrow record --image``: an image the command did not make is said so and recorded
as such; an image that is missing after the command is a failure whose reason the JSON
result carries, with the command's own exit code."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.capture.conftest import show, write_tree
from tests.conftest import BASE_TAG

pytestmark = pytest.mark.docker

DOCKER = "/usr/bin/docker"


@pytest.fixture
def own_tag(base_image: str) -> Iterator[str]:
    tag = f"hunt-d/made-{uuid.uuid4().hex[:12]}:1"
    yield tag
    subprocess.run([DOCKER, "image", "rm", tag], capture_output=True, check=False)


def test_an_image_the_command_did_not_make_is_said_and_recorded(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_image: str
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    r = cli(["record", "--image", BASE_TAG, "--json", "--", "true"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["image_id"] == base_image
    assert "did not make it" in r.stderr
    assert show(r.json()["index"])["predicate"]["command"]["imageBefore"] == base_image


def test_an_image_the_command_made_has_no_image_before(
    escrow_home: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    base_image: str,
    own_tag: str,
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    r = cli(["record", "--image", own_tag, "--json", "--", DOCKER, "tag", BASE_TAG, own_tag])
    assert r.exit_code == 0, r.stderr
    assert r.json()["image_id"] == base_image
    assert "did not make it" not in r.stderr
    assert show(r.json()["index"])["predicate"]["command"]["imageBefore"] is None


def test_a_missing_image_after_a_successful_command_is_explained_in_the_json(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    tag = f"hunt-d/never-{uuid.uuid4().hex[:12]}:1"
    r = cli(["record", "--image", tag, "--json", "--", "true"])
    assert r.exit_code == 1, r.stderr
    result = r.json()
    assert result["exit_code"] == 0 and result["status"] == "failed"
    assert result["failure"]["exitCode"] == 0
    assert result["failure"]["message"] == f"The image {tag} does not exist in the Docker Engine."
    assert result["failure"] == show(result["index"])["predicate"]["build"]["failure"]
