"""Engine API paths from image names, `escrow record` warnings and SIGTERM,
`escrow logs` on an entry without logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from escrow.capture import record as record_mod
from escrow.capture.engine import _path
from escrow.errors import InputError
from tests.capture.conftest import write_tree
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "ref", ["", ".", "..", "../containers", "a/../../containers", "a/./b", "a//b", "a/", "/a"]
)
def test_path_refuses_empty_dot_and_dot_dot_segments(ref: str) -> None:
    with pytest.raises(InputError) as e:
        _path(ref)
    assert e.value.exit_code == 2
    assert e.value.diagnostics() == f"{ref!r} is not an image name or ID."


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        ("ubuntu:22.04", "ubuntu:22.04"),
        ("localhost:5000/a/b@sha256:ab", "localhost:5000/a/b%40sha256:ab"),
        ("a?b#c d", "a%3Fb%23c%20d"),
        ("%2e%2e", "%252e%252e"),
        ("..x/.y", "..x/.y"),
    ],
)
def test_path_quotes_what_it_keeps(ref: str, path: str) -> None:
    assert _path(ref) == path


@pytest.mark.docker
def test_build_from_dot_dot_is_refused_as_a_bad_name(escrow_home: Path, tmp_path: Path) -> None:
    """A Dockerfile's ``FROM ..`` reached ``GET /images/../json`` (another endpoint; the
    engine's answer reported as it failing, exit 3)."""
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM ..\nRUN true\n"})
    r = run_cli(["build", "-t", "escrow-review11c:dotdot", str(ctx)])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip() == "escrow: error: '..' is not an image name or ID."


def test_record_says_the_context_after_could_not_be_read(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = record_mod._snapshot
    calls: list[Path] = []

    def snapshot(context: Path, excluded: Any) -> Any:
        calls.append(context)
        if len(calls) == 2:
            raise InputError("Cannot read x in the build context: File name too long.")
        return real(context, excluded)

    monkeypatch.setattr(record_mod, "_snapshot", snapshot)
    ctx = write_tree(tmp_path / "ctx", {"a.txt": "a"})
    r = run_cli(["record", "--quiet", "--context", str(ctx), "--", sys.executable, "-c", "pass"])
    assert r.exit_code == 0, r.stderr
    assert "context digest differs" not in r.stderr
    assert (
        "escrow: warning: the context after the command could not be read (Cannot read x in "
        "the build context: File name too long), so whether the command changed its own "
        "inputs is unknown." in r.stderr
    )


def test_record_passes_sigterm_on_and_records_the_run(escrow_home: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"a.txt": "a"})
    pidfile = tmp_path / "child.pid"
    child = (
        "import os, sys, time\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    launcher = "import sys; from escrow.cli.entry import main; main()"
    argv = [sys.executable, "-c", launcher, "record", "--json", "--context", str(ctx), "--"]
    proc = subprocess.Popen(
        [*argv, sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip() == "ready":
                break
        proc.send_signal(signal.SIGTERM)  # escrow only, as a CI runner cancelling the job
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        result = json.loads(out)
        assert result["exit_code"] == 143
        pid = int(pidfile.read_text())
        with pytest.raises(ProcessLookupError):  # the command ended (and was reaped)
            os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pidfile.exists():  # before the fix the command was left running
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    r = run_cli(["show", str(result["index"]), "--json"])
    assert r.exit_code == 0, r.stderr
    predicate = r.json()["statement"]["predicate"]
    assert predicate["command"]["exitCode"] == 143
    assert predicate["build"]["failure"]["message"] == (
        "The command was killed by SIGTERM (exit code 143)."
    )


def test_logs_of_an_entry_without_logs_names_it(escrow_home: Path) -> None:
    r = run_cli(["logs", "0"])
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        "escrow: error: Entry 0 has no recorded logs (it is a key-event, not a build or a "
        "recorded command)."
    )
