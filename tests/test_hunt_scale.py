"""Large inputs and bounded resources: what escrow holds in memory grows with what a user
would expect it to, not with the whole of a large input.

`escrow post` of JSON Lines reads its input as it appends (a 138 MB file of 20,000
envelopes took 561 MB when it was read whole; 76 MB read line by line), so a pipe's
envelopes are appended while it is still being written, and an input that fails part way
keeps what was appended before, said in one sentence.
"""

from __future__ import annotations

import errno
import io
import sqlite3
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent / "ledger"))

from ledger_helpers import manifest, raw_sign  # noqa: E402

from escrow.config import load_settings  # noqa: E402
from escrow.signing.keys import SigningKey  # noqa: E402
from tests.conftest import Result  # noqa: E402


def _envelope_lines(count: int, tag: str) -> list[bytes]:
    key = SigningKey.load(load_settings().key_path)
    return [
        raw_sign(manifest(n, project="hunt-scale", tag=tag), key).to_bytes() + b"\n"
        for n in range(count)
    ]


def _entries(home: Path) -> int:
    db = sqlite3.connect(f"file:{home / 'ledger.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM ledger_entry").fetchone()[0])
    finally:
        db.close()


class _Pipe(io.RawIOBase):
    """A stdin that gives one line a read (as a pipe written line by line does), then
    calls ``at_end`` -- which may raise, as a read that fails does -- instead of EOF."""

    def __init__(self, lines: list[bytes], at_end: Any) -> None:
        self.lines, self.at_end = list(lines), at_end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.lines:
            self.at_end()
            return 0
        line = self.lines.pop(0)
        assert len(line) <= len(buffer)
        buffer[: len(line)] = line
        return len(line)


def _post_stdin(stdin: _Pipe, *args: str) -> Result:
    """`escrow post - ARGS` in this process, reading ``stdin``."""
    from escrow.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    text = io.TextIOWrapper(io.BufferedReader(stdin, buffer_size=1 << 16), encoding="utf-8")
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, err, text
    code = 0
    try:
        main(["post", "-", *args])
    except SystemExit as e:
        code = int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
    return Result(code, out.getvalue(), err.getvalue())


def test_post_appends_json_lines_while_the_input_is_still_being_read(
    escrow_home: Path,
) -> None:
    lines = _envelope_lines(12, "stream")
    before = _entries(escrow_home)
    seen_at_end: list[int] = []
    r = _post_stdin(_Pipe(lines, lambda: seen_at_end.append(_entries(escrow_home))), "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["appended"] == 12
    assert [x["line"] for x in r.json()["results"]] == list(range(1, 13))
    # when the input ended, most of its envelopes were in the ledger already (the
    # appends run at most a few envelopes behind the reading): it was not read whole first
    assert seen_at_end and seen_at_end[0] - before >= 6, (before, seen_at_end)


def test_post_input_that_fails_part_way_keeps_what_was_appended(escrow_home: Path) -> None:
    lines = _envelope_lines(10, "broken")
    before = _entries(escrow_home)

    def fail() -> None:
        raise OSError(errno.EIO, "Input/output error")

    r = _post_stdin(_Pipe(lines, fail))
    assert r.exit_code == 2, r.stderr
    appended = [x for x in r.stdout.splitlines() if x.startswith("appended ")]
    assert 0 < len(appended) < 10
    assert _entries(escrow_home) == before + len(appended)
    message = [x for x in r.stderr.splitlines() if "Cannot read -" in x]
    assert message, r.stderr
    assert "Input/output error" in message[0]
    assert f"stopped at line {len(appended) + 1}:" in message[0]
    assert f"({len(appended)} appended, 0 already there, 0 rejected)" in message[0]
    assert "Traceback" not in r.stderr
