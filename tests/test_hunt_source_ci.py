"""Hunt: the source revision (git) and the CI job's facts recorded with a build.

Real git repositories made in ``tmp_path``; the source and CI functions are called directly.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from escrow.capture.source import builder_id, ci_facts, git_source


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        [
            "git",
            "-C",
            str(cwd),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example",
            "-c",
            "protocol.file.allow=always",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _repo(path: Path, files: dict[str, str] | None = None, *, commit: bool = True) -> Path:
    files = {"Dockerfile": "FROM scratch\n", "app/x.txt": "1\n"} if files is None else files
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    _git(path, "init", "-q", "-b", "main")
    if commit:
        _git(path, "add", ".")
        _git(path, "commit", "-q", "-m", "init")
    return path


# -- bugs found ---------------------------------------------------------------------------


def test_a_hooks_git_dir_does_not_name_another_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git sets GIT_DIR (and GIT_INDEX_FILE) for the hooks it runs: `escrow build` run from
    one recorded the hook's repository for a context elsewhere, or in no repository at all."""
    mine = _repo(tmp_path / "mine")
    other = _repo(tmp_path / "other", {"README": "other\n"})
    _git(other, "remote", "add", "origin", "https://other.example/o.git")
    plain = tmp_path / "plain"
    plain.mkdir()
    head = _git(mine, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))

    assert git_source(plain) is None
    src = git_source(mine / "app")
    assert src == {
        "remote": None,
        "commit": head,
        "branch": "main",
        "dirty": False,
        "path": "app",
    }


def test_a_relative_git_dir_of_a_hook_still_finds_the_contexts_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook's GIT_DIR is often the relative ``.git``: resolved from the context's folder
    it named nothing, and no source was recorded."""
    repo = _repo(tmp_path / "repo")
    head = _git(repo, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", ".git")

    src = git_source(repo / "app")

    assert src is not None
    assert src["commit"] == head
    assert src["path"] == "app"


def test_a_tree_git_cannot_read_is_not_recorded_clean(tmp_path: Path) -> None:
    """`git status` failing (here: a submodule whose repository is gone) left no changes to
    see, and the context was recorded clean: ``dirty: false`` for a tree nobody checked."""
    sub = _repo(tmp_path / "sub-origin")
    repo = _repo(tmp_path / "repo")
    _git(repo, "submodule", "add", "-q", str(sub), "mod")
    _git(repo, "commit", "-q", "-m", "submodule")
    assert git_source(repo)["dirty"] is False  # type: ignore[index]
    shutil.rmtree(repo / ".git" / "modules" / "mod")

    src = git_source(repo)

    assert src is not None
    assert src["commit"] == _git(repo, "rev-parse", "HEAD")
    assert src["dirty"] is True


def test_a_repository_folder_ending_in_a_space_keeps_the_contexts_path(tmp_path: Path) -> None:
    """git's answers lost their trailing white space: the work tree ``/…/repo `` became
    ``/…/repo``, the context was no longer inside it, and its path was recorded as ``.``."""
    repo = _repo(tmp_path / "repo ")

    src = git_source(repo / "app")

    assert src is not None
    assert src["path"] == "app"


@pytest.mark.parametrize(
    "env",
    [
        {"CIRCLECI": "true", "CIRCLE_BUILD_NUM": "12", "CIRCLE_NODE_INDEX": "0"},
        {"BITBUCKET_BUILD_NUMBER": "7", "BITBUCKET_STEP_RUN_NUMBER": "1"},
    ],
    ids=["circleci-node-index", "bitbucket-step-run-number"],
)
def test_a_ci_counter_is_not_the_runner_nor_the_builder_id(env: dict[str, str]) -> None:
    """CircleCI's parallel index and Bitbucket's rerun count were recorded as the runner, so
    every such build's builder ID was ``0`` or ``1`` instead of the host that built it."""
    ci = ci_facts(env)

    assert ci is not None
    assert "runner" not in ci
    assert builder_id(ci) == socket.gethostname()


def test_azure_job_url_quotes_the_project_and_needs_it() -> None:
    base = {
        "TF_BUILD": "True",
        "BUILD_BUILDID": "3",
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/org/",
    }

    spaced = ci_facts({**base, "SYSTEM_TEAMPROJECT": "My Project"})
    missing = ci_facts(base)

    assert spaced is not None and missing is not None
    assert spaced["jobUrl"] == "https://dev.azure.com/org/My%20Project/_build/results?buildId=3"
    assert "jobUrl" not in missing  # was https://dev.azure.com/org/None/_build/...
    assert missing["runId"] == "3"


def test_github_empty_server_url_means_github_com() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "42",
    }

    ci = ci_facts(env)

    assert ci is not None
    assert ci["jobUrl"] == "https://github.com/o/r/actions/runs/42"  # was /o/r/actions/runs/42


# -- what holds already (kept as guards) -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://deploy:tok3n-value@git.example/team/app.git", "https://git.example/team/app.git"),
        ("https://tok3n-value@git.example/team/app", "https://git.example/team/app"),
        ("ssh://git@git.example:22/team/app.git", "ssh://git.example:22/team/app.git"),
        ("git@git.example:team/app.git", "git@git.example:team/app.git"),
        ("file:///srv/git/app.git", "file:///srv/git/app.git"),
    ],
    ids=["user-and-token", "token-only", "ssh-port", "scp-like", "file"],
)
def test_the_remote_is_recorded_without_credentials(
    tmp_path: Path, url: str, recorded: str
) -> None:
    repo = _repo(tmp_path / "repo")
    _git(repo, "remote", "add", "origin", url)

    src = git_source(repo)

    assert src is not None and src["remote"] == recorded
    assert "tok3n" not in json.dumps(src)


def test_an_insteadof_rewrite_with_a_password_is_stripped_too(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    _git(repo, "config", "url.https://bot:pa55w0rd@git.example/.insteadOf", "https://git.example/")
    _git(repo, "remote", "add", "upstream", "https://git.example/team/app.git")

    src = git_source(repo)

    assert src is not None and src["remote"] == "https://git.example/team/app.git"
    assert "pa55w0rd" not in json.dumps(src)


def test_detached_shallow_worktree_and_git_file_checkouts(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    head = _git(repo, "rev-parse", "HEAD")

    shallow = tmp_path / "shallow"
    _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    _git(shallow, "checkout", "-q", "--detach")
    src = git_source(shallow / "app")
    assert src == {
        "remote": f"file://{repo}",
        "commit": head,
        "branch": None,
        "dirty": False,
        "path": "app",
    }

    _git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"))
    src = git_source(tmp_path / "wt" / "app")
    assert src is not None
    assert (src["commit"], src["branch"], src["path"]) == (head, "feature", "app")

    elsewhere = tmp_path / "gitdir"
    shutil.move(str(repo / ".git"), elsewhere)
    (repo / ".git").write_text(f"gitdir: {elsewhere}\n")
    src = git_source(repo)
    assert src is not None and (src["commit"], src["dirty"]) == (head, False)


def test_untracked_files_are_dirty_and_ignored_ones_are_not(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {".gitignore": "*.log\n", "Dockerfile": "FROM scratch\n"})
    (repo / "build.log").write_text("ignored\n")
    assert git_source(repo)["dirty"] is False  # type: ignore[index]
    (repo / "new.txt").write_text("untracked\n")
    assert git_source(repo)["dirty"] is True  # type: ignore[index]


def test_a_repository_without_commits_records_no_commit(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "fresh", commit=False)

    src = git_source(repo)

    assert src is not None
    assert (src["commit"], src["dirty"]) == (None, True)


def test_no_git_on_path_or_no_repository_records_no_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_source(plain) is None
    repo = _repo(tmp_path / "repo")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git_source(repo) is None


def test_no_secret_ci_variable_is_ever_recorded() -> None:
    secrets = {
        "CI_JOB_TOKEN": "glcbt-secret-1",
        "GITHUB_TOKEN": "ghs_secret2",
        "ACTIONS_RUNTIME_TOKEN": "secret3",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret4",
        "CI_REGISTRY_PASSWORD": "secret5",
        "BUILDKITE_AGENT_ACCESS_TOKEN": "secret6",
        "SYSTEM_ACCESSTOKEN": "secret7",
        "CIRCLE_TOKEN": "secret8",
        "CI_REPOSITORY_URL": "https://gitlab-ci-token:secret9@gl.example/o/r.git",
    }
    markers = ["GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "TF_BUILD", "JENKINS_URL"]
    for marker in markers:
        env = {marker: "true", **secrets, "BUILD_URL": "https://u:secret10@j.example/job/1/"}
        recorded = json.dumps(ci_facts(env))
        assert "secret" not in recorded, (marker, recorded)
