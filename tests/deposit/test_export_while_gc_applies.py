"""`escrow deposit export` (an auditor's, a release's) while a cron `escrow gc --apply` runs.

The export read the deposit records, listed their blobs and then copied them, all
without the store's lock: a `gc --apply` dropping those entries in between removed
blobs the export had listed, and it failed half-way with "The blob … is not in the
deposit store" (exit 2, as if the input were wrong).  `deposit check --verify` likewise
reported a deposit gc was removing as one that lacks what its record names.  Both now read under the
store's shared lock: gc waits for them, and removes the deposit after.

The moment is forced: the export stops at its first blob copy (the check once it has
read the deposit record), the real `escrow gc --keep-last 1 --apply` is started, and
the reader goes on only once gc has either finished or is waiting for the store's lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from escrow.deposit.store import FileDepositStore
from tests.deposit.conftest import Builds


def _waiting_for(path: Path) -> bool:
    """Whether a process waits for a ``flock`` of ``path`` (``/proc/locks``)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks", encoding="ascii") as f:
        return any(
            "->" in line.split() and line.split()[-3].rsplit(":", 1)[-1] == str(inode) for line in f
        )


class _StopsAtFirstRead(FileDepositStore):
    """The folder store, calling ``hook`` once: before the first blob is opened (a copy),
    or with ``on_get`` after the first blob is read whole (the deposit record)."""

    def __init__(self, root: Path, hook: Callable[[], None], *, on_get: bool = False) -> None:
        super().__init__(root)
        self._hook: Callable[[], None] | None = hook
        self._on_get = on_get

    def _call(self) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()

    def open(self, digest: str) -> BinaryIO:
        if not self._on_get:
            self._call()
        return super().open(digest)

    def get(self, digest: str) -> bytes:
        data = super().get(digest)
        if self._on_get:
            self._call()
        return data


class _GcMeanwhile:
    """Start `escrow gc --keep-last 1 --apply`; return once it ended or waits for the lock."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.proc: subprocess.Popen[str] | None = None

    def __call__(self) -> None:
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "escrow"), "gc", "--keep-last", "1", "--apply"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120  # a safety limit, so a broken run cannot hang
        while self.proc.poll() is None and not _waiting_for(self.store / ".lock"):
            assert time.monotonic() < deadline, "gc neither ended nor waited for the lock"
            time.sleep(0.005)

    def wait(self) -> tuple[int, str]:
        assert self.proc is not None, "the reader never read a blob"
        _, err = self.proc.communicate(timeout=300)
        return self.proc.returncode, err


def _two_days(builds: Builds, cli: Any) -> int:
    """Two deposited builds of one project; the first one's index (gc drops it)."""
    indexes = []
    for day in range(2):
        ctx = builds.context({"app.txt": f"exported on day {day}\n"})
        (ctx / "Dockerfile").write_text(builds.dockerfile())
        index, _ = builds.build(ctx, project="export-gc")
        r = cli(["deposit", str(index), "--context", str(ctx)])
        assert r.exit_code == 0, r.stderr
        indexes.append(index)
    return indexes[0]


def test_gc_waits_for_an_export_and_the_archive_is_whole(
    builds: Builds, cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings
    from escrow.deposit.bundle import export_deposit
    from escrow.ledger.store import Ledger

    old = _two_days(builds, cli)
    root = escrow_home / "deposits"
    gc = _GcMeanwhile(root)
    out = tmp_path / "out" / "deposit.tar"
    with Ledger.open(load_settings(), create=False) as ledger:
        toc = export_deposit(ledger, _StopsAtFirstRead(root, gc), [old], out)
    code, err = gc.wait()
    assert code == 0, err
    assert [e["index"] for e in toc["entries"]] == [old]

    r = cli(["deposit", "check", str(old), "--json"])  # gc removed it, after the export
    assert r.exit_code == 1
    assert r.json()["missing"][0]["reason"].startswith("`escrow gc --apply` removed its deposit")

    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "agent"))
    assert cli(["init"]).exit_code == 0
    r = cli(["deposit", "import", str(out)])
    assert r.exit_code == 0, r.stderr
    r = cli(["deposit", "check", str(old), "--imported", "--verify"])
    assert r.exit_code == 0, r.stderr


def test_gc_waits_for_a_deposit_check(builds: Builds, cli: Any, escrow_home: Path) -> None:
    from escrow.config import load_settings
    from escrow.deposit.deposit import check_entry
    from escrow.ledger.store import Ledger

    old = _two_days(builds, cli)
    root = escrow_home / "deposits"
    gc = _GcMeanwhile(root)
    with Ledger.open(load_settings(), create=False) as ledger:
        entry = ledger.get(old)
    # stops once it has read the deposit record, before it looks for what it names
    report = check_entry(_StopsAtFirstRead(root, gc, on_get=True), entry, verify=True)
    code, err = gc.wait()
    assert code == 0, err
    assert report.complete, report.missing  # whole when checked; removed after
    assert report.verified > 0
    r = cli(["deposit", "check", str(old), "--json"])
    assert r.exit_code == 1
    assert r.json()["missing"][0]["reason"].startswith("`escrow gc --apply` removed its deposit")
