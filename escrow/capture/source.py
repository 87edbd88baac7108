"""Where a build came from: the git revision of its context, the CI job, the host."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.capture.secrets import strip_url_credentials

#: the variables that point git at a repository (or its index, objects) other than the one
#: it finds from ``-C``: git sets ``GIT_DIR`` and ``GIT_INDEX_FILE`` for the hooks it runs, so
#: ``escrow build`` run from a hook recorded the hook's repository — its remote, commit and
#: dirty flag — for a context in another repository, or in none.  (``git rev-parse
#: --local-env-vars`` less the configuration ones, which stay: ``GIT_CONFIG_COUNT`` is how a
#: CI job may give ``safe.directory``.)
_REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_GRAFT_FILE",
    "GIT_SHALLOW_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_NAMESPACE",
)


def _git_run(cwd: Path, *args: str) -> tuple[int, str, str] | None:
    """``(exit code, stdout, stderr)`` of ``git -C cwd ARGS``; ``None`` when git cannot run.

    stdout loses its line ends only: a folder named with a trailing space stays whole."""
    import subprocess  # in the thread that asks git, while the engine builds

    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_VARIABLES}
    try:
        r = subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**env, "LC_ALL": "C"},  # git's messages in English, to be read
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.returncode, r.stdout.rstrip("\n"), r.stderr.strip()


def _git(cwd: Path, *args: str) -> str | None:
    r = _git_run(cwd, *args)
    return r[1] if r is not None and r[0] == 0 else None


#: git's refusal of a work tree another user owns (compiled when met, not at import)
_DUBIOUS = r"dubious ownership in repository at '(?P<path>[^']*)'"


def _say_on_stderr(message: str) -> None:
    sys.stderr.write(message + "\n")  # looked up now: a live display may have replaced it
    sys.stderr.flush()


def git_source(
    context: Path,
    warn: Callable[[str], None] | None = None,
    *,
    leave_out: Sequence[str] = (),
    recipe: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The source revision when ``context`` is in a git work tree, else ``None``.

    CI systems check out a commit, not a branch (a detached ``HEAD``): then the
    branch is taken from the CI's own variables (``environ``, default the process's)
    when they name the very commit checked out, and ``branchFrom`` says ``ci``.

    ``remote`` is the URL of ``origin`` (or the first remote) with any
    credentials stripped; ``dirty`` says whether the context folder has
    uncommitted or untracked (not ignored) changes, and is true when git cannot
    tell (its ``status`` fails); ``path`` is the context's
    folder inside the repository.  ``leave_out`` (paths relative to ``context``:
    escrow's own folders, which the recorded context leaves out) do not make it dirty;
    ``recipe``, a Dockerfile outside the context (``-f``) but in the work tree, does
    when it has uncommitted changes.

    A work tree git refuses to read because another user owns it (git's
    ``safe.directory`` check, common on CI runners whose checkout step runs as
    another user) is not read regardless — its configuration could run
    commands — but said with ``warn`` (default: a line on stderr), so that the
    missing source does not go unnoticed.
    """
    import shutil

    if shutil.which("git") is None:
        return None
    found = _git_run(context, "rev-parse", "--show-toplevel")
    top = found[1] if found is not None and found[0] == 0 else None
    if not top:
        dubious = re.search(_DUBIOUS, found[2]) if found is not None else None
        if dubious is not None:
            from escrow.text import printable

            repo = printable(dubious.group("path"))
            (warn or _say_on_stderr)(
                f"escrow: warning: git refuses to read the repository at {repo} (another "
                "user owns it), so no source revision is recorded; run `git config --global "
                f"--add safe.directory {repo}` before escrow to record it."
            )
        return None
    commit = _git(context, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(context, "symbolic-ref", "--short", "-q", "HEAD")
    remotes = (_git(context, "remote") or "").split()
    remote_name = "origin" if "origin" in remotes else (remotes[0] if remotes else None)
    remote = _git(context, "remote", "get-url", remote_name) if remote_name else None
    root = Path(top).resolve()
    also: list[str] = []
    if recipe is not None:
        try:  # the Dockerfile's own changes count too, wherever it lies in the work tree
            also.append(f":(top,literal){Path(recipe).resolve().relative_to(root).as_posix()}")
        except ValueError:
            pass  # outside the repository: no revision of it to compare with
    status = _git(
        context,
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ".",
        *also,
        *(f":(exclude,literal){path}" for path in leave_out),
    )
    try:
        rel = Path(context).resolve().relative_to(root).as_posix()
    except ValueError:
        rel = "."
    revision: dict[str, Any] = {
        "remote": strip_url_credentials(remote) if remote else None,
        "commit": commit or None,
        "branch": branch or None,
        # git failing to tell (a submodule whose repository is gone) is not a clean tree
        "dirty": status is None or bool(status),
        "path": rel or ".",
    }
    if not branch and commit:
        named = ci_branch(os.environ if environ is None else environ)
        if named is not None and named[1].lower() == commit:
            revision["branch"], revision["branchFrom"] = named[0], "ci"
    return revision


def _ref_branch(ref: str | None) -> str | None:
    """``refs/heads/main`` → ``main``; ``None`` for any other ref (a tag, a pull request)."""
    if not ref or not ref.startswith("refs/heads/"):
        return None
    return ref.removeprefix("refs/heads/") or None


def ci_branch(env: Mapping[str, str]) -> tuple[str, str] | None:
    """``(branch, commit)`` that the CI system running this process says it checked out, for
    builds of a branch (not of a tag or a pull request's merge commit); ``None`` otherwise.

    GitHub Actions ``GITHUB_REF``/``GITHUB_SHA``, GitLab ``CI_COMMIT_BRANCH``/``CI_COMMIT_SHA``
    (set for branch pipelines only), Jenkins multibranch ``BRANCH_NAME``/``GIT_COMMIT`` (not
    for change requests), Buildkite, CircleCI, Azure Pipelines ``BUILD_SOURCEBRANCH``, Travis
    CI (not for pull requests) and Bitbucket Pipelines.
    """
    branch: str | None = None
    commit: str | None = None
    if env.get("GITHUB_ACTIONS"):
        branch, commit = _ref_branch(env.get("GITHUB_REF")), env.get("GITHUB_SHA")
    elif env.get("GITLAB_CI"):
        branch, commit = env.get("CI_COMMIT_BRANCH"), env.get("CI_COMMIT_SHA")
    elif env.get("JENKINS_URL") and not env.get("CHANGE_ID"):
        branch, commit = env.get("BRANCH_NAME"), env.get("GIT_COMMIT")
    elif env.get("BUILDKITE"):
        branch, commit = env.get("BUILDKITE_BRANCH"), env.get("BUILDKITE_COMMIT")
    elif env.get("CIRCLECI"):
        branch, commit = env.get("CIRCLE_BRANCH"), env.get("CIRCLE_SHA1")
    elif env.get("TF_BUILD"):
        branch, commit = _ref_branch(env.get("BUILD_SOURCEBRANCH")), env.get("BUILD_SOURCEVERSION")
    elif env.get("TRAVIS") and env.get("TRAVIS_PULL_REQUEST", "false") == "false":
        branch, commit = env.get("TRAVIS_BRANCH"), env.get("TRAVIS_COMMIT")
    elif env.get("BITBUCKET_BUILD_NUMBER"):
        branch, commit = env.get("BITBUCKET_BRANCH"), env.get("BITBUCKET_COMMIT")
    return (branch, commit) if branch and commit else None


if TYPE_CHECKING:
    #: what :func:`ci_facts` records of a CI job: ``runId``, ``jobUrl``, ``runner``,
    #: ``job``, ``pipeline`` and ``attempt`` (a re-run of the same run ID), read from
    #: the CI system's own variables
    _CIFacts = Callable[[Mapping[str, str]], dict[str, str | None]]


def _ci_github(env: Mapping[str, str]) -> dict[str, str | None]:
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repo, run = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    attempt = env.get("GITHUB_RUN_ATTEMPT")  # a re-run keeps the run's ID
    url = f"{server}/{repo}/actions/runs/{run}" if repo and run else None
    if url and attempt:
        url += f"/attempts/{attempt}"
    return {
        "runId": run,
        "jobUrl": url,
        "runner": env.get("RUNNER_NAME"),
        "job": env.get("GITHUB_JOB"),
        "pipeline": env.get("GITHUB_WORKFLOW"),
        "attempt": attempt,
    }


def _ci_buildkite(env: Mapping[str, str]) -> dict[str, str | None]:
    build_url, job = env.get("BUILDKITE_BUILD_URL"), env.get("BUILDKITE_JOB_ID")
    retries = env.get("BUILDKITE_RETRY_COUNT", "")  # 0 on a job's first run
    return {
        "runId": job,
        # the build's page shows the job its fragment names (as Buildkite's own links do)
        "jobUrl": f"{build_url}#{job}" if build_url and job else build_url,
        "runner": env.get("BUILDKITE_AGENT_NAME"),
        "job": env.get("BUILDKITE_LABEL"),
        "pipeline": env.get("BUILDKITE_PIPELINE_SLUG"),
        "attempt": str(int(retries) + 1) if retries.isdigit() else None,
    }


def _ci_bitbucket(env: Mapping[str, str]) -> dict[str, str | None]:
    from urllib.parse import quote

    workspace, repo = env.get("BITBUCKET_WORKSPACE"), env.get("BITBUCKET_REPO_SLUG")
    build, step = env.get("BITBUCKET_BUILD_NUMBER"), env.get("BITBUCKET_STEP_UUID")
    url = None
    if workspace and repo and build:  # Bitbucket Pipelines has no variable for it
        url = f"https://bitbucket.org/{quote(workspace)}/{quote(repo)}/pipelines/results/{build}"
        if step:  # "{…}": the braces quoted
            url += f"/steps/{quote(step, safe='')}"
    return {
        "runId": build,
        "jobUrl": url,
        "runner": None,  # BITBUCKET_STEP_RUN_NUMBER counts a step's runs: it names no runner
        "job": step,
        "pipeline": env.get("BITBUCKET_PIPELINE_UUID"),
        "attempt": env.get("BITBUCKET_STEP_RUN_NUMBER"),
    }


def _ci_azure(env: Mapping[str, str]) -> dict[str, str | None]:
    from urllib.parse import quote

    base, project, build = (
        env.get("SYSTEM_COLLECTIONURI"),
        env.get("SYSTEM_TEAMPROJECT"),
        env.get("BUILD_BUILDID"),
    )
    url = (  # a project's name may hold spaces
        f"{base.rstrip('/')}/{quote(project, safe='')}/_build/results?buildId={build}"
        if base and project and build
        else None
    )
    return {
        "runId": build,
        "jobUrl": url,
        "runner": env.get("AGENT_NAME"),
        "job": env.get("SYSTEM_JOBDISPLAYNAME"),
        "pipeline": env.get("BUILD_DEFINITIONNAME"),
        "attempt": env.get("SYSTEM_JOBATTEMPT"),  # a re-run job keeps the build's ID
    }


def _simple(
    run: str, url: str | None, runner: str | None, job: str | None, pipeline: str | None = None
) -> _CIFacts:
    """The facts of a CI system that names each in one variable (``None``: it has none)."""

    def facts(env: Mapping[str, str]) -> dict[str, str | None]:
        return {
            "runId": env.get(run),
            "jobUrl": env.get(url) if url else None,
            "runner": env.get(runner) if runner else None,
            "job": env.get(job) if job else None,
            "pipeline": env.get(pipeline) if pipeline else None,
        }

    return facts


#: (system, the variable that is set in its jobs, how to read its facts)
_CI_SYSTEMS: list[tuple[str, str, _CIFacts]] = [
    ("github-actions", "GITHUB_ACTIONS", _ci_github),
    (
        "gitlab-ci",
        "GITLAB_CI",
        _simple(
            "CI_JOB_ID", "CI_JOB_URL", "CI_RUNNER_DESCRIPTION", "CI_JOB_NAME", "CI_PIPELINE_ID"
        ),
    ),
    ("jenkins", "JENKINS_URL", _simple("BUILD_ID", "BUILD_URL", "NODE_NAME", "JOB_NAME")),
    ("buildkite", "BUILDKITE", _ci_buildkite),
    (
        "circleci",
        "CIRCLECI",
        _simple(
            "CIRCLE_BUILD_NUM",
            "CIRCLE_BUILD_URL",
            None,  # CIRCLE_NODE_INDEX is the job's index among its parallel copies, not a runner
            "CIRCLE_JOB",
            "CIRCLE_WORKFLOW_ID",
        ),
    ),
    ("azure-pipelines", "TF_BUILD", _ci_azure),
    (
        "travis-ci",
        "TRAVIS",
        _simple("TRAVIS_JOB_ID", "TRAVIS_JOB_WEB_URL", None, "TRAVIS_JOB_NAME", "TRAVIS_BUILD_ID"),
    ),
    ("bitbucket-pipelines", "BITBUCKET_BUILD_NUMBER", _ci_bitbucket),
    (
        "drone",
        "DRONE",
        _simple(
            "DRONE_BUILD_NUMBER", "DRONE_BUILD_LINK", "DRONE_RUNNER_HOSTNAME", "DRONE_STAGE_NAME"
        ),
    ),
    (
        "teamcity",
        "TEAMCITY_VERSION",
        _simple("BUILD_NUMBER", None, "AGENT_NAME", "TEAMCITY_BUILDCONF_NAME"),
    ),
]


def ci_facts(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """CI job facts from the usual environment variables, or ``None`` outside CI."""
    env = os.environ if env is None else env
    for system, marker, facts in _CI_SYSTEMS:
        if env.get(marker):
            return _clean({"system": system, **facts(env)})
    if env.get("CI", "").lower() in ("true", "1", "yes"):
        return {"system": "unknown"}
    return None


def _clean(d: dict[str, str | None]) -> dict[str, Any]:
    return {k: strip_url_credentials(v) for k, v in d.items() if v}


def builder_id(ci: Mapping[str, Any] | None) -> str:
    """The builder's ID: the CI runner's name when known, else the host name."""
    if ci and ci.get("runner"):
        return str(ci["runner"])
    return socket.gethostname()
