"""An import killed part way leaves its staged copy in the store's `tmp/` (as large as the
archive it had read).  `escrow deposit stats` said the store held only its blobs, and
`escrow gc` "would reclaim 0 B", yet `gc --apply` then removed those bytes: both now report
them (`temporary` in stats, `storeTemporary` in gc's JSON), with the right size."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ESCROW = str(Path(sys.executable).with_name("escrow"))


def _staged(store: Path) -> tuple[int, int]:
    """Files and bytes under the store's tmp/ (what the killed import left)."""
    files = size = 0
    for folder, _, names in os.walk(store / "tmp"):
        for name in names:
            files += 1
            size += (Path(folder) / name).lstat().st_size
    return files, size


def _kill_an_import(home: Path, tmp_path: Path) -> None:
    """Start `escrow deposit import` on a FIFO, feed it half an archive (a TOC.json and
    part of a large blob), wait until it has staged that, then kill it (SIGKILL)."""
    blob = os.urandom(4 << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        toc = json.dumps({"format": "escrow-deposit/v1"}).encode()
        info = tarfile.TarInfo("TOC.json")
        info.size = len(toc)
        tar.addfile(info, io.BytesIO(toc))
        digest = "ab" * 32  # never checked: the import is killed while it stages
        info = tarfile.TarInfo(f"blobs/sha256/{digest[:2]}/{digest}")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    fifo = tmp_path / "archive.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [ESCROW, "deposit", "import", str(fifo)],
        env={**os.environ, "ESCROW_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with open(fifo, "wb") as writer:
            writer.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            writer.flush()
            deadline = time.monotonic() + 60  # not a timed assertion: a bound on waiting
            while _staged(home / "deposits")[1] < 1 << 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_stats_and_gc_count_what_a_killed_import_left(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    store = escrow_home / "deposits"
    _kill_an_import(escrow_home, tmp_path)
    files, size = _staged(store)
    assert files >= 1 and size >= 1 << 20

    stats = cli(["deposit", "stats", "--json"])
    assert stats.exit_code == 0, stats.stderr
    assert stats.json()["temporary"] == {"files": files, "bytes": size}
    assert stats.json()["bytesOnDisk"] == 0  # no blob was stored
    text = cli(["deposit", "stats"])
    assert f"temporary: {files} file" in text.stdout and "gc --apply" in text.stdout

    dry = cli(["gc", "--json"])
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["storeTemporary"] == {"files": files, "bytes": size}
    assert _staged(store) == (files, size)  # a dry run removes nothing
    text = cli(["gc"])
    assert f"would remove {files} temporary file" in text.stdout, text.stdout

    applied = cli(["gc", "--apply", "--json"])
    assert applied.exit_code == 0, applied.stderr
    assert applied.json()["storeTemporary"] == {"files": files, "bytes": size}
    assert _staged(store) == (0, 0)
    assert cli(["gc", "--json"]).json()["storeTemporary"] == {"files": 0, "bytes": 0}
