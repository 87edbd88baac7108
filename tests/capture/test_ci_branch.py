"""A CI checkout is a detached HEAD: the branch comes from the CI's own variables, and
only when they name the very commit checked out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from escrow.capture.source import ci_branch, git_source
from escrow.documents.schemas import validate_statement
from escrow.errors import SchemaError

from .conftest import write_tree

ROOT = Path(__file__).resolve().parents[2]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@example", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def detached(tmp_path: Path) -> tuple[Path, str]:
    """A work tree checked out the way CI runners do: the commit, not the branch."""
    repo = write_tree(tmp_path / "repo", {"Dockerfile": "FROM scratch\n"})
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach", head)
    return repo, head


def test_a_detached_checkout_takes_the_branch_the_ci_names_for_its_commit(
    detached: tuple[Path, str],
) -> None:
    repo, head = detached
    env = {"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "release/2.1", "CI_COMMIT_SHA": head}

    src = git_source(repo, environ=env)

    assert src is not None
    assert src["commit"] == head
    assert src["branch"] == "release/2.1"
    assert src["branchFrom"] == "ci"


def test_a_ci_branch_for_another_commit_is_not_taken(detached: tuple[Path, str]) -> None:
    repo, _ = detached
    env = {"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "main", "CI_COMMIT_SHA": "f" * 40}

    src = git_source(repo, environ=env)

    assert src is not None
    assert src["branch"] is None
    assert "branchFrom" not in src


def test_git_names_the_branch_when_it_can(tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", {"Dockerfile": "FROM scratch\n"})
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/heads/other", "GITHUB_SHA": head}

    src = git_source(repo, environ=env)

    assert src is not None
    assert src["branch"] == "main"
    assert "branchFrom" not in src


SHA = "a" * 40


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/heads/release/1.2", "GITHUB_SHA": SHA},
            ("release/1.2", SHA),
        ),
        ({"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/tags/v1.2", "GITHUB_SHA": SHA}, None),
        ({"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/pull/7/merge", "GITHUB_SHA": SHA}, None),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": SHA}, None),  # a tag or merge-request pipeline
        ({"JENKINS_URL": "https://ci", "BRANCH_NAME": "main", "GIT_COMMIT": SHA}, ("main", SHA)),
        (
            {
                "JENKINS_URL": "https://ci",
                "BRANCH_NAME": "PR-7",
                "CHANGE_ID": "7",
                "GIT_COMMIT": SHA,
            },
            None,
        ),
        ({"BUILDKITE": "true", "BUILDKITE_BRANCH": "main", "BUILDKITE_COMMIT": SHA}, ("main", SHA)),
        ({"CIRCLECI": "true", "CIRCLE_BRANCH": "dev", "CIRCLE_SHA1": SHA}, ("dev", SHA)),
        (
            {
                "TF_BUILD": "True",
                "BUILD_SOURCEBRANCH": "refs/heads/main",
                "BUILD_SOURCEVERSION": SHA,
            },
            ("main", SHA),
        ),
        (
            {
                "TRAVIS": "true",
                "TRAVIS_BRANCH": "main",
                "TRAVIS_COMMIT": SHA,
                "TRAVIS_PULL_REQUEST": "false",
            },
            ("main", SHA),
        ),
        (
            {
                "TRAVIS": "true",
                "TRAVIS_BRANCH": "main",
                "TRAVIS_COMMIT": SHA,
                "TRAVIS_PULL_REQUEST": "12",
            },
            None,
        ),
        (
            {"BITBUCKET_BUILD_NUMBER": "4", "BITBUCKET_BRANCH": "main", "BITBUCKET_COMMIT": SHA},
            ("main", SHA),
        ),
        ({}, None),
    ],
)
def test_ci_branch_of_each_system(env: dict[str, str], expected: tuple[str, str] | None) -> None:
    assert ci_branch(env) == expected


def test_the_schema_knows_where_the_branch_came_from() -> None:
    statement = json.loads((ROOT / "tests/assets/build-manifest.example.json").read_text())
    source = statement["predicate"]["inputs"].setdefault(
        "source", {"remote": None, "commit": SHA, "dirty": False}
    )
    source.update({"branch": "main", "branchFrom": "ci"})
    validate_statement(statement)

    source["branchFrom"] = "guessed"
    with pytest.raises(SchemaError):
        validate_statement(statement)
