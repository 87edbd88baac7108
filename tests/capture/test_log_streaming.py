"""A large log is recorded in bounded memory, scrubbed exactly.

A build step's log and a recorded command's output were held whole in memory, and
scrubbed whole (copied twice more) before they were stored: a 200 MB ``RUN`` log
peaked at ~440 MB resident, and depositing the log read it whole once more.  Past
:data:`~escrow.capture.logs.MEMORY_LIMIT` a log is now scrubbed as it comes, a piece
at a time (:class:`~escrow.capture.secrets.StreamScrub`), into a temporary file; what is
stored is exactly what scrubbing the whole log gives -- a secret split between two
pieces too -- and the failure tail is that of the stored bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.capture.logs import _PIECE, MEMORY_LIMIT, LogBuffer
from escrow.capture.manifest import log_tail
from escrow.capture.secrets import Redactor
from tests.capture.conftest import show, write_tree
from tests.conftest import BASE_TAG
from tests.test_hunt_crash_full_disk import _small_disk

SECRET = f"hunt-stream-{uuid.uuid4().hex}"
#: a line the commands print over and over (8 KiB with its line feed)
LINE = "x" * 8191
#: bytes of output printed by the large runs (well past the memory limit)
LARGE = 48 << 20
#: and by the small runs they are measured against (below it)
SMALL = 1 << 20

# -- scrubbing a log that comes in pieces -------------------------------------------------


def _redactor(*values: str) -> Redactor:
    redactor = Redactor()
    for i, value in enumerate(values):
        redactor.learn(f"API_TOKEN_{i}", value)
    return redactor


def _streamed(redactor: Redactor, pieces: list[bytes]) -> bytes:
    scrub = redactor.stream()
    return b"".join([*(scrub.feed(p) for p in pieces), scrub.close()])


def test_a_secret_split_at_any_byte_between_two_pieces_is_scrubbed() -> None:
    redactor = _redactor("s3cr3t-value-42", "s3cr3t")  # one value holds another
    data = (
        b"before s3cr3t-value-42 and s3cr3t, "
        b"then https://user:p%40ss@example.com/x and xhttps://a@b, the end s3cr3t-value-4"
    )
    whole = redactor.data(data)
    assert b"s3cr3t-value-42" not in whole and b"p%40ss" not in whole
    for cut in range(len(data) + 1):
        assert _streamed(redactor, [data[:cut], data[cut:]]) == whole, cut
    assert _streamed(redactor, [data[i : i + 1] for i in range(len(data))]) == whole


def test_pieces_of_any_size_give_what_the_whole_log_gives() -> None:
    """Logs of the characters URLs and values are made of, cut anywhere: a scheme of up
    to 64 characters, a user-info that ends only at ``/``, ``@`` or white space (how far
    a URL may still be undecided), values that hold one another."""
    rng = random.Random(20240601)
    words = [b"a", b"h", b":", b"/", b"@", b" ", b"\n", b"1", b".", b"\xc3\xa9", b"x"]
    urls = [b"http://", b"https://u:p@", b"a://", b"x1://", b"://", b"ab+c.d-e://"]
    for _ in range(600):
        values = ["".join(rng.choice("ahs:/@x1") for _ in range(rng.randint(4, 9)))]
        values += [values[0] + "zz"] if rng.random() < 0.3 else []
        redactor = _redactor(*values)
        parts: list[bytes] = []
        for _ in range(rng.randint(0, 40)):
            k = rng.random()
            if k < 0.15:
                parts.append(rng.choice(values).encode())
            elif k < 0.3:
                parts.append(rng.choice(urls))
            elif k < 0.35:
                parts.append(b"q" * rng.randint(60, 70) + rng.choice([b"://", b":/", b""]))
            elif k < 0.38:
                parts.append(b"z" * rng.randint(4000, 9000))  # past the 4 KiB looked at first
            else:
                parts.append(rng.choice(words) * rng.randint(1, 3))
        data = b"".join(parts)
        pieces, at = [], 0
        while at < len(data):
            n = rng.choice([1, 2, 3, 7, 64, 5000])
            pieces.append(data[at : at + n])
            at += n
        assert _streamed(redactor, pieces) == redactor.data(data), data[:200]


# -- a log past its memory limit -----------------------------------------------------------


def _shapes() -> dict[str, bytes]:
    secret = SECRET.encode()
    body = b"".join(
        b"line %d \xc3\xa9 %s\r\n" % (i, secret if i % 97 == 0 else b"") for i in range(5000)
    )
    return {
        "lines": body,
        "many line feeds at the end": body + b"end " + secret + b"\n" * 200_000,
        "one long last line": body + b"a" * 300_000 + b" https://u:pw@h/x",
        "one long line": b"b" * 250_000 + secret + b"c" * 5,
        "cut inside a character": body + b"\xe2\x82",
    }


@pytest.mark.parametrize("shape", list(_shapes()))
def test_a_log_past_its_limit_is_stored_as_the_whole_log_would_be(
    tmp_path: Path, shape: str
) -> None:
    data = _shapes()[shape]
    blobs = BlobStore(tmp_path / "blobs")
    redactor = _redactor(SECRET)
    rng = random.Random(shape)
    log = LogBuffer(blobs, redactor, limit=10_000)
    at = 0
    while at < len(data):
        n = rng.choice([1, 100, 4096, 70_000])
        log.write(data[at : at + n])
        at += n
    assert log.spilled and log.size == len(data)
    whole = redactor.data(data)
    ref = log.store(blobs, redactor)
    assert ref == {"sha256": hashlib.sha256(whole).hexdigest(), "size": len(whole)}
    assert blobs.get(ref["sha256"]) == whole
    assert log_tail(log.scrubbed_end(redactor)) == log_tail(whole)
    # the same as a log held in memory gives
    small = LogBuffer(blobs, redactor, limit=len(data) + 1)
    small.write(data)
    assert not small.spilled
    assert small.store(blobs, redactor) == ref and small.scrubbed_end(redactor) == whole
    log.close()
    # nothing but the blob is left in the store: the temporary file had no name
    left = [p.name for p in blobs.root.iterdir()]
    assert left == [ref["sha256"][:2]], left


def test_a_value_learnt_after_the_log_passed_its_limit_is_scrubbed_from_all_of_it(
    tmp_path: Path,
) -> None:
    """A build step's ``|1 TOKEN=…`` output line teaches the redactor a value while the
    log is past its limit: it is scrubbed from the bytes that came before too, as it was
    from a log scrubbed whole."""
    blobs = BlobStore(tmp_path / "blobs")
    redactor = _redactor(SECRET)
    later = "learnt-later-" + uuid.uuid4().hex
    data = (f"{later} {SECRET}\n" * 2000).encode()
    log = LogBuffer(blobs, redactor, limit=1000)
    log.write(data)
    assert log.spilled
    assert later not in redactor.text(f"|1 API_TOKEN_LATER={later} /bin/sh -c x")
    log.write(data)
    ref = log.store(blobs, redactor)
    stored = blobs.get(ref["sha256"])
    assert stored == redactor.data(data + data)
    assert later.encode() not in stored and SECRET.encode() not in stored
    assert later.encode() not in log.scrubbed_end(redactor)
    log.close()


# -- escrow build and escrow record, measured ----------------------------------------------

#: runs escrow's command line, then writes the process's peak resident memory (VmHWM)
_MEASURED = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('\\nhunt-stream-hwm ' + line.split()[1] + '\\n')\n"
    "atexit.register(hwm)\n"
    "from escrow.cli.main import main\n"
    "main(sys.argv[1:])\n"
)


def _measured(args: list[str], cwd: Path, **env: str) -> tuple[int, Any, int]:
    """``escrow ARGS --json`` in a process of its own: (exit code, its JSON, peak bytes)."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    peak = re.search(r"hunt-stream-hwm (\d+)", proc.stderr)
    assert peak is not None, proc.stderr
    return proc.returncode, json.loads(proc.stdout), int(peak.group(1)) * 1024


def _printed(size: int) -> bytes:
    """What the commands below print, scrubbed: lines up to a byte before the first
    piece scrubbed on its own ends, the secret across that end, ``size`` more bytes of
    lines, and the secret again with a URL's credentials on the last line."""
    lines = ((LINE + "\n") * (_PIECE // len(LINE) + 1)).encode()
    return (
        lines[: _PIECE - 5]
        + b"[secret API_TOKEN]\n"
        + ((LINE + "\n") * (size // (len(LINE) + 1))).encode()
        + b"done https://host/x [secret API_TOKEN]\n"
    )


def _script(size: int) -> str:
    """The shell commands that print :func:`_printed` (``size``: a multiple of 8 KiB)."""
    return (
        f'yes {LINE} | head -c {_PIECE - 5}; echo "$API_TOKEN"; yes {LINE} | head -c {size}; '
        'echo "done https://user:pw@host/x $API_TOKEN"'
    )


def _check_stored(home: Path, ref: dict[str, Any], expected: bytes) -> None:
    assert ref == {"sha256": hashlib.sha256(expected).hexdigest(), "size": len(expected)}
    h = hashlib.sha256()
    with BlobStore(home / "blobs").open(ref["sha256"]) as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    assert h.hexdigest() == ref["sha256"]
    assert not [p for p in (home / "blobs").iterdir() if p.name.startswith(".")]


def test_a_large_run_step_log_is_stored_exactly_in_bounded_memory(
    module_home: Path, base_image: str, tmp_path: Path
) -> None:
    assert LARGE > 4 * MEMORY_LIMIT > SMALL
    tag = "hunt-stream-build:1"
    peaks: dict[int, int] = {}
    try:
        for size in (SMALL, LARGE):
            ctx = write_tree(
                tmp_path / f"ctx-{size}",
                {"Dockerfile": f"FROM {BASE_TAG}\nARG API_TOKEN\nRUN {_script(size)}\n"},
            )
            code, out, peaks[size] = _measured(
                ["build", "-q", "--json", "-t", tag, "--build-arg", f"API_TOKEN={SECRET}", "."],
                ctx,
            )
            assert code == 0, out
            step = show(out["index"])["predicate"]["steps"][2]
            assert step["instruction"].startswith("RUN yes")
            _check_stored(module_home, step["log"], _printed(size))
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
    # 96 MB more before (the log held whole, then scrubbed copies, then read whole again
    # to deposit it); the memory limit and a few pieces now
    grown = peaks[LARGE] - peaks[SMALL]
    assert grown < (LARGE - SMALL) / 2, (grown >> 20, peaks)


def test_a_large_recorded_output_is_stored_exactly_in_bounded_memory(
    module_home: Path, tmp_path: Path
) -> None:
    """And its failure tail is the end of the stored bytes, scrubbed."""
    peaks: dict[int, int] = {}
    work = write_tree(tmp_path / "work", {"a.txt": "a\n"})
    for size in (SMALL, LARGE):
        code, out, peaks[size] = _measured(
            ["record", "-q", "--json", "--", "sh", "-c", _script(size) + "; exit 3"],
            work,
            API_TOKEN=SECRET,
        )
        assert code == 3, out
        predicate = show(out["index"])["predicate"]
        expected = _printed(size)
        _check_stored(module_home, predicate["command"]["log"], expected)
        tail = predicate["build"]["failure"]["logTail"]
        assert tail == log_tail(expected)
        assert tail.endswith("done https://host/x [secret API_TOKEN]")
    grown = peaks[LARGE] - peaks[SMALL]
    assert grown < (LARGE - SMALL) / 2, (grown >> 20, peaks)


def test_a_large_output_on_a_full_disk_is_one_sentence_and_the_command_runs_on(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob store fills up while a large output is written there as it comes: the
    command is not cut short (as if escrow's own disk were its problem), nothing is
    recorded, the store is left empty, and the error is the blob store's, once."""
    work = write_tree(tmp_path / "work", {"a.txt": "a\n"})
    monkeypatch.chdir(work)
    size = 2 * MEMORY_LIMIT  # the 2 MiB disk fills up past the memory limit
    before = cli(["log", "--json"]).json()
    with _small_disk(escrow_home / "blobs") as disk:
        r = cli(["record", "-q", "--", "sh", "-c", f"yes {LINE} | head -c {size}; touch done"])
        assert r.exit_code == 3, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert f"Cannot write to the blob store {disk}: No space left on device." in r.stderr
        assert (work / "done").exists()
        assert list(disk.iterdir()) == []
    assert cli(["log", "--json"]).json() == before  # nothing recorded
