"""The build context, exactly as the engine receives it.

escrow makes the context archive itself, once: the file selection is the
Docker SDK's own (``docker.utils.build.exclude_paths`` with the
``.dockerignore`` lines read the way ``APIClient.build`` reads them), and the
archive is written with :mod:`tarfile` the way ``docker.utils.build.create_archive``
writes it.  While it is written, every regular file and the archive itself are
hashed; the same archive (a temporary file, unaffected by later edits of the
work tree) is then sent to the engine with ``custom_context=True``.

Tree digest: the SHA-256 of the RFC 8785 canonical JSON of the file list,
an array of ``{"path", "type", "mode", "size", "sha256"?, "linkTarget"?}``
objects sorted by path.  An auditor recomputes it from the recorded list; when
the list is large it is kept in the blob store, and the blob's name is then
the tree digest itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from escrow.blobs import BlobStore
from escrow.errors import InputError

#: file lists longer than this go to the blob store, with only their digest in the manifest
FILES_INLINE_LIMIT = 1000

_COPY_BUFSIZE = 1 << 20
_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "chardev",
    tarfile.BLKTYPE: "blockdev",
}


@dataclass(frozen=True)
class FileEntry:
    """One entry of the context archive."""

    path: str
    type: str
    mode: int
    size: int
    sha256: str | None = None
    link_target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "type": self.type, "mode": self.mode}
        d["size"] = self.size
        if self.sha256 is not None:
            d["sha256"] = self.sha256
        if self.link_target is not None:
            d["linkTarget"] = self.link_target
        return d


def file_list_bytes(files: list[dict[str, Any]]) -> bytes:
    """RFC 8785 canonical bytes of a file list (fast path, equal to ``canonical_bytes``).

    For arrays of objects with ASCII keys and only string and small integer
    values, sorted-key compact ``json.dumps`` without ASCII escaping is exactly
    JCS; a unit test holds the two equal.
    """
    try:
        return json.dumps(files, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    except UnicodeEncodeError as e:
        raise InputError(
            "A file name in the build context is not valid UTF-8.",
            hint="Rename the file or exclude it in .dockerignore.",
        ) from e


def tree_digest(files: list[dict[str, Any]]) -> str:
    return hashlib.sha256(file_list_bytes(files)).hexdigest()


def read_dockerignore(root: Path) -> list[str] | None:
    """The ``.dockerignore`` patterns, read exactly as ``docker.APIClient.build`` reads them."""
    path = root / ".dockerignore"
    if not path.exists():
        return None
    with open(path) as f:
        return [
            line
            for line in (raw.strip() for raw in f.read().splitlines())
            if line != "" and line[0] != "#"
        ]


class _HashingWriter:
    """File-like sink for :class:`tarfile.TarFile` that hashes and counts what it writes."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.out.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.out.flush()


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        return data


@dataclass
class ContextArchive:
    """The context archive (a temporary file) and what was recorded about it."""

    root: Path
    archive: IO[bytes]
    archive_sha256: str
    archive_size: int
    files: list[dict[str, Any]]
    tree_digest: str
    #: the Dockerfile's name inside the archive (what the engine is told to use)
    dockerfile_in_archive: str | None
    #: the Dockerfile as recorded: relative to the context, or absolute when outside it
    dockerfile_path: str | None
    dockerfile_bytes: bytes | None
    dockerignore: list[str] | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_size(self) -> int:
        return sum(int(f["size"]) for f in self.files if f["type"] == "file")

    def rewind(self) -> IO[bytes]:
        self.archive.seek(0)
        return self.archive

    def close(self) -> None:
        if not self._closed:
            self.archive.close()
            self._closed = True

    def __enter__(self) -> ContextArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def to_manifest(
        self, blobs: BlobStore | None, inline_limit: int = FILES_INLINE_LIMIT
    ) -> dict[str, Any]:
        """The ``inputs.context`` object; a long file list goes to ``blobs``."""
        doc: dict[str, Any] = {
            "treeDigest": self.tree_digest,
            "archiveDigest": self.archive_sha256,
            "archiveSize": self.archive_size,
            "fileCount": self.file_count,
            "totalSize": self.total_size,
        }
        if self.dockerignore is not None:
            doc["dockerignore"] = list(self.dockerignore)
        if len(self.files) > inline_limit and blobs is not None:
            data = file_list_bytes(self.files)
            digest = blobs.put(data)
            doc["filesBlob"] = {"sha256": digest, "size": len(data)}
        else:
            doc["files"] = self.files
        return doc


def resolve_dockerfile(root: Path, dockerfile: str | os.PathLike[str] | None) -> Path:
    """The Dockerfile path: ``-f`` as given (relative to the working directory, as
    ``docker build`` does), else ``CONTEXT/Dockerfile``."""
    path = Path(dockerfile) if dockerfile else root / "Dockerfile"
    if not path.is_file():
        raise InputError(
            f"There is no Dockerfile at {path}.",
            hint="Pass its path with -f, or create it in the build context.",
        )
    return path


def _walk(root: Path, exclude: list[str], dockerfile_rel: str | None) -> list[str]:
    from docker.utils.build import exclude_paths

    return sorted(exclude_paths(str(root), list(exclude), dockerfile=dockerfile_rel))


def make_context(
    context_dir: str | os.PathLike[str],
    dockerfile: str | os.PathLike[str] | None = None,
    *,
    require_dockerfile: bool = True,
    embed_dockerfile: bool = True,
    keep_archive: bool = True,
    spool_dir: str | None = None,
) -> ContextArchive:
    """Build the context archive once, hashing every entry and the archive.

    With ``require_dockerfile=False`` (``escrow capture``/``record``) a context
    without a Dockerfile is fine; with ``embed_dockerfile=False`` a ``-f`` file
    outside the context is hashed as the recipe but not put in the archive;
    with ``keep_archive=False`` the archive is hashed but not kept.

    Raises :class:`InputError` when the context is not a directory or the
    Dockerfile is missing.
    """
    root = Path(context_dir)
    if not root.is_dir():
        raise InputError(
            f"The build context {root} is not a directory.",
            hint="Pass the folder holding the files the Dockerfile uses.",
        )
    root = root.resolve()
    df_path: Path | None = None
    df_bytes: bytes | None = None
    if require_dockerfile or dockerfile is not None or (root / "Dockerfile").is_file():
        df_path = resolve_dockerfile(root, dockerfile).resolve()
        try:
            df_bytes = df_path.read_bytes()
        except OSError as e:
            raise InputError(f"Cannot read the Dockerfile {df_path}: {e.strerror}.") from e
    exclude = read_dockerignore(root)

    # Mirror docker.api.build.process_dockerfile / docker.utils.build.tar.
    extra: list[tuple[str, bytes]] = []
    rel: str | None = None
    shown: str | None = None
    if df_path is not None and df_bytes is not None:
        try:
            rel = shown = df_path.relative_to(root).as_posix()
        except ValueError:
            shown = str(df_path)
            if embed_dockerfile:
                rel = f".dockerfile.{hashlib.sha256(df_bytes).hexdigest()[:40]}"
                ignore_text = "\n".join([*(exclude or [".dockerignore"]), rel])
                extra = [(".dockerignore", ignore_text.encode("utf-8")), (rel, df_bytes)]
    try:
        names = _walk(root, exclude or [], rel)
    except OSError as e:
        raise InputError(f"Cannot read the build context {root}: {e}.") from e

    spool: IO[bytes]
    if keep_archive:
        spool = tempfile.TemporaryFile(prefix="escrow-context-", dir=spool_dir)  # noqa: SIM115
    else:
        spool = cast(IO[bytes], _NullSink())
    try:
        writer = _HashingWriter(spool)
        files = _write_archive(root, names, extra, writer)
        writer.flush()
    except BaseException:
        spool.close()
        raise
    files.sort(key=lambda f: str(f["path"]))
    return ContextArchive(
        root=root,
        archive=spool,
        archive_sha256=writer.hash.hexdigest(),
        archive_size=writer.size,
        files=files,
        tree_digest=tree_digest(files),
        dockerfile_in_archive=rel,
        dockerfile_path=shown,
        dockerfile_bytes=df_bytes,
        dockerignore=exclude,
    )


class _NullSink(io.RawIOBase):
    """Where the archive goes when only its digest is wanted."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _write_archive(
    root: Path, names: list[str], extra: list[tuple[str, bytes]], writer: _HashingWriter
) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    extra_names = {name for name, _ in extra}
    t = tarfile.open(mode="w", fileobj=writer, copybufsize=_COPY_BUFSIZE)  # type: ignore[call-overload]
    with t:
        for name in names:
            if name in extra_names:
                continue
            full = os.path.join(root, name)
            try:
                info = t.gettarinfo(full, arcname=name)
            except OSError as e:
                raise InputError(f"Cannot read {full} in the build context: {e.strerror}.") from e
            if info is None:  # a socket: docker skips it too
                continue
            if info.mtime < 0 or info.mtime > 8**11 - 1:
                info.mtime = int(info.mtime)
            entry = _entry(info)
            if info.isfile():
                try:
                    with open(full, "rb") as f:
                        reader = _HashingReader(f)
                        t.addfile(info, reader)
                except OSError as e:
                    raise InputError(f"Cannot read {full} in the build context: {e}.") from e
                entry = replace(entry, sha256=reader.hash.hexdigest())
            else:
                t.addfile(info, None)
            files.append(entry.to_dict())
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
            digest = hashlib.sha256(data).hexdigest()
            files.append(FileEntry(name, "file", info.mode, len(data), digest).to_dict())
    return files


def _entry(info: tarfile.TarInfo) -> FileEntry:
    kind = _TYPES.get(info.type, "other")
    link = info.linkname if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else None
    size = info.size if kind == "file" else 0
    return FileEntry(info.name, kind, stat.S_IMODE(info.mode), size, None, link)
