"""`escrow gc --apply` while a build is depositing: the blobs the build stored before it
recorded its deposit are kept.

`escrow build` stores the context and the layers while the engine builds (each under the
store's shared lock, released in between) and writes the deposit record only after the
build. A `gc --apply` in between found those blobs referenced by no record and removed
them, so the deposit had to archive, hash and save everything again after the build (and
could not, were the folder changed meanwhile). The deposit now pins what it stored or
found stored until its record names it; gc keeps pinned blobs while their process lives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from escrow.deposit.deposit import DEPOSIT_RECORD
from escrow.deposit.gc import collect_garbage
from escrow.deposit.store import ENTRIES, FileDepositStore

LEAF = "ab" * 32


def _old_entry(root: Path, log: bytes) -> str:
    """A recorded deposit (of an entry the policy will drop) whose record needs ``log``."""
    store = FileDepositStore(root)
    with store.lock(exclusive=False):
        digest = store.put(log)
        record = {
            "type": DEPOSIT_RECORD,
            "entry": {"index": 1, "project": "app", "integratedAt": "2026-01-01T00:00:00Z"},
            "logs": [digest],
        }
        store.set_ref(ENTRIES, LEAF, store.put(json.dumps(record).encode()))
    return digest  # the store object (and with it what it pinned) goes


def test_gc_keeps_what_a_deposit_in_progress_stored_or_found(tmp_path: Path) -> None:
    root = tmp_path / "deposits"
    shared = _old_entry(root, b"a file the next build has too\n")

    building = FileDepositStore(root)  # `escrow build`, its engine still building
    with building.lock(exclusive=False):
        fresh = building.put(b"a file of the build in progress\n")
        assert building.put(b"a file the next build has too\n") == shared  # deduplicated
    # the lock is released: the engine builds on, the record comes after it

    doc = collect_garbage(FileDepositStore(root), keep_last=0, apply=True)
    assert doc["projects"]["app"]["dropped"] == [1]
    assert FileDepositStore(root).get_ref(ENTRIES, LEAF) is None
    assert building.has(fresh) and building.has(shared)
    assert doc["inProgress"]["blobs"] == 2
    assert doc["unreferenced"]["blobs"] == 0

    building.unpin()  # as deposit_entry does once its record names them (here: none)
    doc = collect_garbage(FileDepositStore(root), keep_last=0, apply=True)
    assert doc["reclaimBlobs"] == 2
    assert not building.has(fresh) and not building.has(shared)
    assert list((root / "pins").iterdir()) == []


def test_a_dry_run_counts_them_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "deposits"
    _old_entry(root, b"old log\n")
    building = FileDepositStore(root)
    with building.lock(exclusive=False):
        building.put(b"in progress\n")
    before = sorted(str(p) for p in root.rglob("*"))
    doc = collect_garbage(FileDepositStore(root), keep_last=0)
    assert doc["inProgress"]["blobs"] == 1
    assert doc["reclaimBlobs"] == 2  # the old log and the old record, not the new blob
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_pins_of_a_process_that_ended_keep_nothing(tmp_path: Path) -> None:
    """A build killed before it recorded its deposit: its blobs are garbage after all."""
    root = tmp_path / "deposits"
    code = (
        "import os, sys\n"
        "from escrow.deposit.store import FileDepositStore\n"
        "s = FileDepositStore(sys.argv[1])\n"
        "with s.lock(exclusive=False):\n"
        "    s.put(b'stored by a killed build')\n"
        "os._exit(0)  # no clean-up, as with kill -9\n"
    )
    subprocess.run([sys.executable, "-c", code, str(root)], check=True)
    assert len(list((root / "pins").iterdir())) == 1
    dry = collect_garbage(FileDepositStore(root))
    assert dry["inProgress"]["blobs"] == 0 and dry["reclaimBlobs"] == 1
    doc = collect_garbage(FileDepositStore(root), apply=True)
    assert doc["reclaimBlobs"] == 1
    assert list(FileDepositStore(root)) == []
    assert list((root / "pins").iterdir()) == []  # the dead pin file is removed too
