"""Streaming readers for layer archives and for ``docker save`` output.

Everything here reads a byte stream once, front to back, through one fixed
1 MiB buffer:

* :func:`iter_entries` turns a layer archive (a tar, possibly gzip- or
  zstd-compressed — detected from its first bytes) into one :class:`Entry` per
  member, hashing regular files' contents on the fly.  Only the per-entry
  metadata is kept, never a file's bytes.
* :func:`read_saved_image` follows a ``docker save`` archive: the classic layout
  (``<v1-id>/layer.tar``, ``manifest.json`` written last by Engine 20.10) and the
  OCI layout newer engines write (``blobs/sha256/<hex>``, ``index.json``,
  ``manifest.json``).  A ``docker save`` archive is one stream and names its
  layers only at the end, so each layer blob is spooled to a temporary file
  (disk, not memory) until ``manifest.json`` says which layer it is — except OCI
  blobs whose name already is a wanted diff ID (uncompressed layers), which are
  indexed straight from the stream.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from escrow.errors import EngineUnavailable, EnvironmentProblem, InputError

if TYPE_CHECKING:
    from escrow.capture.engine import Endpoint

BUFSIZE = 1 << 20
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
#: extended headers larger than this are refused (they are held in memory)
MAX_HEADER_BYTES = 16 << 20
#: ``docker save`` members up to this size are kept in memory (JSON documents, tiny layers)
SMALL_MEMBER = 256 << 10
#: total memory for small members; beyond it they are spooled too
SMALL_BUDGET = 16 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"


class Source(Protocol):
    """Anything with ``readinto`` (files opened ``rb``, sockets, the readers below)."""

    def readinto(self, buffer: Any, /) -> int | None: ...


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    WHITEOUT = "whiteout"
    OTHER = "other"


_TAR_TYPES: dict[bytes, EntryType] = {
    tarfile.REGTYPE: EntryType.FILE,
    tarfile.AREGTYPE: EntryType.FILE,
    tarfile.CONTTYPE: EntryType.FILE,
    tarfile.LNKTYPE: EntryType.HARDLINK,
    tarfile.SYMTYPE: EntryType.SYMLINK,
    tarfile.CHRTYPE: EntryType.CHAR,
    tarfile.BLKTYPE: EntryType.BLOCK,
    tarfile.DIRTYPE: EntryType.DIR,
    tarfile.FIFOTYPE: EntryType.FIFO,
}
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
#: pax keys whose meaning escrow compares (or deliberately ignores) on its own
_PAX_KNOWN = frozenset(
    {
        "path",
        "linkpath",
        "size",
        "uid",
        "gid",
        "uname",
        "gname",
        "mtime",
        "atime",
        "ctime",
        "hdrcharset",
        "comment",
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One layer member after normalisation, plus the raw facts normalisation ignores.

    ``path`` is absolute in the image (``/etc/passwd``; ``./`` and trailing ``/``
    dropped).  A whiteout ``dir/.wh.name`` becomes ``path=/dir/name``,
    ``type=whiteout``; an opaque whiteout keeps its name (``/dir/.wh..wh..opq``).
    """

    path: str
    type: EntryType
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    size: int  # content size of regular files, 0 otherwise
    sha256: str | None  # content digest of regular files
    link: str | None  # symlink target, or the (normalised) path a hard link points to
    device: tuple[int, int] | None
    xattrs: tuple[tuple[str, str], ...]  # sorted (name, hex value)
    # -- ignored by the comparison, reported as normalisations -------------
    mtime: float
    atime: float | None
    ctime: float | None
    uname: str
    gname: str
    fmt: str  # "ustar", "pax", "gnu" or "v7"
    pax: tuple[tuple[str, str], ...]  # other pax records
    order: int  # position in the archive

    def info(self) -> dict[str, Any]:
        """The ``fileInfo`` object of the rebuild-verification schema."""
        d: dict[str, Any] = {
            "type": str(self.type),
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
        }
        if self.type is EntryType.FILE:
            d["size"] = self.size
            if self.sha256 is not None:
                d["sha256"] = self.sha256
        if self.link is not None:
            d["linkTarget"] = display(self.link)
        if self.device is not None:
            d["device"] = f"{self.device[0]}:{self.device[1]}"
        if self.xattrs:
            d["xattrs"] = {display(k): v for k, v in self.xattrs}
        return d


def display(text: str) -> str:
    """``text`` safe for JSON: undecodable bytes (kept as surrogates) shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def normalise_path(name: str) -> str:
    """``./a//b/`` → ``/a/b``; ``..`` is kept (it is not resolved)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


# ---------------------------------------------------------------------------
# buffered reading


class BlockReader:
    """One fixed buffer over a :class:`Source`: exact reads, feeding chunks to a sink, skipping.

    It is itself a :class:`Source`, so a decompressor or a nested reader can sit on top.
    """

    def __init__(self, src: Source, bufsize: int = BUFSIZE) -> None:
        self._src = src
        self._buf = bytearray(bufsize)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        if self._pos == self._end:
            self._pos = self._end = 0
        elif len(self._buf) - self._end < BLOCK * 8:
            pending = bytes(self._view[self._pos : self._end])
            self._buf[: len(pending)] = pending
            self._pos, self._end = 0, len(pending)
        got = self._src.readinto(self._view[self._end :])
        if not got:
            self._eof = True
            return False
        self._end += got
        return True

    def peek(self, n: int) -> bytes:
        while self._end - self._pos < n and self._fill():
            pass
        return bytes(self._view[self._pos : min(self._pos + n, self._end)])

    def read_exact(self, n: int) -> bytes:
        if self._end - self._pos >= n:
            data = bytes(self._view[self._pos : self._pos + n])
            self._pos += n
            return data
        out = bytearray()
        self.feed(n, out.extend)
        return bytes(out)

    def read_block(self) -> bytes | None:
        """The next 512-byte block, or None at a clean end of stream."""
        if self._pos == self._end and not self._fill():
            return None
        return self.read_exact(BLOCK)

    def feed(self, n: int, sink: Callable[[memoryview], object]) -> None:
        """Pass the next ``n`` bytes to ``sink`` in chunks (views valid only during the call)."""
        while n > 0:
            if self._pos == self._end and not self._fill():
                raise InputError("The archive ends in the middle of an entry (truncated).")
            take = min(self._end - self._pos, n)
            sink(self._view[self._pos : self._pos + take])
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        self.feed(n, _discard)

    def readinto(self, buffer: Any, /) -> int:
        if self._pos == self._end and not self._fill():
            return 0
        take = min(len(buffer), self._end - self._pos)
        buffer[:take] = self._view[self._pos : self._pos + take]
        self._pos += take
        return take


def _discard(_: memoryview) -> None:
    return None


class _Limited:
    """The next ``n`` bytes of a :class:`BlockReader`, as a :class:`Source`."""

    def __init__(self, reader: BlockReader, n: int) -> None:
        self._reader = reader
        self.remaining = n

    def readinto(self, buffer: Any, /) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer)
        got = self._reader.readinto(view[: min(len(view), self.remaining)])
        if got == 0:
            raise InputError("The archive ends in the middle of an entry (truncated).")
        self.remaining -= got
        return got


class IterSource:
    """A :class:`Source` over an iterator of byte chunks (the Docker SDK's streams)."""

    def __init__(self, chunks: Iterable[bytes], describe: str = "the Docker Engine") -> None:
        self._it = iter(chunks)
        self._chunk = memoryview(b"")
        self._describe = describe

    def readinto(self, buffer: Any, /) -> int:
        while not self._chunk:
            try:
                self._chunk = memoryview(next(self._it))
            except StopIteration:
                return 0
            except Exception as e:  # requests/urllib3 errors mid-stream
                raise EngineUnavailable(f"The stream from {self._describe} broke off: {e}.") from e
        take = min(len(buffer), len(self._chunk))
        buffer[:take] = self._chunk[:take]
        self._chunk = self._chunk[take:]
        return take


class _GzipSource:
    """gzip (all members) decompressed from a :class:`Source`."""

    def __init__(self, src: Source) -> None:
        self._src = src
        self._d = zlib.decompressobj(31)
        self._tail = b""
        self._inbuf = bytearray(BUFSIZE)
        self._member_started = False

    def readinto(self, buffer: Any, /) -> int:
        want = len(buffer)
        while True:
            if self._tail:
                data, self._tail = self._tail, b""
            else:
                n = self._src.readinto(self._inbuf) or 0
                if n == 0:
                    if self._member_started and not self._d.eof:
                        raise InputError("A gzip-compressed layer is truncated.")
                    return 0
                data = bytes(self._inbuf[:n])
            if self._d.eof:  # next gzip member, or trailing padding
                if not data.strip(b"\0"):
                    continue
                self._d = zlib.decompressobj(31)
            self._member_started = True
            try:
                out = self._d.decompress(data, want)
            except zlib.error as e:
                raise InputError(f"A gzip-compressed layer is corrupt: {e}.") from e
            self._tail = self._d.unconsumed_tail or (self._d.unused_data if self._d.eof else b"")
            if out:
                buffer[: len(out)] = out
                return len(out)


class _ProcessSource:
    """Bytes piped through a filter process (``zstd -dc``), fed from a :class:`Source`."""

    def __init__(self, argv: list[str], src: Source, what: str) -> None:
        self._what = what
        try:
            self._proc = subprocess.Popen(
                argv,
                bufsize=0,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise EnvironmentProblem(f"Cannot run {argv[0]} to read {what}: {e}.") from e
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, args=(src,), daemon=True)
        self._thread.start()

    def _pump(self, src: Source) -> None:
        assert self._proc.stdin is not None
        buf = bytearray(BUFSIZE)
        view = memoryview(buf)
        try:
            while n := src.readinto(view):
                self._proc.stdin.write(view[:n])
        except BrokenPipeError:
            pass
        except BaseException as e:  # noqa: BLE001 - re-raised in the reading thread
            self._error = e
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def readinto(self, buffer: Any, /) -> int:
        stdout = cast(io.FileIO, self._proc.stdout)
        n = stdout.readinto(buffer)
        if n:
            return n
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._proc.stderr is not None
        err = self._proc.stderr.read().decode("utf-8", "replace").strip()
        if self._proc.wait() != 0:
            raise InputError(f"Cannot decompress {self._what}: {err or 'zstd failed'}.")
        return 0

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._thread.join()
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


def compression_of(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class LayerStream:
    """A layer archive as an uncompressed tar :class:`BlockReader` (context manager)."""

    def __init__(self, src: Source, what: str = "a layer") -> None:
        raw = src if isinstance(src, BlockReader) else BlockReader(src)
        self.compression = compression_of(raw.peek(4))
        self._process: _ProcessSource | None = None
        if self.compression == "gzip":
            self.reader = BlockReader(_GzipSource(raw))
        elif self.compression == "zstd":
            zstd = shutil.which("zstd")
            if zstd is None:
                raise EnvironmentProblem(
                    f"{what.capitalize()} is zstd-compressed and zstd is not installed.",
                    hint="Install zstd (Debian: apt-get install zstd).",
                )
            self._process = _ProcessSource([zstd, "-dcq"], raw, what)
            self.reader = BlockReader(self._process)
        else:
            self.reader = raw

    def close(self) -> None:
        if self._process is not None:
            self._process.close()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# tar members


@dataclass(slots=True)
class Member:
    """A tar member's header (extended headers applied); its content is next in the reader."""

    name: str
    tartype: bytes
    size: int
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    linkname: str
    devmajor: int
    devminor: int
    mtime: float
    atime: float | None
    ctime: float | None
    fmt: str
    xattrs: list[tuple[str, str]]
    pax: list[tuple[str, str]]
    reader: BlockReader
    remaining: int
    pending: _Limited | None = None

    def feed(self, sink: Callable[[memoryview], object]) -> None:
        self.reader.feed(self.remaining, sink)
        self.remaining = 0

    def read(self, limit: int) -> bytes:
        if self.remaining > limit:
            raise InputError(f"The archive member {display(self.name)!r} is unexpectedly large.")
        out = bytearray()
        self.feed(out.extend)
        return bytes(out)

    def source(self) -> _Limited:
        src = _Limited(self.reader, self.remaining)
        self.remaining = 0
        self.pending = src
        return src


def _parse_pax(data: bytes) -> dict[str, bytes]:
    """pax extended header records ``"%d %s=%s\\n"``; values stay bytes."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        if space < 0:
            raise InputError("A pax extended header in the archive is malformed.")
        try:
            length = int(data[pos:space])
        except ValueError as e:
            raise InputError("A pax extended header in the archive is malformed.") from e
        if length <= 0 or pos + length > len(data):
            raise InputError("A pax extended header in the archive is malformed.")
        record = data[space + 1 : pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep:
            raise InputError("A pax extended header in the archive is malformed.")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _number(value: bytes, what: str) -> float:
    try:
        return float(value)
    except ValueError as e:
        raise InputError(f"The pax record {what} in the archive is not a number.") from e


def _header_format(block: bytes) -> str:
    magic = block[257:265]
    if magic == b"ustar\x0000":
        return "ustar"
    if magic == b"ustar  \x00":
        return "gnu"
    return "v7"


def iter_members(reader: BlockReader) -> Iterator[Member]:
    """The members of a tar stream; content a consumer leaves unread is skipped."""
    global_pax: dict[str, bytes] = {}
    pax: dict[str, bytes] = {}
    longname: str | None = None
    longlink: str | None = None
    while True:
        block = reader.read_block()
        if block is None or block == _ZERO_BLOCK:
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise InputError(f"The archive is not a valid tar stream ({e}).") from e
        padding = -info.size % BLOCK
        kind = info.type
        if kind in (
            tarfile.XHDTYPE,
            tarfile.SOLARIS_XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
        ):
            if info.size > MAX_HEADER_BYTES:
                raise InputError("An extended header in the archive is too large.")
            data = reader.read_exact(info.size)
            reader.skip(padding)
            if kind == tarfile.XGLTYPE:
                global_pax.update(_parse_pax(data))
            elif kind == tarfile.GNUTYPE_LONGNAME:
                longname = _text(data.split(b"\0", 1)[0])
            elif kind == tarfile.GNUTYPE_LONGLINK:
                longlink = _text(data.split(b"\0", 1)[0])
            else:
                pax.update(_parse_pax(data))
            continue
        if kind == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse.") for k in pax):
            raise InputError(
                f"The archive member {display(info.name)!r} is a sparse file, which escrow "
                "does not read."
            )
        fmt = "pax" if pax else _header_format(block)
        records = {**global_pax, **pax}
        size = int(_number(records["size"], "size")) if "size" in records else info.size
        if "size" in records:
            padding = -size % BLOCK
        xattrs: list[tuple[str, str]] = []
        extra: list[tuple[str, str]] = []
        for key, value in records.items():
            if key.startswith("SCHILY.xattr."):
                xattrs.append((key[len("SCHILY.xattr.") :], value.hex()))
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr.") :])
                try:
                    xattrs.append((name, base64.b64decode(value).hex()))
                except ValueError as e:
                    raise InputError(
                        f"The xattr record {key!r} in the archive is malformed."
                    ) from e
            elif key not in _PAX_KNOWN:
                extra.append((key, _text(value)))
        member = Member(
            name=_text(records["path"]) if "path" in records else (longname or info.name),
            tartype=kind,
            size=size,
            mode=info.mode & 0o7777,
            uid=int(_number(records["uid"], "uid")) if "uid" in records else info.uid,
            gid=int(_number(records["gid"], "gid")) if "gid" in records else info.gid,
            uname=_text(records["uname"]) if "uname" in records else info.uname,
            gname=_text(records["gname"]) if "gname" in records else info.gname,
            linkname=(
                _text(records["linkpath"]) if "linkpath" in records else (longlink or info.linkname)
            ),
            devmajor=info.devmajor,
            devminor=info.devminor,
            mtime=_number(records["mtime"], "mtime") if "mtime" in records else float(info.mtime),
            atime=_number(records["atime"], "atime") if "atime" in records else None,
            ctime=_number(records["ctime"], "ctime") if "ctime" in records else None,
            fmt=fmt,
            xattrs=sorted(xattrs),
            pax=sorted(extra),
            reader=reader,
            remaining=size,
        )
        pax = {}
        longname = longlink = None
        yield member
        unread = member.remaining + (member.pending.remaining if member.pending else 0)
        reader.skip(unread + padding)


def entry_of(member: Member, order: int, sha256: str | None) -> Entry:
    path = normalise_path(member.name)
    kind = _TAR_TYPES.get(member.tartype, EntryType.OTHER)
    base = path.rsplit("/", 1)[-1]
    if base.startswith(WHITEOUT_PREFIX):
        if base != OPAQUE_WHITEOUT:
            parent = path.rsplit("/", 1)[0]
            path = f"{parent}/{base[len(WHITEOUT_PREFIX) :]}"
        kind = EntryType.WHITEOUT
    link: str | None = None
    if kind is EntryType.SYMLINK:
        link = member.linkname
    elif kind is EntryType.HARDLINK:
        link = normalise_path(member.linkname)
    device = (
        (member.devmajor, member.devminor) if kind in (EntryType.CHAR, EntryType.BLOCK) else None
    )
    return Entry(
        path=path,
        type=kind,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        size=member.size if kind is EntryType.FILE else 0,
        sha256=sha256 if kind is EntryType.FILE else None,
        link=link,
        device=device,
        xattrs=tuple(member.xattrs),
        mtime=member.mtime,
        atime=member.atime,
        ctime=member.ctime,
        uname=member.uname,
        gname=member.gname,
        fmt=member.fmt,
        pax=tuple(member.pax),
        order=order,
    )


def iter_entries(src: Source, what: str = "a layer") -> Iterator[Entry]:
    """The entries of one layer archive (tar, tar+gzip or tar+zstd), contents hashed on the fly."""
    with LayerStream(src, what) as stream:
        for order, member in enumerate(iter_members(stream.reader)):
            digest: str | None = None
            if member.tartype in _REGULAR:
                h = hashlib.sha256()
                member.feed(h.update)
                digest = h.hexdigest()
            yield entry_of(member, order, digest)


@dataclass
class LayerIndex:
    """A layer's entries by path (the last one wins, as when the layer is applied)."""

    entries: dict[str, Entry]
    count: int
    compression: str | None = None
    duplicates: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, src: Source, what: str = "a layer") -> LayerIndex:
        entries: dict[str, Entry] = {}
        duplicates: list[str] = []
        count = 0
        with LayerStream(src, what) as stream:
            for order, member in enumerate(iter_members(stream.reader)):
                digest: str | None = None
                if member.tartype in _REGULAR:
                    h = hashlib.sha256()
                    member.feed(h.update)
                    digest = h.hexdigest()
                entry = entry_of(member, order, digest)
                if entry.path in entries:
                    duplicates.append(entry.path)
                entries[entry.path] = entry
                count += 1
            compression = stream.compression
        return cls(entries=entries, count=count, compression=compression, duplicates=duplicates)

    @classmethod
    def of_file(cls, path: str | Path, what: str | None = None) -> LayerIndex:
        with open(path, "rb", buffering=0) as f:
            return cls.of(f, what or f"the layer archive {path}")


# ---------------------------------------------------------------------------
# docker save


@dataclass
class SavedImage:
    """What a ``docker save`` archive holds for one image.

    Layers are indexed on demand with :meth:`index`; call :meth:`close` (or use
    it as a context manager) to delete the spooled blobs.
    """

    config: dict[str, Any]
    diff_ids: list[str]
    layout: str  # "classic" or "oci"
    layer_members: list[str]  # archive member of each layer, in diff ID order
    _small: dict[str, bytes]
    _spooled: dict[str, Path]
    _indexes: dict[str, LayerIndex]
    _workdir: Path | None = None

    def index(self, diff_id: str) -> LayerIndex:
        """Entries of the layer ``diff_id`` (raises :class:`InputError` when not in the image)."""
        if diff_id in self._indexes:
            return self._indexes[diff_id]
        try:
            member = self.layer_members[self.diff_ids.index(diff_id)]
        except ValueError:
            raise InputError(f"The image has no layer {diff_id}.") from None
        what = f"layer {diff_id[:19]}"
        if member in self._small:
            return LayerIndex.of(io.BytesIO(self._small[member]), what)
        if member in self._spooled:
            return LayerIndex.of_file(self._spooled[member], what)
        raise InputError(f"The saved image lacks the archive member {member!r} of {what}.")

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> SavedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _member_path(name: str) -> str:
    return normalise_path(name).lstrip("/")


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise InputError(f"The saved image's {what} is not valid JSON.") from e


def _oci_manifest(small: dict[str, bytes], index: Any, depth: int = 0) -> dict[str, Any]:
    """Follow ``index.json`` (through nested indexes) to the first image manifest."""
    if depth > 4 or not isinstance(index, dict) or not index.get("manifests"):
        raise InputError("The saved image's index.json names no image manifest.")
    desc = index["manifests"][0]
    digest = str(desc.get("digest", ""))
    blob = small.get("blobs/" + digest.replace(":", "/", 1))
    if blob is None:
        raise InputError(f"The saved image lacks the manifest blob {digest}.")
    doc = _load_json(blob, f"manifest {digest}")
    if isinstance(doc, dict) and "manifests" in doc:
        return _oci_manifest(small, doc, depth + 1)
    if not isinstance(doc, dict):
        raise InputError(f"The saved image's manifest {digest} is not a JSON object.")
    return doc


def read_saved_image(
    src: Source,
    *,
    want: set[str] | None = None,
    image_id: str | None = None,
    workdir: str | Path | None = None,
) -> SavedImage:
    """Read a ``docker save`` stream.

    ``want``: diff IDs that will be indexed (OCI blobs named by one of them are
    indexed from the stream); ``image_id``: pick this image when the archive
    holds several.  Layer blobs are spooled under ``workdir`` (a new temporary
    directory by default), removed by :meth:`SavedImage.close`.
    """
    tmp = Path(tempfile.mkdtemp(prefix="escrow-save-", dir=workdir))
    small: dict[str, bytes] = {}
    spooled: dict[str, Path] = {}
    indexes: dict[str, LayerIndex] = {}
    budget = SMALL_BUDGET
    try:
        reader = BlockReader(src)
        for member in iter_members(reader):
            if member.tartype not in _REGULAR:
                continue
            name = _member_path(member.name)
            if name.startswith("blobs/sha256/") and want:
                diff_id = "sha256:" + name.rsplit("/", 1)[-1]
                if diff_id in want and member.size > SMALL_MEMBER:
                    indexes[diff_id] = LayerIndex.of(member.source(), f"layer {diff_id[:19]}")
                    continue
            if member.size <= SMALL_MEMBER and member.size <= budget:
                small[name] = member.read(SMALL_MEMBER)
                budget -= member.size
                continue
            path = tmp / f"{len(spooled)}.blob"
            with open(path, "wb", buffering=0) as out:
                member.feed(out.write)
            spooled[name] = path
        image = _describe(small, image_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    config, diff_ids, layout, members = image
    # layers indexed from the stream were never stored under their member name
    for diff_id, member_name in zip(diff_ids, members, strict=True):
        if diff_id not in indexes and member_name not in small and member_name not in spooled:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError(f"The saved image lacks {member_name!r}, layer {diff_id[:19]}.")
    return SavedImage(config, diff_ids, layout, members, small, spooled, indexes, tmp)


def _describe(
    small: dict[str, bytes], image_id: str | None
) -> tuple[dict[str, Any], list[str], str, list[str]]:
    if "manifest.json" in small:
        docs = _load_json(small["manifest.json"], "manifest.json")
        if not isinstance(docs, list) or not docs:
            raise InputError("The saved image's manifest.json lists no image.")
        chosen = docs[0]
        if image_id is not None:
            hexid = image_id.removeprefix("sha256:")
            for doc in docs:
                if isinstance(doc, dict) and hexid in str(doc.get("Config", "")):
                    chosen = doc
                    break
        if not isinstance(chosen, dict):
            raise InputError("The saved image's manifest.json is malformed.")
        config_name = _member_path(str(chosen.get("Config", "")))
        members = [_member_path(str(p)) for p in chosen.get("Layers") or []]
        layout = "oci" if config_name.startswith("blobs/") else "classic"
    elif "index.json" in small:
        manifest = _oci_manifest(small, _load_json(small["index.json"], "index.json"))
        config_name = "blobs/" + str(manifest.get("config", {}).get("digest", "")).replace(":", "/")
        members = [
            "blobs/" + str(layer.get("digest", "")).replace(":", "/", 1)
            for layer in manifest.get("layers") or []
        ]
        layout = "oci"
    else:
        raise InputError(
            "The archive is not a docker save archive (no manifest.json, no index.json)."
        )
    if config_name not in small:
        raise InputError(f"The saved image lacks its config {config_name!r}.")
    config = _load_json(small[config_name], "image config")
    if not isinstance(config, dict):
        raise InputError("The saved image's config is not a JSON object.")
    diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
    if len(diff_ids) != len(members):
        raise InputError(
            f"The saved image lists {len(members)} layer archives for {len(diff_ids)} diff IDs."
        )
    return config, diff_ids, layout, members


def save_image(
    api: Any,
    image: str,
    *,
    want: set[str] | None = None,
    workdir: str | Path | None = None,
    endpoint: Endpoint | None = None,
) -> SavedImage:
    """``docker save IMAGE`` through the Docker SDK's ``APIClient``, read as it streams;
    ``endpoint``: the engine's address, named when it cannot be reached (else the one
    escrow would use)."""
    import docker.errors
    import requests.exceptions

    from escrow.capture.engine import _unavailable

    try:
        api.inspect_image(image)
        stream = api.get_image(image)
        first = next(stream, b"")  # the request is made here: map its errors now
    except docker.errors.NotFound as e:
        raise InputError(f"The image {image} is not in the Docker Engine.") from e
    except docker.errors.APIError as e:
        raise EngineUnavailable(
            f"The Docker Engine could not save {image}: {e.explanation}."
        ) from e
    except requests.exceptions.RequestException as e:
        raise _unavailable(e, endpoint) from e
    chunks = itertools.chain([first], stream)
    return read_saved_image(
        IterSource(chunks, f"docker save {image}"),
        want=want,
        image_id=image if image.startswith("sha256:") else None,
        workdir=workdir,
    )
