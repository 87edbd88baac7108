"""The capture stage as a build pipeline meets it: secrets on a recorded
command line, a command killed by a signal, a checkout git refuses to read, and what a
failed step said, on a terminal and in the error."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.capture.progress import LiveProgress
from escrow.capture.source import git_source
from tests.capture.conftest import show, write_tree


def test_record_hides_a_secret_joined_to_its_option_with_equals(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--build-arg=PASSWORD=…` (docker's own spelling with `=`) and a secret too short
    to be searched for in free text are hidden on the recorded command line: the
    ledger is append-only, a value signed into it stays there."""
    ctx = write_tree(tmp_path / "argv-ctx", {"Makefile": "all:\n"})
    monkeypatch.chdir(ctx)
    long_value, short_value = "eqform-pw-4417", "xy"
    r = cli(
        [
            "record",
            "--json",
            "--",
            sys.executable,
            "-c",
            "import sys; print(sys.argv[1])",
            f"--build-arg=PASSWORD={long_value}",
            f"--env=API_TOKEN={short_value}",
            f"GITHUB_TOKEN={short_value}",
            "--label=version=1.2",
        ]
    )
    assert r.exit_code == 0, r.stderr
    cmd = show(r.json()["index"])["predicate"]["command"]
    assert cmd["argv"][-4:] == [
        "--build-arg=PASSWORD=[secret PASSWORD]",
        "--env=API_TOKEN=[secret API_TOKEN]",
        "GITHUB_TOKEN=[secret GITHUB_TOKEN]",
        "--label=version=1.2",
    ]
    log = BlobStore(escrow_home / "blobs").get(cmd["log"]["sha256"])
    assert log == b"--build-arg=PASSWORD=[secret PASSWORD]\n"
    assert long_value not in r.stderr


def test_record_names_the_signal_that_killed_the_command(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli(["record", "--json", "--", "sh", "-c", "echo going; kill -TERM $$"])
    assert r.exit_code == 143, r.stderr
    assert r.json()["exit_code"] == 143
    assert "the command was killed by SIGTERM (exit code 143); recorded as" in r.stderr
    failure = show(r.json()["index"])["predicate"]["build"]["failure"]
    assert failure["exitCode"] == 143
    assert failure["message"] == "The command was killed by SIGTERM (exit code 143)."
    assert failure["logTail"] == "going"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the work tree to another user")
def test_a_checkout_git_refuses_to_read_is_said_not_dropped_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI runner whose checkout belongs to another user: git refuses the work tree
    (safe.directory). escrow does not override git's check, but says why no source is
    recorded and what to do."""
    for var in ("SUDO_UID", "SUDO_GID", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    repo = write_tree(tmp_path / "checkout", {"app/Dockerfile": "FROM scratch\n"})
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for root, dirs, files in os.walk(repo):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), 4321, 4321)
    os.lchown(repo, 4321, 4321)
    said: list[str] = []
    assert git_source(repo / "app", warn=said.append) is None
    assert len(said) == 1
    assert f"git refuses to read the repository at {repo}" in said[0]
    assert f"git config --global --add safe.directory {repo}" in said[0]
    # a folder that is no git work tree at all says nothing
    said.clear()
    plain = write_tree(tmp_path / "plain", {"a": "b"})
    assert git_source(plain, warn=said.append) is None and said == []
    shutil.rmtree(repo, ignore_errors=True)


def test_a_failed_step_shows_what_it_printed_on_a_terminal() -> None:
    """The live display keeps one line of output; a failed step's last lines are printed
    under it, so that a terminal user sees why without `escrow logs`."""
    stream = io.StringIO()
    progress = LiveProgress(stream)
    progress.start("escrow: phoenix build of ctx as app:1")
    progress.step(1, 2, "FROM base")
    progress.output("fine\n")
    progress.step_done(1, 5, 0)
    progress.step(2, 2, "RUN make")
    progress.output("compiling\nerror: missing \x1b]0;title\x07 header\n")
    progress.step_done(2, 10, 3)
    progress.finish("escrow: step 2 failed")
    out = stream.getvalue()
    assert "  | compiling\n" in out
    assert "  | error: missing \\x1b]0;title\\x07 header\n" in out  # as text, not sent
    assert "fine" not in out  # a step that succeeded keeps its output to its log


def test_a_failed_build_names_the_logs_command(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "fails",
        {"Dockerfile": "FROM escrow-test/base:latest\nRUN echo why-it-failed && exit 3\n"},
    )
    r = cli(["build", str(ctx), "-t", "escrow-test/review9-fails:1", "--no-deposit", "--json"])
    assert r.exit_code == 1, r.stderr
    index = r.json()["index"]
    assert r.json()["failure"]["exitCode"] == 3
    assert f"`escrow logs {index} 2` prints the step's whole log." in r.stderr
    logs = cli(["logs", str(index), "2"])
    assert logs.exit_code == 0 and "why-it-failed" in logs.stdout


def test_ctrl_c_during_a_build_ends_the_progress_display(base_image: str, tmp_path: Path) -> None:
    """Ctrl-C while the engine builds: the live display was left running (its cursor
    hidden, redrawn over `escrow: aborted.`); it is ended with the stop's message."""
    from escrow.capture.build import BuildRequest, phoenix_build
    from escrow.capture.engine import DockerEngine
    from escrow.capture.progress import NoProgress

    class Recorded(NoProgress):
        started = 0
        finished: list[str] = []

        def step(self, index: int, total: int | None, text: str) -> None:
            self.started = index

        def finish(self, message: str) -> None:
            self.finished.append(message)

    progress = Recorded()

    def check() -> None:
        if progress.started >= 2:
            raise KeyboardInterrupt

    ctx = write_tree(
        tmp_path / "app",
        {"Dockerfile": "FROM escrow-test/base:latest\nRUN sleep 0.3 && echo 2 > /two\n"},
    )
    with DockerEngine() as engine, pytest.raises(KeyboardInterrupt):
        phoenix_build(
            BuildRequest(context=ctx, tags=("escrow-test/review9-ctrl-c:1",)),
            engine=engine,
            blobs=BlobStore(tmp_path / "blobs"),
            progress=progress,
            check=check,
        )
    assert progress.finished == ["escrow: the build was stopped; nothing is recorded."]


def _git(*args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


def test_escrow_home_inside_the_work_tree_does_not_make_the_source_dirty(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline keeping ESCROW_HOME in its checkout (to cache it between jobs): escrow
    leaves the folder out of the recorded context, so it does not make every build
    `dirty` (and `cleanContext` false) either; another untracked file still does."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    assert escrow_home.parent == tmp_path
    write_tree(tmp_path, {"Makefile": "all:\n"})
    _git("init", "-q", str(tmp_path))
    _git("-C", str(tmp_path), "add", "Makefile")
    _git("-C", str(tmp_path), "commit", "-qm", "initial")
    monkeypatch.chdir(tmp_path)
    r = cli(["record", "--json", "--", "true"])
    assert r.exit_code == 0, r.stderr
    predicate = show(r.json()["index"])["predicate"]
    assert predicate["inputs"]["context"]["excluded"] == ["escrow-home"]
    assert predicate["inputs"]["source"]["dirty"] is False
    assert predicate["build"]["phoenix"]["cleanContext"] is True
    (tmp_path / "stray.txt").write_text("not committed\n")
    assert git_source(tmp_path, leave_out=("escrow-home",))["dirty"] is True  # type: ignore[index]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_escrow_logs_does_not_let_a_build_drive_the_terminal(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`escrow logs` wrote a step's bytes as they were to the terminal, so a build could
    retitle it or erase the rows above (the names it records are escaped already); to a
    terminal they are shown as text now, to a file or pipe they stay byte for byte."""
    from escrow.cli.main import main

    monkeypatch.chdir(tmp_path)
    evil = "built\\x1b]0;pwned\\x07\\r\\x1b[1A\\x1b[2Kok"
    r = cli(["record", "--json", "-q", "--", "printf", evil + "\\r\\n"])
    assert r.exit_code == 0, r.stderr
    index = str(r.json()["index"])

    shown, saved = _Terminal(), (sys.stdout, sys.stderr)
    sys.stdout, sys.stderr = shown, io.StringIO()
    try:
        main(["logs", index, "1"])
    except SystemExit as stop:
        assert stop.code in (0, None)
    finally:
        sys.stdout, sys.stderr = saved
    assert shown.getvalue() == "built\\x1b]0;pwned\\x07\\x0d\\x1b[1A\\x1b[2Kok\n"

    piped = cli(["logs", index, "1"])  # not a terminal: exactly what was recorded
    assert piped.stdout == "built\x1b]0;pwned\x07\r\x1b[1A\x1b[2Kok\r\n"


def test_an_uncommitted_dockerfile_outside_the_context_makes_the_source_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`escrow build app -f Dockerfile` in a checkout whose Dockerfile (beside `app/`)
    has uncommitted edits was recorded `dirty: false`, `cleanContext: true`: the recipe
    is part of what the revision is claimed to hold."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    repo = write_tree(tmp_path / "repo", {"Dockerfile": "FROM scratch\n", "app/a.txt": "a\n"})
    _git("init", "-q", str(repo))
    _git("-C", str(repo), "add", "-A")
    _git("-C", str(repo), "commit", "-qm", "initial")
    assert git_source(repo / "app", recipe=repo / "Dockerfile")["dirty"] is False  # type: ignore[index]
    (repo / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /\n")
    assert git_source(repo / "app", recipe=repo / "Dockerfile")["dirty"] is True  # type: ignore[index]
    outside = write_tree(tmp_path / "elsewhere", {"Dockerfile": "FROM scratch\n"})
    source = git_source(repo / "app", recipe=outside / "Dockerfile")
    assert source is not None and source["dirty"] is False and source["path"] == "app"


def test_escrow_build_with_an_edited_dockerfile_beside_the_context_is_dirty(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    repo = write_tree(
        tmp_path / "checkout",
        {"Dockerfile": "FROM escrow-test/base:latest\n", "app/a.txt": "a\n"},
    )
    _git("init", "-q", str(repo))
    _git("-C", str(repo), "add", "-A")
    _git("-C", str(repo), "commit", "-qm", "initial")
    (repo / "Dockerfile").write_text("FROM escrow-test/base:latest\nCOPY a.txt /\n")
    monkeypatch.chdir(repo)
    r = cli(["build", "app", "-f", "Dockerfile", "-t", "escrow-test/review9-df:1", "--json"])
    assert r.exit_code == 0, r.stderr
    predicate = show(r.json()["index"])["predicate"]
    assert predicate["inputs"]["source"]["path"] == "app"
    assert predicate["inputs"]["source"]["dirty"] is True
    assert predicate["build"]["phoenix"]["cleanContext"] is False
