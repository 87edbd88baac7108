"""Failures injected around `escrow build` / `escrow record`: a blob store that cannot be
written, SIGTERM while the engine builds."""

from __future__ import annotations

import errno
import io
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.errors import EnvironmentProblem
from tests.capture.conftest import write_tree
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent.parent
ESCROW = [sys.executable, "-c", "from escrow.cli.entry import main; main()"]


def test_a_blob_store_that_cannot_be_written_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under ESCROW_HOME/blobs: the OSError named no file (`Cannot write: No
    space left on device.`), or escrow's temporary file (`Cannot use …/.incoming-6ev5p3gk:
    Operation not permitted.`); it is an environment error naming the blob store, and no
    temporary file is left."""
    store = BlobStore(tmp_path / "blobs")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(EnvironmentProblem) as caught:
        store.put(b"a step's log\n")
    assert caught.value.message == (
        f"Cannot write to the blob store {store.root}: No space left on device."
    )
    assert caught.value.exit_code == 3
    assert list(store.root.iterdir()) == []  # no .incoming-* left


def test_an_unreadable_source_is_not_called_a_blob_store_failure(tmp_path: Path) -> None:
    """Only writing is the store's failure: an error reading the bytes passes through."""

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError(errno.EIO, os.strerror(errno.EIO), "/the/source")

    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(OSError) as caught:
        store.put_file(io.BufferedReader(Broken()))
    assert not isinstance(caught.value, EnvironmentProblem)
    assert caught.value.filename == "/the/source"
    assert [p.name for p in store.root.iterdir()] == []


def test_escrow_record_names_the_blob_store_it_cannot_write(escrow_home: Path) -> None:
    """`escrow record` of a command with a large log, the file size limited (a quota, a
    full disk): one sentence naming the blob store, exit 3, nothing recorded."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    done = subprocess.run(
        [*ESCROW, "record", "-q", "--", "sh", "-c", "head -c 1500000 /dev/zero | tr '\\0' '\\n'"],
        cwd=escrow_home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith(
        f"escrow: error: Cannot write to the blob store {escrow_home / 'blobs'}: File too large."
    ), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not list((escrow_home / "blobs").glob(".incoming-*"))
    assert _entries() == ["key-event"]  # nothing recorded
    verify = run_cli(["ledger", "verify"])
    assert verify.exit_code == 0, verify.stderr


def _entries() -> list[str]:
    log = run_cli(["log", "--json"])
    assert log.exit_code == 0, log.stderr
    return [str(e["kind"]) for e in log.json()["entries"]]


def _labelled(label: str) -> list[str]:
    out = subprocess.run(
        ["/usr/bin/docker", "images", "-a", "-q", "--no-trunc", "--filter", f"label={label}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return sorted(set(out.stdout.split()))


def test_sigterm_stops_a_build_as_ctrl_c_does(
    escrow_home: Path, base_image: str, tmp_path: Path
) -> None:
    """SIGTERM (a CI job cancelled) while the engine builds killed escrow at once: the
    images of the steps the engine had finished were left behind, with no message.  It
    stops the build as Ctrl-C does: those images removed, one message, nothing recorded."""
    label = f"escrow-review12-sigterm={uuid.uuid4().hex}"
    ctx = write_tree(
        tmp_path / "slow",
        {
            "Dockerfile": (
                f"FROM escrow-test/base:latest\nLABEL {label}\nRUN echo one > /one\nRUN sleep 30\n"
            )
        },
    )
    proc = subprocess.Popen(
        [*ESCROW, "build", str(ctx), "-t", "escrow-test/review12-sigterm:1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("step 4/4"):
                break
            assert time.monotonic() < deadline, seen
        else:
            pytest.fail("".join(seen))
        time.sleep(0.3)  # the engine runs the sleep
        assert len(_labelled(label)) >= 2  # the LABEL and the first RUN's images
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
        err = "".join(seen) + rest
        assert proc.returncode == 143, (proc.returncode, err)  # 128 + SIGTERM, as if killed
        assert err.endswith(
            "escrow: the build was stopped; nothing is recorded.\n\nescrow: terminated.\n"
        ), err
        left = _labelled(label)
        assert left == [], left
        assert _entries() == ["key-event"]  # nothing recorded
        assert list((escrow_home / "deposits" / "pins").glob("pins-*")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for image in _labelled(label):
            subprocess.run(["/usr/bin/docker", "rmi", "-f", image], capture_output=True)


def test_a_long_log_line_is_scrubbed_in_linear_time() -> None:
    """The URL-credentials pattern tried every letter of a long run of letters as the
    start of a scheme and scanned to the run's end each time: a 2 MB line (a command
    printing no newline) kept `escrow record` busy for hours.  Run apart with a generous
    limit, so that a regression fails instead of hanging the suite (a guard, not a
    measure: it takes well under a second)."""
    code = (
        "from escrow.capture.secrets import Redactor\n"
        "out = Redactor().data(b'a' * 2_000_000 + b' https://user:pw@host/x 1https://u:p@h')\n"
        "print(out[-30:].decode())\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert r.stdout.strip().endswith("https://host/x 1https://h"), r.stdout
