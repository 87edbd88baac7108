"""The file deposit store and context splitting, without the engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from escrow.capture.context import make_context
from escrow.deposit.context import context_blobs, iter_archive, restore_context, store_context
from escrow.deposit.store import ENTRIES, DepositStore, FileDepositStore
from escrow.errors import InputError


def test_store_is_content_addressed_and_atomic(tmp_path: Path) -> None:
    store = FileDepositStore(tmp_path / "s")
    assert isinstance(store, DepositStore)
    d = store.put(b"abc")
    assert d == hashlib.sha256(b"abc").hexdigest()
    assert store.put(b"abc") == d and list(store) == [d]
    assert store.get(d) == b"abc" and store.size(d) == 3
    assert store.path(d).stat().st_mode & 0o222 == 0  # never rewritten in place
    w = store.writer()
    w.write(b"other")
    with pytest.raises(InputError, match="corrupted or substituted"):
        w.commit(hashlib.sha256(b"else").hexdigest())
    assert list(store) == [d] and list((store.root / "tmp").iterdir()) == []
    store.set_ref(ENTRIES, d, d)
    assert store.get_ref(ENTRIES, d) == d and list(store.refs(ENTRIES)) == [(d, d)]
    store.delete(d)
    assert not store.has(d)


def test_context_split_dedups_files_and_restores_byte_for_byte(tmp_path: Path) -> None:
    store = FileDepositStore(tmp_path / "s")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "big.bin").write_bytes(b"\x01" * 300_000)
    (ctx / "run.sh").write_text("#!/bin/sh\n")
    (ctx / "run.sh").chmod(0o755)
    (ctx / "link").symlink_to("/etc/hostname")
    indexes = []
    for day in range(2):
        (ctx / "day.txt").write_text(f"day {day}\n")
        with make_context(ctx) as archive:
            digest, index = store_context(store, archive.archive)
            assert index["archiveDigest"] == archive.archive_sha256
            indexes.append((digest, index, archive.tree_digest))
    shared = set(context_blobs(indexes[0][1])) & set(context_blobs(indexes[1][1]))
    assert hashlib.sha256(b"\x01" * 300_000).hexdigest() in shared  # stored once
    assert b"".join(iter_archive(store, indexes[1][1]))  # reassembles, digest checked

    target = tmp_path / "restored"
    restore_context(store, indexes[1][1], target)
    assert (target / "link").readlink() == Path("/etc/hostname")
    assert (target / "run.sh").stat().st_mode & 0o777 == 0o755
    with make_context(target) as again:
        assert again.tree_digest == indexes[1][2]

    # a corrupted file blob: nothing is restored
    victim = store.path(hashlib.sha256(b"\x01" * 300_000).hexdigest())
    victim.chmod(0o644)
    victim.write_bytes(b"\x02" * 300_000)
    with pytest.raises(InputError, match="recorded SHA-256"):
        restore_context(store, indexes[1][1], tmp_path / "again")
    assert not (tmp_path / "again").exists()
