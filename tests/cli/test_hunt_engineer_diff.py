"""``escrow diff`` of two real builds whose Dockerfiles differ only in a secret value.

Escrow records a secret-named ``ENV`` or ``LABEL`` of a Dockerfile only as ``[secret
NAME]`` (in the recorded Dockerfile text, the image config and the history), so two
builds that set two passwords record the same texts: the diff must not call the
Dockerfiles "0 lines changed" nor claim the image IDs differ only in creation times.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG, run_cli

pytestmark = [pytest.mark.docker]


@pytest.fixture
def tags(docker_client: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    import docker.errors

    for tag in reversed(made):
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.APIError:
            pass


def _build(context: Path, dockerfile: str, tag: str, tags: list[str]) -> int:
    (context / "Dockerfile").write_text(dockerfile)
    tags.append(tag)
    r = run_cli(["build", str(context), "-t", tag, "--project", "hunt-secrets", "--json"])
    assert r.exit_code == 0, r.stderr
    index: int = r.json()["index"]
    return index


def test_a_changed_secret_env_is_not_called_the_same_image(
    escrow_home: Path, base_image: str, tmp_path: Path, tags: list[str]
) -> None:
    """Regression: the Dockerfile change was reported as "0 line(s) removed, 0 added" and
    the images as identical, "the image IDs differ only in what no rebuild repeats, the
    creation times", although their DB_PASSWORD differs."""
    run = uuid.uuid4().hex[:8]
    context = tmp_path / "ctx"
    context.mkdir()
    recipe = f"FROM {BASE_TAG}\nENV DB_PASSWORD={{}} MODE=prod\nRUN echo built\n"
    a = _build(context, recipe.format("correct-horse"), f"hunt-b/secret-env-{run}:1", tags)
    b = _build(context, recipe.format("battery-staple"), f"hunt-b/secret-env-{run}:2", tags)

    r = run_cli(["diff", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    recipe_diff = doc["inputs"]["recipe"]
    assert recipe_diff["same"] is False
    assert "diff" not in recipe_diff and "linesAdded" not in recipe_diff
    assert "secret value" in recipe_diff["note"]
    image = doc["image"]
    assert image["original"] != image["rebuilt"]
    assert image["verdict"] == "identical"  # as recorded: the records cannot tell more
    assert image["secretsNotCompared"] == ["DB_PASSWORD"]
    # neither value is anywhere in what diff prints
    assert "correct-horse" not in r.stdout and "battery-staple" not in r.stdout

    r = run_cli(["diff", str(a), str(b)])
    assert r.exit_code == 0, r.stderr
    assert "0 line(s) removed, 0 added" not in r.stdout
    assert "differ only in what no rebuild repeats" not in r.stdout
    assert "hides the secret values DB_PASSWORD" in r.stdout
    assert "Dockerfile: the same recorded text" in r.stdout


def test_builds_without_secrets_keep_the_identical_claim(
    escrow_home: Path, base_image: str, tmp_path: Path, tags: list[str]
) -> None:
    """The caveat is only for secrets: two builds of one plain recipe are identical
    images whose IDs differ only in their creation times, and say so."""
    run = uuid.uuid4().hex[:8]
    context = tmp_path / "ctx"
    context.mkdir()
    recipe = f"FROM {BASE_TAG}\nENV MODE=prod\nRUN echo built\n"
    a = _build(context, recipe, f"hunt-b/plain-{run}:1", tags)
    b = _build(context, recipe, f"hunt-b/plain-{run}:2", tags)
    r = run_cli(["diff", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.stderr
    image = r.json()["image"]
    assert image["verdict"] == "identical" and "secretsNotCompared" not in image
    r = run_cli(["diff", str(a), str(b)])
    assert "differ only in what no rebuild repeats" in r.stdout
    assert "secret value" not in r.stdout and "hides" not in r.stdout


def test_diff_of_a_key_event_names_its_kind(escrow_home: Path) -> None:
    """Entry 0 of a new ledger is the log key's key event: named as such, not by its
    predicate type URI."""
    r = run_cli(["diff", "0", "0"])
    assert r.exit_code == 2
    assert "Entry 0 is a key-event, not a build manifest." in r.stderr
    assert "https://" not in r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
