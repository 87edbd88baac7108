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

import errno
import hashlib
import json
import os
import queue
import re
import stat
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, cast

from escrow.blobs import BlobStore
from escrow.errors import EscrowError, InputError

#: archives up to this size stay in memory; larger ones go to a temporary file
SPOOL_IN_MEMORY = 128 << 20

#: file lists longer than this go to the blob store, with only their digest in the manifest
FILES_INLINE_LIMIT = 1000

_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
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
    """The ``.dockerignore`` patterns, read as ``docker.APIClient.build`` reads them, in
    UTF-8 whatever the locale, less a UTF-8 byte-order mark at the start (the docker CLI
    drops it; the SDK would read ``\ufefflogs`` and send what the first pattern excludes).
    A comment that is not UTF-8 is dropped like any comment; a pattern that is not is an
    :class:`InputError` (it could be neither matched nor recorded)."""
    path = root / ".dockerignore"
    if not path.exists():
        return None
    with open(path, "rb") as f:
        text = f.read().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
    patterns: list[str] = []
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line == "" or line[0] == "#":
            continue
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"Line {no} of {path} is not valid UTF-8.",
                hint="Save the .dockerignore as UTF-8.",
            ) from None
        patterns.append(line)
    return patterns


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _ArchiveSink:
    """Where the archive bytes go: the spool file, and a SHA-256 computed in a thread.

    Small writes (headers, small files) are gathered into 1 MiB buffers; hashlib
    releases the GIL on large updates, so the archive digest is computed on a
    second core while the main thread reads and hashes the files.
    """

    def __init__(self, out: _Writable) -> None:
        self.out = out
        self.size = 0
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="escrow-archive-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def _emit(self, data: bytes) -> None:
        self.out.write(data)
        self._queue.put(data)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if len(data) >= _CHUNK // 4:
            self._flush_buffer()
            self._emit(data)
            return
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf.clear()

    def finish(self) -> str:
        """Flush everything; the archive's hex SHA-256."""
        self._flush_buffer()
        self._queue.put(None)
        self._thread.join()
        self.out.flush()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._queue.put(None)
        self._thread.join()


@dataclass
class ContextArchive:
    """The context archive (a temporary file) and what was recorded about it."""

    root: Path
    #: the archive (``None`` when only the file list and tree digest were wanted)
    archive: IO[bytes] | None
    archive_sha256: str | None
    archive_size: int | None
    files: list[dict[str, Any]]
    tree_digest: str
    #: the Dockerfile's name inside the archive (what the engine is told to use)
    dockerfile_in_archive: str | None
    #: the Dockerfile as recorded: relative to the context, or absolute when outside it
    dockerfile_path: str | None
    dockerfile_bytes: bytes | None
    dockerignore: list[str] | None = None
    #: escrow's own folders inside the context, left out (paths relative to it)
    left_out: tuple[str, ...] = ()
    _closed: bool = field(default=False, repr=False)

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_size(self) -> int:
        return sum(int(f["size"]) for f in self.files if f["type"] == "file")

    def rewind(self) -> IO[bytes]:
        if self.archive is None:
            raise ValueError("this context was hashed without keeping an archive")
        self.archive.seek(0)
        return self.archive

    def close(self) -> None:
        if not self._closed and self.archive is not None:
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
        doc: dict[str, Any] = {"treeDigest": self.tree_digest}
        if self.archive_sha256 is not None:
            doc["archiveDigest"] = self.archive_sha256
            doc["archiveSize"] = self.archive_size
        doc["fileCount"] = self.file_count
        doc["totalSize"] = self.total_size
        if self.dockerignore is not None:
            doc["dockerignore"] = list(self.dockerignore)
        if self.left_out:
            doc["excluded"] = list(self.left_out)
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
        if path.is_dir() or path.exists():
            # ``-f <(generate)`` names a pipe, read once and gone: a rebuild could not
            # find it, and its recorded path would name nothing
            if path.is_dir():
                raise InputError(
                    f"The Dockerfile {_shown(str(path))} is a directory.",
                    hint="Pass the path of the Dockerfile itself with -f.",
                )
            raise InputError(
                f"The Dockerfile {_shown(str(path))} is not a regular file (a pipe or a device).",
                hint="Save the Dockerfile to a file and pass its path with -f.",
            )
        raise InputError(
            f"There is no Dockerfile at {path}.",
            hint="Pass its path with -f, or create it in the build context.",
        )
    return path


def _walk(root: Path, exclude: list[str], dockerfile_rel: str | None) -> list[str]:
    """The context's paths, selected by the Docker SDK's own ``exclude_paths``.

    Without any ``.dockerignore`` pattern the SDK's matcher holds only the
    negations ``!Dockerfile`` and ``!.dockerignore`` and so keeps every path;
    then a plain ``os.walk`` (symlinked folders listed, not followed, as the SDK
    does) gives the same list much faster.
    """
    if not exclude:
        out: list[str] = []
        base = str(root)
        for dirpath, dirs, names in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            prefix = "" if rel == "." else rel + os.sep
            out.extend(prefix + n for n in dirs)
            out.extend(prefix + n for n in names)
        return sorted(out)
    exclude_paths = sdk_exclude_paths()
    return sorted(exclude_paths(str(root), list(exclude), dockerfile=dockerfile_rel))


_SDK_ALIAS = "escrow._docker_sdk"


def sdk_exclude_paths() -> Any:
    """The Docker SDK's own ``docker.utils.build.exclude_paths``.

    ``import docker.utils.build`` runs ``docker/__init__.py``, which imports
    the whole API client with ``requests`` and ``urllib3`` (~0.15 s, before
    the build can start).  The pattern rules need none of it: ``build.py``
    imports only ``..constants`` (→ ``.version``) and ``.fnmatch``.  So the
    SDK's files are loaded as they are under a private package name whose
    packages are empty namespaces — the same code, none of the client.  If
    the SDK is already imported, or that layout ever changes, the plain
    import is used.
    """
    return _sdk_build().exclude_paths


def _sdk_build() -> Any:
    """The Docker SDK's ``docker.utils.build`` module (see :func:`sdk_exclude_paths`)."""
    loaded = sys.modules.get("docker.utils.build")
    if loaded is not None:
        return loaded
    mod: Any = sys.modules.get(f"{_SDK_ALIAS}.utils.build")
    if mod is None:
        try:
            mod = _load_sdk_build()
        except Exception:  # noqa: BLE001 - any surprise: the ordinary import
            import docker.utils.build

            mod = docker.utils.build
    return mod


def _load_sdk_build() -> Any:
    import importlib
    import importlib.machinery
    import types

    spec = importlib.machinery.PathFinder.find_spec("docker")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the Docker SDK is not installed")
    root = list(spec.submodule_search_locations)[0]
    for name, folder in ((_SDK_ALIAS, root), (f"{_SDK_ALIAS}.utils", os.path.join(root, "utils"))):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [folder]
            pkg.__package__ = name
            sys.modules[name] = pkg
    mod = importlib.import_module(f"{_SDK_ALIAS}.utils.build")
    if not os.path.samefile(str(mod.__file__), os.path.join(root, "utils", "build.py")):
        raise ImportError("not the SDK's build.py")
    return mod


class _Plan(NamedTuple):
    """What goes in the archive (see :func:`_plan`)."""

    root: Path
    names: list[str]
    #: entries made here, not read from the context: a Dockerfile outside it, and the
    #: ``.dockerignore`` that keeps that one out of the build's own files
    extra: list[tuple[str, bytes]]
    #: the Dockerfile's name in the archive
    rel: str | None
    #: the Dockerfile as recorded (relative to the context, or absolute outside it)
    shown: str | None
    df_bytes: bytes | None
    exclude: list[str] | None
    left_out: tuple[str, ...] = ()

    def recorded(
        self,
        files: list[dict[str, Any]],
        archive: IO[bytes] | None = None,
        archive_sha256: str | None = None,
        archive_size: int | None = None,
    ) -> ContextArchive:
        """The :class:`ContextArchive` of this plan, once ``files`` are written (sorted
        here, by path, for the tree digest)."""
        files.sort(key=lambda f: str(f["path"]))
        return ContextArchive(
            root=self.root,
            archive=archive,
            archive_sha256=archive_sha256,
            archive_size=archive_size,
            files=files,
            tree_digest=tree_digest(files),
            dockerfile_in_archive=self.rel,
            dockerfile_path=self.shown,
            dockerfile_bytes=self.df_bytes,
            dockerignore=self.exclude,
            left_out=self.left_out,
        )


def check_context_dir(path: Path) -> None:
    """:class:`InputError` unless ``path`` is a folder, saying what it is instead."""
    if not path.is_dir():
        raise InputError(
            f"The build context {path} "
            f"{'is not a directory' if path.exists() else 'does not exist'}.",
            hint="Pass the folder holding the files the Dockerfile uses.",
        )


def _under(name: str, folders: Sequence[str]) -> bool:
    return any(name == f or name.startswith(f + "/") for f in folders)


def escrow_folders_in(
    context: str | os.PathLike[str], home: Path, deposit_store: str | None = None
) -> tuple[str, ...]:
    """escrow's own folders (``ESCROW_HOME``, and the deposit store when it is a folder)
    that lie inside ``context``: what :func:`make_context` is told to leave out."""
    return _folders_inside(context, _escrow_folders(home, deposit_store))


def left_out_note(left_out: Sequence[str], context: str) -> str:
    """The line that says which of escrow's folders ``context`` left out."""
    shown = ", ".join(f"{p}/" for p in left_out)
    return f"escrow: left escrow's own folders out of the {context}: {shown}"


def _escrow_folders(home: Path, deposit_store: str | None) -> list[Path]:
    from escrow.deposit.store import store_location

    folders = [Path(home)]
    try:
        location = store_location(Path(home), deposit_store)
    except EscrowError:  # an unreadable config.json: no deposit store is used here
        location = ""
    if location and "://" not in location:
        folders.append(Path(location).expanduser())
    return folders


def _folders_inside(context: str | os.PathLike[str], folders: Sequence[Path]) -> tuple[str, ...]:
    """The ``folders`` that lie inside ``context`` (not the context itself), relative to
    it and ``/``-separated as in the recorded file list, sorted; one inside another of
    them is not listed again."""
    root = Path(context).resolve()
    out: set[str] = set()
    for folder in folders:
        try:
            rel = (Path.cwd() / folder).resolve().relative_to(root)
        except ValueError:
            continue
        if rel.parts:
            out.add(rel.as_posix())
    return tuple(sorted(p for p in out if not _under(p, [q for q in out if q != p])))


def _plan(
    context_dir: str | os.PathLike[str],
    dockerfile: str | os.PathLike[str] | None,
    require_dockerfile: bool,
    embed_dockerfile: bool,
    leave_out: Sequence[str] = (),
    recipe: bytes | None = None,
) -> _Plan:
    """What goes in the archive: the Dockerfile and the paths the SDK selects, less
    ``leave_out`` (escrow's own folders: its keys and ledger must never be sent,
    hashed or deposited as inputs of a build).

    ``recipe``: the Dockerfile to build instead of ``dockerfile``'s own bytes (a
    rebuild's, its ``FROM`` lines pinned to the recorded images), sent so that the
    build's files are those of a build of ``dockerfile`` (see :func:`_send_recipe`)."""
    root = Path(context_dir)
    check_context_dir(root)
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
    if leave_out:
        names = [n for n in names if not _under(n.replace(os.sep, "/"), leave_out)]
    _check_names(root, names)
    if recipe is not None and df_bytes is not None:
        rel, extra = _send_recipe(recipe, df_bytes, rel, extra, names, exclude)
        df_bytes = recipe
    return _Plan(root, names, extra, rel, shown, df_bytes, exclude, tuple(leave_out))


#: what stands for a ``*`` of a ``.dockerignore`` pattern in the name a rebuild's
#: pinned Dockerfile is sent under (:func:`_send_recipe`)
_PINNED_STEM = "escrow-pinned-dockerfile"


def _send_recipe(
    recipe: bytes,
    original: bytes,
    rel: str | None,
    extra: list[tuple[str, bytes]],
    names: list[str],
    exclude: list[str] | None,
) -> tuple[str, list[tuple[str, bytes]]]:
    """The name ``recipe`` is sent under in place of a Dockerfile ``original`` (at
    ``rel`` in the context, or embedded as ``extra`` when it is outside), and the
    archive's extra entries.

    The engine removes the Dockerfile from the build's files only when the context's
    ``.dockerignore`` names it; the docker CLI (and a build of a Dockerfile outside the
    context) adds its name to that ``.dockerignore``, which then differs from the
    context's own and is copied so by a ``COPY . /app``: a rebuild that pinned its
    ``FROM`` lines read as different.  So the recipe goes under a name the context's
    own ``.dockerignore`` excludes — ``original``'s own when it does (the engine removed
    it), else one no file of the archive has, which the engine removes as well — and
    that ``.dockerignore`` is sent as it is.  A Dockerfile outside the context is
    embedded under the name made from ``original``'s bytes (the ``.dockerignore`` made
    for it is then the original build's), and so is a recipe whose context's
    ``.dockerignore`` gives no such name (the build's files then differ)."""
    if not extra and exclude:
        matcher = _sdk_build().PatternMatcher(exclude)
        if rel is not None and matcher.matches(rel):
            return rel, [(rel, recipe)]  # removed by the engine, as the original was
        taken = set(names)
        for pattern in exclude:
            name = _excluded_name(pattern)
            if (
                name is not None
                and name not in taken
                and not any(n.startswith(name + os.sep) for n in names)
                and matcher.matches(name)
            ):
                return name, [(name, recipe)]
    name = f".dockerfile.{hashlib.sha256(original).hexdigest()[:40]}"
    if extra:  # outside the context: the original build's .dockerignore, this recipe
        return name, [(n, recipe if n == rel else data) for n, data in extra]
    ignore_text = "\n".join([*(exclude or [".dockerignore"]), name])
    return name, [(".dockerignore", ignore_text.encode("utf-8")), (name, recipe)]


def _excluded_name(pattern: str) -> str | None:
    """A file name at the context's top that ``pattern`` (a ``.dockerignore`` line)
    matches, or None: for a plain name or one with ``*`` (``**/`` in front allowed)."""
    if pattern.startswith("!"):
        return None
    name = pattern.strip().lstrip("/")
    while name.startswith(("./", "**/")):
        name = name[2:] if name.startswith("./") else name[3:]
    name = name.rstrip("/").replace("**", "*")
    if not name or not re.fullmatch(r"[A-Za-z0-9._*+-]+", name) or name in {".", ".."}:
        return None
    name = name.replace("*", _PINNED_STEM)
    return None if name in {".dockerignore", "."} else name


def _check_names(root: Path, names: list[str]) -> None:
    """:class:`InputError`, before anything is sent or built, for a path of the context
    that is not UTF-8: the file list (the tree digest, the manifest) cannot hold it."""
    for name in names:
        if name.isascii():
            continue
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"The name of {_shown(name)} in the build context {_shown(str(root))} "
                "is not valid UTF-8.",
                hint="Rename it, or exclude it in .dockerignore.",
            ) from None


def _shown(path: str) -> str:
    """``path`` for a message: bytes that are not UTF-8 as ``\\xNN``, and a newline or
    other control character escaped, so that the message stays one line."""
    return "".join(
        c if c.isprintable() else repr(c)[1:-1]
        for c in os.fsencode(path).decode("utf-8", "backslashreplace")
    )


def make_context(
    context_dir: str | os.PathLike[str],
    dockerfile: str | os.PathLike[str] | None = None,
    *,
    require_dockerfile: bool = True,
    embed_dockerfile: bool = True,
    keep_archive: bool = True,
    spool_dir: str | None = None,
    leave_out: Sequence[str] = (),
) -> ContextArchive:
    """Build the context archive once, hashing every entry and the archive.

    With ``require_dockerfile=False`` (``escrow capture``/``record``) a context
    without a Dockerfile is fine; with ``embed_dockerfile=False`` a ``-f`` file
    outside the context is hashed as the recipe but not put in the archive;
    with ``keep_archive=False`` the archive is hashed but not kept.  ``leave_out``:
    paths (folders) relative to the context that are left out, and recorded as such.

    Raises :class:`InputError` when the context is not a directory or the
    Dockerfile is missing.
    """
    plan = _plan(context_dir, dockerfile, require_dockerfile, embed_dockerfile, leave_out)
    if not keep_archive:
        return plan.recorded(_write_archive(plan.root, plan.names, plan.extra, None))
    # in memory up to SPOOL_IN_MEMORY, then a temporary file
    import tempfile

    spool = cast(
        IO[bytes],
        tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY, prefix="escrow-context-", dir=spool_dir
        ),
    )
    sink = _ArchiveSink(spool)
    try:
        files = _write_archive(plan.root, plan.names, plan.extra, sink)
        archive_sha256 = sink.finish()
    except BaseException:
        sink.abort()
        spool.close()
        raise
    return plan.recorded(files, spool, archive_sha256, sink.size)


class _Describer:
    """``TarFile.gettarinfo`` for the context walk, with owner names looked up once.

    Same result as ``tarfile.TarFile.gettarinfo`` (a test holds them equal):
    hard links to a file already archived become ``LNKTYPE`` entries, symlinks
    are not followed, sockets are skipped (``None``).
    """

    def __init__(self) -> None:
        self.inodes: dict[tuple[int, int], str] = {}
        self._unames: dict[int, str] = {}
        self._gnames: dict[int, str] = {}

    def _uname(self, uid: int) -> str:
        if uid not in self._unames:
            try:
                import pwd

                self._unames[uid] = pwd.getpwuid(uid)[0]
            except (KeyError, ImportError):
                self._unames[uid] = ""
        return self._unames[uid]

    def _gname(self, gid: int) -> str:
        if gid not in self._gnames:
            try:
                import grp

                self._gnames[gid] = grp.getgrgid(gid)[0]
            except (KeyError, ImportError):
                self._gnames[gid] = ""
        return self._gnames[gid]

    def describe(self, path: str, arcname: str) -> tarfile.TarInfo | None:
        st = os.lstat(path)
        mode = st.st_mode
        linkname = ""
        if stat.S_ISREG(mode):
            inode = (st.st_ino, st.st_dev)
            if st.st_nlink > 1 and inode in self.inodes and arcname != self.inodes[inode]:
                kind = tarfile.LNKTYPE
                linkname = self.inodes[inode]
            else:
                kind = tarfile.REGTYPE
                if inode[0]:
                    self.inodes[inode] = arcname
        elif stat.S_ISDIR(mode):
            kind = tarfile.DIRTYPE
        elif stat.S_ISFIFO(mode):
            kind = tarfile.FIFOTYPE
        elif stat.S_ISLNK(mode):
            kind = tarfile.SYMTYPE
            linkname = os.readlink(path)
        elif stat.S_ISCHR(mode):
            kind = tarfile.CHRTYPE
        elif stat.S_ISBLK(mode):
            kind = tarfile.BLKTYPE
        else:
            return None
        info = tarfile.TarInfo(arcname)
        info.mode = mode
        info.uid, info.gid = st.st_uid, st.st_gid
        info.size = st.st_size if kind == tarfile.REGTYPE else 0
        info.mtime = int(st.st_mtime)  # whole seconds, as the docker CLI sends them
        info.type = kind
        info.linkname = linkname
        info.uname = self._uname(st.st_uid)
        info.gname = self._gname(st.st_gid)
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return info


_FAST_TYPES = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
_MAX7 = 8**7
_MAX11 = 8**11


def tar_header(info: tarfile.TarInfo) -> bytes:
    """``info.tobuf(PAX_FORMAT, "utf-8", "surrogateescape")``, fast for the common case.

    An entry whose names are short ASCII and whose numbers fit needs no PAX
    extended header: its header is the plain ustar block ``tobuf`` would make
    (a test holds the two equal); anything else goes through ``tobuf``.
    """
    name = (
        info.name + "/"
        if info.type == tarfile.DIRTYPE and not info.name.endswith("/")
        else info.name
    )
    if (
        info.type in _FAST_TYPES
        and name.isascii()
        and len(name) <= 100
        and info.linkname.isascii()
        and len(info.linkname) <= 100
        and info.uname.isascii()
        and len(info.uname) <= 32
        and info.gname.isascii()
        and len(info.gname) <= 32
        and 0 <= info.uid < _MAX7
        and 0 <= info.gid < _MAX7
        and 0 <= info.size < _MAX11
        and isinstance(info.mtime, int)
        and 0 <= info.mtime < _MAX11
    ):
        buf = b"".join(
            (
                name.encode("ascii").ljust(100, b"\0"),
                b"%07o\0" % (info.mode & 0o7777),
                b"%07o\0" % info.uid,
                b"%07o\0" % info.gid,
                b"%011o\0" % info.size,
                b"%011o\0" % info.mtime,
                b"        ",
                info.type,
                info.linkname.encode("ascii").ljust(100, b"\0"),
                tarfile.POSIX_MAGIC,
                info.uname.encode("ascii").ljust(32, b"\0"),
                info.gname.encode("ascii").ljust(32, b"\0"),
            )
        ).ljust(_BLOCK, b"\0")
        return buf[:148] + b"%06o\0" % sum(buf) + buf[155:]
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _write_archive(
    root: Path, names: list[str], extra: list[tuple[str, bytes]], sink: _ArchiveSink | None
) -> list[dict[str, Any]]:
    """Write the archive as ``TarFile.addfile`` would (PAX format), hashing each file.

    Modification times are whole seconds, as the docker CLI sends them (moby's
    ``archive.FileInfoHeader`` truncates them), which also spares a PAX header
    per file.
    """
    files: list[dict[str, Any]] = []
    extra_names = {name for name, _ in extra}
    describer = _Describer()
    for name in names:
        if name in extra_names:
            continue
        full = os.path.join(root, name)
        try:
            info = describer.describe(full, name)
        except OSError as e:
            raise InputError(f"Cannot read {full} in the build context: {e.strerror}.") from e
        if info is None:  # a socket: docker skips it too
            continue
        kind = _TYPES.get(info.type, "other")
        entry: dict[str, Any] = {
            "path": name,
            "type": kind,
            "mode": stat.S_IMODE(info.mode),
            "size": info.size if kind == "file" else 0,
        }
        if sink is not None:
            sink.write(tar_header(info))
        if info.type == tarfile.REGTYPE:
            entry["sha256"] = _copy_file(full, info.size, sink)
        elif info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            entry["linkTarget"] = info.linkname
        files.append(entry)
    for name, data in extra:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        if sink is not None:
            sink.write(tar_header(info))
            sink.write(data + b"\0" * (-len(data) % _BLOCK))
        digest = hashlib.sha256(data).hexdigest()
        files.append(
            {"path": name, "type": "file", "mode": info.mode, "size": len(data), "sha256": digest}
        )
    if sink is not None:
        # end of archive: two zero blocks, padded to a whole record (as TarFile.close)
        sink.write(b"\0" * (2 * _BLOCK))
        sink.write(b"\0" * (-sink.size % _RECORD))
    return files


def _copy_file(path: str, size: int, sink: _ArchiveSink | None) -> str:
    """Copy ``size`` bytes of ``path`` into the archive (padded); their SHA-256.

    Without a sink (no archive is kept) the file is only hashed.  Exactly the ``size``
    the walk recorded is read, from the regular file it saw: a file that grows while it
    is read is hashed as recorded, and one replaced meanwhile by a symbolic link (to
    ``/dev/zero``, outside the context) or a FIFO is refused, not followed or waited on.
    """
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(
                    f"The file {path} in the build context was replaced while it was read.",
                    hint="Do not change the context while escrow builds it.",
                )
            left = size
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise InputError(
                        f"The file {path} in the build context shrank while it was read.",
                        hint="Do not change the context while escrow builds it.",
                    )
                h.update(chunk)
                if sink is not None:
                    sink.write(chunk)
                left -= len(chunk)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(
                f"The file {path} in the build context was replaced by a symbolic link "
                "while it was read.",
                hint="Do not change the context while escrow builds it.",
            ) from e
        raise InputError(f"Cannot read {path} in the build context: {e.strerror}.") from e
    if sink is None:
        return h.hexdigest()
    if size % _BLOCK:
        sink.write(b"\0" * (_BLOCK - size % _BLOCK))
    return h.hexdigest()


class ContextStream:
    """The context archive made *while* it is uploaded (``escrow build``).

    A producer thread walks, reads and hashes the files and writes the archive
    into a bounded queue; :meth:`chunks` hands those bytes to the HTTP request
    body.  Each file is read once, so what is hashed is exactly what the engine
    receives, and nothing is written to disk.  After the upload,
    :meth:`result` gives the :class:`ContextArchive` (digests and file list).
    """

    def __init__(
        self,
        context_dir: str | os.PathLike[str],
        dockerfile: str | os.PathLike[str] | None,
        leave_out: Sequence[str] = (),
        recipe: bytes | None = None,
    ) -> None:
        self.plan = _plan(context_dir, dockerfile, True, True, leave_out, recipe)
        assert self.plan.df_bytes is not None and self.plan.rel is not None
        self.dockerfile_bytes: bytes = self.plan.df_bytes
        self.dockerfile_in_archive: str = self.plan.rel
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._result: ContextArchive | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _produce(self) -> None:
        sink = _ArchiveSink(_QueueWriter(self._queue))
        try:
            files = _write_archive(self.plan.root, self.plan.names, self.plan.extra, sink)
            digest = sink.finish()
            self._result = self.plan.recorded(files, None, digest, sink.size)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            sink.abort()
            self._error = e
        finally:
            self._queue.put(None)

    def chunks(self) -> Iterator[bytes]:
        """The archive's bytes, produced as they are consumed (start it once)."""
        if self._thread is not None:
            raise RuntimeError("the context stream was already consumed")
        self._thread = threading.Thread(target=self._produce, name="escrow-context", daemon=True)
        self._thread.start()
        while (chunk := self._queue.get()) is not None:
            yield chunk

    def result(self) -> ContextArchive:
        """The recorded context, once the whole archive was produced."""
        if self._thread is None:
            for _ in self.chunks():
                pass
        assert self._thread is not None
        # drain what the consumer left (the engine may stop reading early)
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, EscrowError):
                raise self._error
            raise InputError(f"Making the context archive failed: {self._error}.") from self._error
        assert self._result is not None
        return self._result


class _QueueWriter:
    def __init__(self, q: queue.Queue[bytes | None]) -> None:
        self._q = q

    def write(self, data: bytes) -> int:
        self._q.put(data)
        return len(data)

    def flush(self) -> None:
        pass
