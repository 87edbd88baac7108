"""Build contexts in the deposit store: each file once, plus a small skeleton per build.

The context archive escrow sent to the engine is split into the contents of
its regular files — each stored as a blob named by its SHA-256, so a file that
did not change between two daily builds is stored once — and the *skeleton*:
every other byte of the archive (headers, padding, the end blocks), stored as
one blob.  A context index (JSON, itself a blob) lists the file segments
``[offset, size, sha256]``; the archive is reassembled byte for byte and
checked against its recorded SHA-256 before anything is restored from it.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from escrow.deposit.safetar import safe_extract
from escrow.deposit.store import DepositStore
from escrow.errors import InputError

_CHUNK = 1 << 20


def store_context(
    store: DepositStore, archive: IO[bytes], known: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Split ``archive`` (seekable) into the store; ``(context index digest, index)``.

    ``known`` maps member names to the SHA-256 recorded for them: a file whose
    blob is already stored is not written again.
    """
    archive.seek(0)
    segments: list[list[Any]] = []
    try:
        with tarfile.open(fileobj=archive, mode="r:") as tar:
            spans = [(m.offset_data, m.size, m.name) for m in tar if m.isreg() and m.size > 0]
    except tarfile.TarError as e:
        raise InputError(f"The context archive is not a readable tar archive ({e}).") from e
    whole = hashlib.sha256()
    skeleton = store.writer()
    pos = 0
    archive.seek(0)
    try:

        def copy(n: int, sink: Any) -> None:
            nonlocal pos
            while n > 0:
                chunk = archive.read(min(_CHUNK, n))
                if not chunk:
                    raise InputError("The context archive is truncated.")
                whole.update(chunk)
                sink(chunk)
                n -= len(chunk)
                pos += len(chunk)

        for offset, size, name in spans:
            copy(offset - pos, skeleton.write)
            digest = (known or {}).get(name)
            if digest is not None and store.has(digest):
                h = hashlib.sha256()
                copy(size, h.update)
                if h.hexdigest() != digest:
                    raise InputError(f"The context file {name} does not have its recorded SHA-256.")
            else:
                w = store.writer()
                try:
                    copy(size, w.write)
                except BaseException:
                    w.abort()
                    raise
                digest = w.commit()
            segments.append([offset, size, digest])
        while chunk := archive.read(_CHUNK):
            whole.update(chunk)
            skeleton.write(chunk)
            pos += len(chunk)
    except BaseException:
        skeleton.abort()
        raise
    index = {
        "archiveDigest": whole.hexdigest(),
        "archiveSize": pos,
        "skeleton": skeleton.commit(),
        "segments": segments,
    }
    data = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    return store.put(data), index


def context_index(store: DepositStore, digest: str) -> dict[str, Any]:
    doc = json.loads(store.get(digest))
    if not isinstance(doc, dict) or "segments" not in doc:
        raise InputError(f"The deposited context index {digest[:16]}… is malformed.")
    return doc


def context_blobs(index: Mapping[str, Any]) -> list[str]:
    return [str(index["skeleton"]), *(str(s[2]) for s in index["segments"])]


def iter_archive(store: DepositStore, index: Mapping[str, Any]) -> Iterator[bytes]:
    """The context archive, reassembled; :class:`InputError` unless it has its SHA-256."""
    whole = hashlib.sha256()
    with store.open(str(index["skeleton"])) as skel:
        pos = 0
        for offset, size, digest in index["segments"]:
            gap = int(offset) - pos
            while gap > 0:
                chunk = skel.read(min(_CHUNK, gap))
                if not chunk:
                    raise InputError("The deposited context skeleton is truncated.")
                whole.update(chunk)
                yield chunk
                gap -= len(chunk)
            with store.open(str(digest)) as f:
                got = 0
                while chunk := f.read(_CHUNK):
                    whole.update(chunk)
                    got += len(chunk)
                    yield chunk
            if got != int(size):
                raise InputError(f"The deposited context file {digest[:16]}… has the wrong size.")
            pos = int(offset) + int(size)
        while chunk := skel.read(_CHUNK):
            whole.update(chunk)
            yield chunk
    if whole.hexdigest() != index["archiveDigest"]:
        raise InputError(
            "The reassembled context archive does not have its recorded SHA-256 "
            "(the deposit is corrupted)."
        )


class _ChunkReader:
    """A read-only file object over the reassembled archive."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def restore_context(
    store: DepositStore,
    index: Mapping[str, Any],
    target: Path,
    *,
    skip: Mapping[str, bytes | None] | None = None,
) -> None:
    """Restore the deposited context into the new folder ``target``.

    The archive's SHA-256 is checked *before* anything is extracted (a first
    pass), then it is extracted safely (:func:`~escrow.deposit.safetar.safe_extract`;
    the user's own symbolic links may point anywhere, and are made last).
    ``skip`` names members to leave out (value ``None``) or to write with other
    bytes (the synthetic ``.dockerignore`` of a Dockerfile kept outside the context).
    """
    for _ in iter_archive(store, index):
        pass  # verify the whole archive first: nothing is written from a corrupt one
    skip = skip or {}

    def accept(name: str, _info: tarfile.TarInfo) -> bool:
        return name not in skip

    reader = _ChunkReader(iter_archive(store, index))
    safe_extract(
        reader,  # type: ignore[arg-type]
        target,
        what="The deposited context archive",
        links_outside=True,
        accept=accept,
    )
    for name, data in skip.items():
        if data is not None:
            (target / name).write_bytes(data)
