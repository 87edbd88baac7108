"""The deposit store: blobs named by their SHA-256, and a few named references.

Layout of the file-system store (``ESCROW_HOME/deposits`` unless configured)::

    blobs/sha256/<aa>/<hex>      every blob, named by the SHA-256 of its bytes, read-only
    refs/entries/<leaf hash>     the deposit record of a ledger entry (its digest)
    refs/imports/<leaf hash>     the import record of an entry imported from another ledger
    refs/collected/<leaf hash>   when ``gc --apply`` removed the deposit of a ledger entry
    pins/pins-*                  the blobs a deposit in progress stored or relied on (locked)
    .lock                        deposits take it shared, ``gc --apply`` exclusive

A blob is written once: to a temporary file in the store, flushed, then
renamed into place, so a reader never sees half a blob; putting bytes that
are already stored is a no-op.  References are small text files replaced
atomically.  :class:`DepositStore` is the interface (a registry-backed store
implements the same methods).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, runtime_checkable

from escrow.blobs import HEX, check_digest, locked_files
from escrow.errors import EnvironmentProblem, InputError

_CHUNK = 1 << 20
#: reference namespaces
ENTRIES = "entries"
IMPORTS = "imports"
_NAMESPACES = (ENTRIES, IMPORTS)
#: where ``gc --apply`` notes the entries whose deposit it removed
_COLLECTED = "collected"
#: what a note in ``refs/collected/`` holds: the time gc removed the deposit
_WHEN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,15}Z")


class BlobWriter(Protocol):
    """A blob being written: feed it bytes, then :meth:`commit` (or :meth:`abort`)."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self, expected: str | None = None) -> str:
        """Store the blob; its hex SHA-256.  ``expected`` (hex) must match, else
        :class:`InputError` and nothing is stored."""
        ...

    def abort(self) -> None: ...


@runtime_checkable
class DepositStore(Protocol):
    """What the deposit code needs of a store (a folder, :class:`FileDepositStore`, or a
    registry repository, :class:`escrow.deposit.oci.OciDepositStore`)."""

    #: human description for messages (a path or a URL)
    location: str

    #: what this store object newly stored since it was opened
    new: NewBlobs

    def put(self, data: bytes) -> str: ...

    def writer(self) -> BlobWriter: ...

    def get(self, digest: str) -> bytes: ...

    def open(self, digest: str) -> BinaryIO: ...

    def has(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int: ...

    def delete(self, digest: str) -> None: ...

    def __iter__(self) -> Iterator[str]: ...

    def set_ref(self, namespace: str, name: str, digest: str) -> None: ...

    def get_ref(self, namespace: str, name: str) -> str | None: ...

    def delete_ref(self, namespace: str, name: str) -> None: ...

    def refs(self, namespace: str) -> Iterator[tuple[str, str]]: ...

    def lock(self, *, exclusive: bool) -> contextlib.AbstractContextManager[None]: ...

    def clean_tmp(self) -> None:
        """Remove what interrupted writes left (``gc --apply``, under the exclusive lock)."""
        ...

    # -- what ``gc --apply`` must know: blobs of deposits in progress, deposits it removed
    def unpin(self) -> None:
        """The deposit in progress is recorded: gc need not keep what it stored any more."""
        ...

    def pinned(self, *, clean: bool = False) -> set[str]:
        """The blobs deposits in progress stored but have not recorded yet (gc keeps them)."""
        ...

    def mark_collected(self, name: str, when: str) -> None:
        """Note that ``gc --apply`` removed the deposit of entry ``name`` at ``when``."""
        ...

    def collected(self, name: str) -> str | None:
        """When ``gc --apply`` removed the deposit of entry ``name`` (None: no note of it)."""
        ...


class NewBlobs:
    """The blobs a store object added that were not stored before, in every thread
    that used it: what one command (``escrow build``, ``escrow deposit``) deposited."""

    def __init__(self) -> None:
        self.blobs = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, size: int) -> None:
        with self._lock:
            self.blobs += 1
            self.bytes += size


class SpoolWriter:
    """A blob being written: spooled to a temporary file and hashed, stored on :meth:`commit`.

    Subclasses say where a verified blob goes (:meth:`_store_blob`); the temporary
    file is always removed, committed or not.
    """

    def __init__(self, directory: Path, prefix: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False
        #: after :meth:`commit`: whether the blob was new to the store
        self.created = False

    def write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def commit(self, expected: str | None = None) -> str:
        try:
            digest = self._hash.hexdigest()
            if expected is not None and check_digest(expected) != digest:
                raise InputError(
                    f"A blob that should have SHA-256 {check_digest(expected)[:16]}… has "
                    f"{digest[:16]}… (corrupted or substituted)."
                )
            self._store_blob(digest)
            return digest
        finally:
            self.abort()

    def _store_blob(self, digest: str) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class _FileWriter(SpoolWriter):
    def __init__(self, store: FileDepositStore) -> None:
        store.root.mkdir(parents=True, exist_ok=True)
        super().__init__(store.root / "tmp", "incoming-")
        self._store = store

    def _store_blob(self, digest: str) -> None:
        final = self._store.path(digest)
        self._store.pin(digest)
        if final.is_file():
            return  # deduplicated: the spooled copy is removed
        self._file.close()
        place_blob(self._tmp, final)
        self.created = True
        self._store.new.add(self.size)


class FileDepositStore:
    """The deposit store in a folder of the local file system."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.new = NewBlobs()
        self._pin_lock = threading.Lock()
        self._pin_path: Path | None = None
        self._pin_file: IO[str] | None = None
        self._pin_end: weakref.finalize[Any, Any] | None = None
        self._pinned: set[str] = set()

    # -- blobs -----------------------------------------------------------
    def path(self, digest: str) -> Path:
        d = check_digest(digest)
        return self.root / "blobs" / "sha256" / d[:2] / d

    def has(self, digest: str) -> bool:
        found = self.path(digest).is_file()
        if found and self._pin_file is not None:
            self.pin(digest)  # a deposit in progress relies on it
        return found

    def writer(self) -> _FileWriter:
        return _FileWriter(self)

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.path(digest).is_file():
            self.pin(digest)
            return digest
        w = self.writer()
        w.write(data)
        return w.commit(digest)

    def put_chunks(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        w = self.writer()
        try:
            for chunk in chunks:
                w.write(chunk)
        except BaseException:
            w.abort()
            raise
        return w.commit(expected)

    def put_file(self, path: Path, expected: str | None = None) -> str:
        with open(path, "rb") as f:
            return self.put_chunks(iter(lambda: f.read(_CHUNK), b""), expected)

    def get(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError as e:
            raise InputError(
                f"The blob {check_digest(digest)} is not in the deposit store {self.root}."
            ) from e
        if hashlib.sha256(data).hexdigest() != check_digest(digest):
            raise InputError(
                f"The deposited blob {self.path(digest)} does not match its SHA-256 name "
                "(corrupted)."
            )
        return data

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError as e:
            raise InputError(
                f"The blob {check_digest(digest)} is not in the deposit store {self.root}."
            ) from e

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as e:
            raise InputError(
                f"The blob {check_digest(digest)} is not in the deposit store {self.root}."
            ) from e

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def __iter__(self) -> Iterator[str]:
        base = self.root / "blobs" / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if HEX.match(f.name):
                        yield f.name

    # -- references --------------------------------------------------------
    def _ref_path(self, namespace: str, name: str) -> Path:
        if namespace not in _NAMESPACES:
            raise InputError(f"Unknown reference namespace {namespace!r}.")
        return self.root / "refs" / namespace / check_digest(name)

    def _collected_path(self, name: str) -> Path:
        return self.root / "refs" / _COLLECTED / check_digest(name)

    def set_ref(self, namespace: str, name: str, digest: str) -> None:
        _replace_text(self._ref_path(namespace, name), check_digest(digest) + "\n", sync=True)
        if namespace == ENTRIES:  # deposited again after a gc
            with contextlib.suppress(FileNotFoundError):
                self._collected_path(name).unlink()

    def mark_collected(self, name: str, when: str) -> None:
        """Note that ``gc --apply`` removed the deposit of entry ``name`` at ``when``."""
        _replace_text(self._collected_path(name), when + "\n", sync=False)

    def collected(self, name: str) -> str | None:
        """When ``gc --apply`` removed the deposit of entry ``name`` (None: it did not)."""
        path = self._collected_path(name)
        try:
            if not path.is_file():
                return None  # a folder, a device or a broken link: no note gc wrote
            with path.open("rb") as f:
                head = f.read(64)
        except OSError:
            return None
        when = head.decode("ascii", errors="replace").split("\n")[0].strip()
        # the RFC 3339 time mark_collected wrote; anything else is printed as "?"
        return when if _WHEN.fullmatch(when) else "?"

    def get_ref(self, namespace: str, name: str) -> str | None:
        path = self._ref_path(namespace, name)
        try:
            text = path.read_bytes().decode("ascii", errors="replace").strip()
        except FileNotFoundError:
            return None
        if not HEX.match(text.removeprefix("sha256:").lower()):
            raise InputError(
                f"The reference {path} in the deposit store does not hold a SHA-256 digest "
                "(the store is damaged)."
            )
        return check_digest(text)

    def delete_ref(self, namespace: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._ref_path(namespace, name).unlink()

    def refs(self, namespace: str) -> Iterator[tuple[str, str]]:
        folder = self.root / "refs" / namespace
        if not folder.is_dir():
            return
        for f in sorted(folder.iterdir()):
            if HEX.match(f.name):
                value = self.get_ref(namespace, f.name)
                if value is not None:
                    yield f.name, value

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *, exclusive: bool) -> Iterator[None]:
        """Deposits hold the lock shared, ``gc --apply`` exclusive: gc never removes a
        blob while a deposit is writing, and keeps the blobs a deposit in progress stored
        between two such moments (``escrow build`` stores while the engine builds, and
        references them after it) but has not referenced yet (:meth:`pin`)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise EnvironmentProblem(
                f"Cannot open the deposit store {self.root}: {e.strerror}.",
                hint="Check the path and its permissions (--deposit-store, ESCROW_DEPOSIT_STORE).",
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _temporaries(self) -> Iterator[Path]:
        """What interrupted writes left (or writes in progress are writing): spooled
        blobs and staged imports under ``tmp/``, references being replaced."""
        tmp = self.root / "tmp"
        if tmp.is_dir():
            yield from tmp.iterdir()
        for namespace in (*_NAMESPACES, _COLLECTED):
            folder = self.root / "refs" / namespace
            if folder.is_dir():
                yield from folder.glob(".ref-*")

    def temporary(self) -> tuple[int, int]:
        """``(files, bytes)`` of what :meth:`clean_tmp` would remove."""
        files = size = 0
        for found in self._temporaries():
            paths: Iterable[Path] = (
                (Path(folder) / name for folder, _, names in os.walk(found) for name in names)
                if found.is_dir()
                else (found,)
            )
            for path in paths:
                with contextlib.suppress(OSError):
                    size += path.lstat().st_size
                    files += 1
        return files, size

    def clean_tmp(self) -> None:
        """Remove temporary files left by interrupted writes (under the exclusive lock):
        spooled blobs, staged imports, and references being replaced."""
        import shutil

        for found in list(self._temporaries()):
            with contextlib.suppress(OSError):
                if found.is_dir():
                    shutil.rmtree(found)
                else:
                    found.unlink()

    # -- blobs a deposit in progress needs ---------------------------------
    def pin(self, digest: str) -> None:
        """Note that this store object stored (or found stored) blob ``digest`` for a
        deposit it has not recorded yet: until :meth:`unpin`, or until this process ends,
        ``gc --apply`` keeps it (:meth:`pinned`).  The list is a file in ``pins/`` that
        this process holds locked while it lives."""
        d = check_digest(digest)
        with self._pin_lock:
            if d in self._pinned:
                return
            if self._pin_file is None:
                folder = self.root / "pins"
                folder.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix="pins-", dir=folder)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._pin_path = Path(name)
                self._pin_file = os.fdopen(fd, "w", encoding="ascii", buffering=1)
                # dropped with this store object, as when its process ends
                self._pin_end = weakref.finalize(self, _drop_pins, self._pin_file, self._pin_path)
            self._pin_file.write(d + "\n")  # line-buffered: on disk before the lock is left
            self._pinned.add(d)

    def unpin(self) -> None:
        """The deposit is recorded (its reference names what it needs): drop the pins."""
        with self._pin_lock:
            if self._pin_end is not None:
                self._pin_end()
            self._pin_file = self._pin_path = self._pin_end = None
            self._pinned = set()

    def pinned(self, *, clean: bool = False) -> set[str]:
        """The blobs deposits in progress (in any process) have pinned.  A pin file whose
        process has ended is not locked any more: ignored, and removed when ``clean``
        (``gc --apply``, under the exclusive lock)."""
        out: set[str] = set()
        folder = self.root / "pins"
        if not folder.is_dir():
            return out
        for f, fd, _, in_use in locked_files(folder.glob("pins-*"), shared=True):
            if in_use:  # its deposit is still in progress
                with os.fdopen(os.dup(fd), encoding="ascii", errors="replace") as text:
                    out.update(line.strip() for line in text if HEX.match(line.strip()))
            elif clean:
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        return out


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of the file at ``path``: a stored blob checked against its name."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def place_blob(tmp: Path | str, final: Path) -> None:
    """Rename the complete, verified blob file ``tmp`` (in the store's file system) to
    ``final``, its place in the store: its bytes flushed to disk (fsync) first, so that
    after a power loss its name never holds less than the blob, and made read-only.
    A spooled blob (:class:`_FileWriter`) and an imported one (``escrow deposit import``)
    are placed so."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o444)
    os.replace(tmp, final)


def _replace_text(path: Path, text: str, *, sync: bool) -> None:
    """Write the reference file ``path`` atomically (a ``.ref-`` temporary file renamed
    over it; :meth:`FileDepositStore.clean_tmp` removes one an interruption left), its
    bytes flushed to disk first when ``sync``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ref-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _drop_pins(file: IO[str], path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    file.close()  # and with it the lock that says the pins are in use


@contextlib.contextmanager
def reading(store: DepositStore) -> Iterator[None]:
    """The store's shared lock, for reading what deposits hold (``deposit export``,
    ``deposit check``, a rebuild from the deposit): a ``gc --apply`` (exclusive) then
    waits instead of removing blobs half-way through.  A folder store that cannot be
    written at all (a read-only mount, an archive) is read without it: nothing can change
    it; nor is one that does not exist (it is not made for reading)."""
    with contextlib.ExitStack() as stack:
        folder = store.root if isinstance(store, FileDepositStore) else None
        if folder is None or folder.is_dir():
            try:
                stack.enter_context(store.lock(exclusive=False))
            except EnvironmentProblem:
                if folder is None or os.access(folder, os.W_OK):
                    raise
        yield


def check_store(store: DepositStore) -> None:
    """Fail now when ``store`` cannot be opened (a folder that cannot be made, a registry
    that does not answer): ``escrow build`` asks before it builds, not after."""
    try:
        with store.lock(exclusive=False):
            pass
    except EnvironmentProblem as e:  # a registry's own words: say which store it is
        location = str(getattr(store, "location", None) or getattr(store, "root", ""))
        if e.message.startswith("Cannot open the deposit store"):
            raise
        e.message = (
            f"Cannot open the deposit store {location}: {e.message[:1].lower()}{e.message[1:]}"
        )
        raise


def store_location(settings_home: Path, override: str | Path | None = None) -> str:
    """Where the deposit store is: ``override`` > ``ESCROW_DEPOSIT_STORE`` >
    ``config.json`` ``deposit_store`` > ``ESCROW_HOME/deposits``."""
    if override:
        return str(override)
    env = os.environ.get("ESCROW_DEPOSIT_STORE")
    if env:
        return env
    from escrow.config import _file_config

    cfg = _file_config(settings_home).get("deposit_store")
    if cfg:
        if "://" in cfg:
            return str(cfg)
        # a folder config.json gives is relative to ESCROW_HOME, where the file is (as its
        # key paths are), not to the folder the command runs in
        return str(settings_home / Path(cfg).expanduser())
    return str(settings_home / "deposits")


def open_store(
    settings_home: Path, override: str | Path | None = None, *, reach: bool = False
) -> DepositStore:
    """The deposit store of these settings (see :func:`store_location`): a folder, or a
    registry repository for ``oci://HOST[:PORT]/REPO`` (:mod:`escrow.deposit.oci`).

    ``reach``: ask a registry store's registry now (:func:`check_store`), so that one that
    does not answer is named as the deposit store, not in the registry's words alone."""
    location = store_location(settings_home, override)
    if location.startswith("oci://"):
        from escrow.deposit.oci import OciDepositStore

        oci = OciDepositStore(location)
        if reach:
            check_store(oci)
        return oci
    if "://" in location:
        raise InputError(
            f"The deposit store {location} is neither a folder nor an oci:// registry repository.",
            hint="Use a folder path or oci://HOST[:PORT]/REPO for --deposit-store / "
            "ESCROW_DEPOSIT_STORE.",
        )
    return FileDepositStore(Path(location).expanduser())
