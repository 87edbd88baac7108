"""Source revision from git, CI facts from the environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from escrow.capture.source import builder_id, ci_facts, git_source

from .conftest import write_tree


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@example", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_git_source_with_credentials_stripped(tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", {"app/Dockerfile": "FROM scratch\n", "README": "x\n"})
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "remote", "add", "origin", "https://deploy:s3cret-token@git.example/team/app.git")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    head = _git(repo, "rev-parse", "HEAD")
    src = git_source(repo / "app")
    assert src == {
        "remote": "https://git.example/team/app.git",
        "commit": head,
        "branch": "main",
        "dirty": False,
        "path": "app",
    }
    (repo / "README").write_text("changed outside the context\n")
    assert git_source(repo / "app")["dirty"] is False  # type: ignore[index]
    (repo / "app" / "new.txt").write_text("untracked inside the context\n")
    assert git_source(repo / "app")["dirty"] is True  # type: ignore[index]


def test_no_git_work_tree_means_no_source(tmp_path: Path) -> None:
    assert git_source(write_tree(tmp_path / "plain", {"a": "b"})) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_RUN_ID": "42",
                "GITHUB_REPOSITORY": "o/r",
                "GITHUB_SERVER_URL": "https://github.com",
                "RUNNER_NAME": "r1",
                "GITHUB_JOB": "build",
            },
            {
                "system": "github-actions",
                "runId": "42",
                "jobUrl": "https://github.com/o/r/actions/runs/42",
                "runner": "r1",
                "job": "build",
            },
        ),
        (
            {
                "GITLAB_CI": "true",
                "CI_JOB_ID": "7",
                "CI_JOB_URL": "https://gl.example/j/7",
                "CI_RUNNER_DESCRIPTION": "shared-1",
                "CI_JOB_NAME": "image",
                "CI_PIPELINE_ID": "99",
            },
            {
                "system": "gitlab-ci",
                "runId": "7",
                "jobUrl": "https://gl.example/j/7",
                "runner": "shared-1",
                "job": "image",
                "pipeline": "99",
            },
        ),
        (
            {
                "JENKINS_URL": "https://j/",
                "BUILD_ID": "5",
                "BUILD_URL": "https://u:p@j/job/x/5/",
                "NODE_NAME": "agent-2",
            },
            {
                "system": "jenkins",
                "runId": "5",
                "jobUrl": "https://j/job/x/5/",
                "runner": "agent-2",
            },
        ),
        (
            {
                "BUILDKITE": "true",
                "BUILDKITE_JOB_ID": "b1",
                "BUILDKITE_BUILD_URL": "https://bk/b1",
                "BUILDKITE_AGENT_NAME": "a",
            },
            {"system": "buildkite", "runId": "b1", "jobUrl": "https://bk/b1#b1", "runner": "a"},
        ),
        (
            {
                "TF_BUILD": "True",
                "BUILD_BUILDID": "3",
                "SYSTEM_COLLECTIONURI": "https://dev.azure.com/org/",
                "SYSTEM_TEAMPROJECT": "p",
                "AGENT_NAME": "az",
            },
            {
                "system": "azure-pipelines",
                "runId": "3",
                "jobUrl": "https://dev.azure.com/org/p/_build/results?buildId=3",
                "runner": "az",
            },
        ),
        ({"CI": "true"}, {"system": "unknown"}),
        ({"HOME": "/root"}, None),
    ],
    ids=[
        "github",
        "gitlab",
        "jenkins-credentials-stripped",
        "buildkite",
        "azure",
        "generic",
        "none",
    ],
)
def test_ci_facts(env: dict[str, str], expected: dict[str, str] | None) -> None:
    assert ci_facts(env) == expected


def test_builder_id_is_the_runner_or_the_host() -> None:
    import socket

    assert builder_id({"system": "x", "runner": "r9"}) == "r9"
    assert builder_id(None) == socket.gethostname()
