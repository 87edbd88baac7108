"""A content-addressed blob store: ``ESCROW_HOME/blobs/<aa>/<sha256 hex>``.

Blobs are named by the hex SHA-256 of their bytes, written once (to a
temporary file in the same folder, then renamed into place, so a reader never
sees half a blob) and deduplicated: putting bytes that are already stored is a
no-op.  Build logs, large context file lists and the command logs of
``escrow record`` live here; manifests hold only their digest and size.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from escrow.errors import EnvironmentProblem, InputError

#: a bare lower-case SHA-256 hex digest
HEX = re.compile(r"^[0-9a-f]{64}$")
_HEX_PREFIX = re.compile(r"[0-9a-f]{1,64}")


def digest_prefix(text: str) -> str | None:
    """The hex digits of a SHA-256 digest, or of its beginning (a short image ID as
    `escrow log` shows 12), in lower case, ``sha256:`` optional; ``None`` for anything
    else (an image name)."""
    digits = text.strip().lower().removeprefix("sha256:")
    return digits if _HEX_PREFIX.fullmatch(digits) else None


_CHUNK = 1 << 20
#: the name prefix of a blob being written (renamed into place once complete)
_INCOMING = ".incoming-"


def locked_files(
    paths: Iterable[Path], *, shared: bool = False
) -> Iterator[tuple[Path, int, os.stat_result, bool]]:
    """The files a process writes while holding them locked (``flock``), told apart from
    those an interrupted one left: ``(path, fd, stat, in_use)`` for each regular file
    among ``paths``, in order — never opened through a link, never blocking on a FIFO.
    ``in_use``: another live process holds it locked; otherwise this one now does
    (exclusively, or ``shared``) until the caller's turn ends and ``fd`` is closed."""
    for path in sorted(paths):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # gone, a link, or unreadable: nothing such a process made
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue  # a folder or a device: left alone
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                yield path, fd, st, True
            else:
                yield path, fd, st, False
        finally:
            os.close(fd)


class _ReadError(Exception):
    """An :class:`OSError` reading the bytes to store (not writing them)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def _read(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, an error reading them raised as :class:`_ReadError`."""
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except OSError as e:
            raise _ReadError(e) from e
        yield chunk


def check_digest(digest: str) -> str:
    """``digest`` as bare lower-case hex; :class:`InputError` unless it is a SHA-256."""
    d = digest.removeprefix("sha256:").lower()
    if not HEX.match(d):
        raise InputError(f"{digest!r} is not a SHA-256 hex digest.")
    return d


class BlobStore:
    """Blobs under ``root`` named by their SHA-256."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        d = check_digest(digest)
        return self.root / d[:2] / d

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self.path(digest).is_file()

    def exists(self, digest: str) -> bool:
        return digest in self

    def put(self, data: bytes) -> str:
        """Store ``data``; return its hex SHA-256 (the blob's name).

        Bytes already stored are not written again: a phoenix build's step logs are
        mostly the same every day (and many are empty), and each new blob costs a
        file, an ``fsync`` and a rename.
        """
        digest = hashlib.sha256(data).hexdigest()
        if not self.path(digest).is_file():
            self._write([data], digest)
        return digest

    def put_file(self, fileobj: BinaryIO) -> tuple[str, int]:
        """Store everything read from ``fileobj``; return ``(sha256 hex, size)``."""

        def chunks() -> Iterator[bytes]:
            while chunk := fileobj.read(_CHUNK):
                yield chunk

        return self.put_chunks(chunks())

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store the concatenation of ``chunks``; return ``(sha256 hex, size)``."""
        return self._write(chunks, None)

    def _write(self, chunks: Iterable[bytes], digest: str | None) -> tuple[str, int]:
        """Write ``chunks`` to a temporary file, synced, then rename it to its name:
        ``digest`` when the caller has hashed them already, else hashed here.

        The temporary file (``.incoming-*``) is held locked until it is renamed (or
        removed), so that :meth:`incoming` tells one being written from one an
        interrupted process left.

        A write that fails (a full disk, a read-only folder) is an
        :class:`EnvironmentProblem` naming the blob store, not the temporary file (or no
        file at all: ``ENOSPC`` names none)."""
        try:
            return self._write_file(_read(chunks), digest)
        except _ReadError as e:  # the bytes could not be read: not the store's failure
            raise e.error from None
        except OSError as e:
            raise EnvironmentProblem(
                f"Cannot write to the blob store {self.root}: {e.strerror or e}.",
                hint="Free some space there or fix its permissions (the blob store is "
                "ESCROW_HOME/blobs), then run the command again.",
            ) from e

    def _write_file(self, chunks: Iterable[bytes], digest: str | None) -> tuple[str, int]:
        self.root.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256() if digest is None else None
        size = 0
        fd, tmp = self._incoming()
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    if h is not None:
                        h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
                if h is not None:
                    digest = h.hexdigest()
                assert digest is not None
                final = self.path(digest)
                if final.is_file():
                    os.unlink(tmp)  # deduplicated: the same bytes are already stored
                    return digest, size
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)  # still locked: never swept half-way
            return digest, size
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _incoming(self) -> tuple[int, str]:
        """A new temporary file in the store, open and locked by this process."""
        while True:
            fd, tmp = tempfile.mkstemp(prefix=_INCOMING, dir=self.root)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # swept between its creation and the lock: make another
                if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    return fd, tmp
            except FileNotFoundError:
                pass
            os.close(fd)

    def incoming(self, *, clean: bool = False) -> tuple[int, int]:
        """The temporary files (``.incoming-*``) that interrupted writes left, as (count,
        bytes); removed when ``clean`` (``escrow gc --apply``).  One a live process is still
        writing is locked, and left alone."""
        found = size = 0
        if not self.root.is_dir():
            return 0, 0
        for path, _, st, in_use in locked_files(self.root.glob(_INCOMING + "*")):
            if in_use:  # being written
                continue
            found += 1
            size += st.st_size
            if clean:
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path, follow_symlinks=False).st_ino == st.st_ino:
                        os.unlink(path)
        return found, size

    def get(self, digest: str) -> bytes:
        """The bytes of a stored blob; :class:`InputError` when it is missing or corrupt."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise InputError(
                f"The blob {check_digest(digest)} is not in the blob store {self.root}.",
                hint="It was recorded on another machine, or the blob store was cleaned.",
            ) from e
        if hashlib.sha256(data).hexdigest() != check_digest(digest):
            raise InputError(f"The blob {path} does not match its SHA-256 name (corrupted).")
        return data

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError as e:
            raise InputError(
                f"The blob {check_digest(digest)} is not in the blob store {self.root}."
            ) from e

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def __iter__(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if HEX.match(f.name):
                        yield f.name
