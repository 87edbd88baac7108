"""`escrow gc --apply` removes the `.incoming-*` temporary files that interrupted writes left
in the blob store of the step logs (ESCROW_HOME/blobs), which nothing removed before; one a
live process is still writing (it holds it locked) is left alone, and the write completes."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from escrow.blobs import BlobStore
from escrow.deposit.store import FileDepositStore
from tests.conftest import run_cli


def test_gc_apply_sweeps_abandoned_log_temporaries(escrow_home: Path) -> None:
    FileDepositStore(escrow_home / "deposits").put(b"a deposit store")
    blobs = escrow_home / "blobs"
    blobs.mkdir(exist_ok=True)
    left = blobs / ".incoming-killed1"
    left.write_bytes(b"x" * 1000)  # a build killed while writing a step log
    busy = blobs / ".incoming-writing"
    busy.write_bytes(b"y" * 10)
    fd = os.open(busy, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds its temporary file locked
    try:
        r = run_cli(["gc", "--json"])
        assert r.exit_code == 0, r.stderr
        assert r.json()["logTemporary"] == {"files": 1, "bytes": 1000}
        assert left.exists() and busy.exists()  # a dry run removes nothing

        r = run_cli(["gc", "--apply"])
        assert r.exit_code == 0, r.stderr
        assert f"removed 1 temporary file (1000 B) that interrupted log writes left in {blobs}" in (
            r.stdout
        )
        assert not left.exists()
        assert busy.exists()
    finally:
        os.close(fd)
    r = run_cli(["gc", "--apply", "--json"])
    assert json.loads(r.stdout)["logTemporary"] == {"files": 1, "bytes": 10}
    assert not busy.exists()


def test_a_log_being_written_survives_a_sweep(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")

    def chunks() -> Iterator[bytes]:
        yield b"first half, "
        assert store.incoming(clean=True) == (0, 0)  # gc --apply while the step log is written
        yield b"second half"

    digest, size = store.put_chunks(chunks())
    assert store.get(digest) == b"first half, second half"
    assert size == 23
    assert not list((tmp_path / "blobs").glob(".incoming-*"))
