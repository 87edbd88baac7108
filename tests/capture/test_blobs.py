"""The content-addressed blob store."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from escrow.blobs import BlobStore
from escrow.errors import InputError


def test_put_names_the_blob_by_its_sha256_and_get_returns_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"hello log\n")
    assert digest == hashlib.sha256(b"hello log\n").hexdigest()
    assert store.get(digest) == b"hello log\n"
    assert store.path(digest) == tmp_path / "blobs" / digest[:2] / digest
    assert digest in store and store.size(digest) == 10


def test_the_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    a = store.put(b"same")
    mtime = store.path(a).stat().st_mtime_ns
    b, size = store.put_file(io.BytesIO(b"same"))
    assert a == b and size == 4
    assert list(store) == [a]
    assert store.path(a).stat().st_mtime_ns == mtime  # written once, never rewritten
    assert not [p for p in (tmp_path / "blobs").iterdir() if p.name.startswith(".incoming")]


def test_blobs_are_read_only_and_a_corrupted_blob_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"original")
    path = store.path(digest)
    assert not os.access(path, os.W_OK) or os.geteuid() == 0
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(InputError, match="does not match"):
        store.get(digest)


@pytest.mark.parametrize(
    "name", ["", "abc", "g" * 64, "../" + "a" * 61], ids=["empty", "short", "not-hex", "traversal"]
)
def test_names_that_are_not_sha256_digests_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="not a SHA-256"):
        BlobStore(tmp_path).path(name)


def test_a_missing_blob_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not in the blob store"):
        BlobStore(tmp_path).get("0" * 64)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        store.put_chunks(chunks())
    assert list((tmp_path / "blobs").iterdir()) == []


def test_putting_stored_bytes_again_writes_and_syncs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phoenix build's step logs are mostly yesterday's: storing them again costs no
    temporary file and no fsync (each is ~0.3 ms on the build's critical path)."""
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"Step 3/9 : RUN make\n")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    made: list[str] = []
    import tempfile

    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(
        tempfile, "mkstemp", lambda *a, **k: made.append("tmp") or real_mkstemp(*a, **k)
    )
    assert store.put(b"Step 3/9 : RUN make\n") == digest
    assert synced == [] and made == []
    assert store.put(b"a new log\n") != digest  # new bytes are still written and synced
    assert len(synced) == 1 and made == ["tmp"]
