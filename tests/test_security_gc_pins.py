"""A folder deposit store's ``pins/`` and ``refs/collected/`` hold what other processes
wrote (hostile-input review): ``gc --apply`` reads and removes pin files, ``deposit
check`` prints a collected note.  Whatever is found there — folders, links, FIFOs,
garbage lines, escape sequences — is no crash, no hang, and nothing outside the store is
followed, read or removed."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from escrow.deposit.gc import collect_garbage
from escrow.deposit.store import FileDepositStore


def _store(tmp_path: Path) -> tuple[FileDepositStore, str]:
    """A store holding one unreferenced blob (gc --apply reclaims it unless pinned)."""
    store = FileDepositStore(tmp_path / "store")
    digest = store.put(b"an orphan blob\n")
    store.unpin()
    (store.root / "pins").mkdir(exist_ok=True)
    return store, digest


def _gc(store: FileDepositStore) -> dict[str, Any]:
    return collect_garbage(store, keep_days=0, keep_last=0, apply=True)


def test_a_folder_named_like_a_pin_file_is_left_alone(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    (store.root / "pins" / "pins-folder").mkdir()
    doc = _gc(store)
    assert doc["reclaimBlobs"] == 1 and not store.has(digest)
    assert (store.root / "pins" / "pins-folder").is_dir()


def test_a_link_loop_in_pins_is_no_crash(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    os.symlink("pins-loop", store.root / "pins" / "pins-loop")
    assert _gc(store)["reclaimBlobs"] == 1


def test_a_link_in_pins_is_not_followed(tmp_path: Path) -> None:
    """A link to a file outside the store that some process holds locked: neither read as
    pins (the blob it names is reclaimed) nor removed (the link and its target stay)."""
    store, digest = _store(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text(digest + "\n")
    link = store.root / "pins" / "pins-link"
    os.symlink(outside, link)
    with outside.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        doc = _gc(store)
    assert doc["reclaimBlobs"] == 1 and not store.has(digest)
    assert outside.read_text() == digest + "\n"


def test_a_fifo_in_pins_does_not_hang_gc(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    fifo = store.root / "pins" / "pins-fifo"
    os.mkfifo(fifo)
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(_gc(store)), daemon=True)
    worker.start()
    worker.join(60)  # a guard against a hang, not a measure of speed
    stuck = not done
    if stuck:  # blocked opening the FIFO: let it go, then fail
        with open(fifo, "w"):
            pass
        worker.join()
    assert not stuck, "gc --apply blocked opening a FIFO in pins/"
    assert done[0]["reclaimBlobs"] == 1


def test_garbage_lines_of_a_locked_pin_file_are_ignored(tmp_path: Path) -> None:
    store, digest = _store(tmp_path)
    pins = store.root / "pins" / "pins-busy"
    pins.write_bytes(b"\xff\xfe garbage\n../../etc/passwd\n" + b"x" * 100_000 + b"\n")
    with pins.open("a", encoding="ascii") as f:
        f.write(digest.upper() + "\n" + digest + "\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)  # a deposit in progress
        doc = _gc(store)
        assert doc["inProgress"]["blobs"] == 1 and store.has(digest)
    assert pins.exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_text("2026-12-05T10:00:00.123456Z\n"), "2026-12-05T10:00:00.123456Z"),
        (lambda p: p.mkdir(), None),
        (lambda p: os.symlink(p.name, p), None),
        (lambda p: p.write_bytes(b"\x1b[2J\x1b]0;owned\x07 2026\nmore"), "?"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00"), "?"),
        (lambda p: p.write_text("9" * 1_000_000), "?"),
    ],
    ids=["time", "folder", "link-loop", "escapes", "binary", "huge"],
)
def test_a_collected_note_is_read_safely(tmp_path: Path, make: Any, expected: str | None) -> None:
    store = FileDepositStore(tmp_path / "store")
    leaf = "ab" * 32
    folder = store.root / "refs" / "collected"
    folder.mkdir(parents=True)
    make(folder / leaf)
    assert store.collected(leaf) == expected
