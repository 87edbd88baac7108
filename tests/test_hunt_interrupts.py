"""Ctrl-C and SIGTERM reaching long-running escrow commands: real processes, signalled
once they reach the phase of interest (seen in their output or files), never after a sleep."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

ESCROW = [sys.executable, "-c", "from escrow.cli.entry import main; main()"]

#: a command that counts the SIGINTs it gets (in the file named by its argument), makes a
#: second file once it runs, and exits 7 a second after its first SIGINT (that long for a
#: duplicate to arrive), or 0 when none came within a minute.  It runs at a real-time
#: priority on escrow's one CPU, so that it takes each signal as soon as it is sent,
#: before escrow runs on: two sent one after the other are never merged into one pending.
_COUNTS_SIGINT = """
import os, pathlib, signal, sys, time
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
out = pathlib.Path(sys.argv[1])
got = 0
def on_sigint(signo, frame):
    global got
    got += 1
    out.write_text(str(got))
signal.signal(signal.SIGINT, on_sigint)
pathlib.Path(sys.argv[1] + ".running").write_text("yes")
deadline = time.monotonic() + 60
while not got and time.monotonic() < deadline:
    time.sleep(0.02)
end = time.monotonic() + 1
while time.monotonic() < end:
    time.sleep(0.02)
sys.exit(7 if got else 0)
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], what: str) -> None:
    """Until ``path`` exists (the process reached the phase of interest); fails when the
    process ended first, or after two minutes."""
    deadline = time.monotonic() + 120
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended before {what}: {proc.returncode}\n{out}\n{err}")
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.02)


def _entries() -> list[str]:
    log = run_cli(["log", "--json"])
    assert log.exit_code == 0, log.stderr
    return [str(e["kind"]) for e in log.json()["entries"]]


def _ledger_verifies() -> None:
    verify = run_cli(["ledger", "verify"])
    assert verify.exit_code == 0, verify.stderr


def test_ctrl_c_at_a_terminal_reaches_the_recorded_command_once(
    escrow_home: Path, tmp_path: Path
) -> None:
    """Ctrl-C at a terminal is sent by the kernel to the whole foreground process group:
    the command `escrow record` runs got it, and escrow passed it on as well -- a second
    SIGINT, which tools that clean up on the first take as "stop at once" (terraform's
    "Two interrupts received. Exiting immediately", compose, many Go tools).  The command
    gets one; the run is recorded with its exit code, which escrow exits with."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "count.py").write_text(_COUNTS_SIGINT)
    counted = tmp_path / "sigints"
    master, slave = os.openpty()

    def with_terminal() -> None:  # the session's controlling terminal, as a shell's is
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the command's CPU too

    proc = subprocess.Popen(
        [*ESCROW, "record", "--", sys.executable, "count.py", str(counted)],
        cwd=work,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=with_terminal,
    )
    os.close(slave)
    try:
        _wait_for(Path(f"{counted}.running"), proc, "the command running")
        os.write(master, b"\x03")  # Ctrl-C typed at the terminal
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    assert counted.read_text() == "1", err  # was 2
    assert proc.returncode == 7, err
    assert "escrow: the command exited with code 7; recorded as ledger entry 1." in err, err
    assert "Traceback" not in err
    assert _entries() == ["key-event", "build-manifest"]
    _ledger_verifies()


def test_sigterm_during_a_deposit_import_removes_what_it_staged(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (a cancelled CI job) ended every command but `escrow build` and `escrow
    record` where it stood, without a word: a deposit import left the part of the archive
    it had unpacked in ESCROW_HOME/deposits/tmp (until a `gc --apply`), where Ctrl-C
    removes it.  SIGTERM now stops a command as Ctrl-C does: it is removed, one line says
    so, and the exit code is 143."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("a.bin", "b.bin"):
        (work / name).write_bytes(os.urandom(1 << 20))
    monkeypatch.chdir(work)
    recorded = run_cli(["record", "-q", "--", "true"])
    assert recorded.exit_code == 0, recorded.stderr
    deposited = run_cli(["deposit", "1", "--context", str(work)])
    assert deposited.exit_code == 0, deposited.stderr
    archive = tmp_path / "deposit.tar"
    exported = run_cli(["deposit", "export", "1", "-o", str(archive)])
    assert exported.exit_code == 0, exported.stderr
    data = archive.read_bytes()

    importer = tmp_path / "importer-home"  # another ledger's escrow, importing the deposit
    monkeypatch.setenv("ESCROW_HOME", str(importer))
    made = run_cli(["init"])
    assert made.exit_code == 0, made.stderr
    fifo = tmp_path / "arriving.tar"  # an archive still arriving (a download, a pipe)
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*ESCROW, "deposit", "import", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    writer = os.open(fifo, os.O_WRONLY)

    def send_half() -> None:
        with contextlib.suppress(OSError):  # escrow stopped reading: the pipe is broken
            os.write(writer, data[: len(data) // 2])

    sending = threading.Thread(target=send_half, daemon=True)
    sending.start()
    staging = importer / "deposits" / "tmp"
    try:
        deadline = time.monotonic() + 120
        while not list(staging.glob("import-*/.escrow-extract-*/blobs/sha256/*/*")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the import never began to unpack"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(writer)
        sending.join(timeout=60)
    assert proc.returncode == 143, (proc.returncode, err)  # was -15: killed where it stood
    assert err == "\nescrow: terminated.\n", err
    assert list(staging.iterdir()) == []  # the staged part of the archive was left here
    assert not (importer / "deposits" / "refs").exists()  # nothing imported
    _ledger_verifies()
