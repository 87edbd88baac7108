"""Extracting tar archives without ever writing outside the target folder.

Every member is checked before anything is written for it:

* absolute names (``/etc/x``) and names with a ``..`` component are refused;
* symbolic links whose target is absolute or leaves the target folder are
  refused (or, with ``links_outside=True`` — a restored build context, whose
  links are the user's own — created *after* every file, so no later member
  is ever written through one);
* hard links must name a regular file already extracted;
* device files, FIFOs and other special members are refused, and so are sparse
  files (a few blocks of archive that would write up to ``max_member`` zeros);
* a member larger than ``max_member`` (or members adding up to more than
  ``max_total``) is refused;
* a name given twice is refused.

Extraction goes to a fresh staging folder beside the target, renamed into
place only when the whole archive passed; a refused archive leaves nothing
behind.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from escrow.errors import InputError

#: default limits
MAX_MEMBER = 64 << 30
MAX_TOTAL = 1 << 40
_CHUNK = 1 << 20


class UnsafeArchive(InputError):
    """The archive holds a member escrow refuses to extract."""


class TruncatedArchive(InputError):
    """The archive ends part way through a member or a header (a copy cut short)."""


def _clean_name(name: str, what: str) -> str:
    """The member name as a relative POSIX path, or :class:`UnsafeArchive`."""
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(
            f"{what} holds the member {name!r} with an absolute name; refused "
            "(it would be written outside the target folder)."
        )
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(
            f"{what} holds the member {name!r} with a '..' component; refused "
            "(it would be written outside the target folder)."
        )
    if not parts:
        return ""
    if any("\0" in p for p in parts):
        raise UnsafeArchive(f"{what} holds a member name with a NUL byte; refused.")
    return "/".join(parts)


def _link_inside(member: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return joined != ".." and not joined.startswith("../")


def check_member(
    info: tarfile.TarInfo,
    what: str,
    *,
    links_outside: bool = False,
    max_member: int = MAX_MEMBER,
) -> str:
    """Check one member (see the module docstring); its cleaned name."""
    name = _clean_name(info.name, what)
    if info.isdev() or info.isfifo():
        kind = "FIFO" if info.isfifo() else "device file"
        raise UnsafeArchive(f"{what} holds the {kind} {info.name!r}; refused.")
    if info.issym():
        if not links_outside and not _link_inside(name, info.linkname):
            raise UnsafeArchive(
                f"{what} holds the symbolic link {info.name!r} pointing outside the target "
                f"folder ({info.linkname!r}); refused."
            )
    elif info.islnk():
        link = _clean_name(info.linkname, what)
        if not link:
            raise UnsafeArchive(f"{what} holds a hard link {info.name!r} to nothing; refused.")
    elif info.issparse():
        raise UnsafeArchive(
            f"{what} holds the sparse file {info.name!r}; refused (escrow never writes one, "
            "and its few bytes would expand to many more on disk)."
        )
    elif not (info.isreg() or info.isdir()):
        raise UnsafeArchive(
            f"{what} holds the member {info.name!r} of an unsupported type; refused."
        )
    if info.size > max_member:
        raise UnsafeArchive(
            f"{what} holds the member {info.name!r} of {info.size} bytes, more than the "
            f"{max_member} bytes allowed; refused."
        )
    return name


def _no_symlink_parents(root: Path, rel: str) -> None:
    cur = root
    for part in rel.split("/")[:-1]:
        cur = cur / part
        if cur.is_symlink():  # cannot happen (links are made last); checked all the same
            raise UnsafeArchive(f"The archive writes through the symbolic link {cur}; refused.")


def safe_extract(
    fileobj: IO[bytes],
    target: Path,
    *,
    what: str = "The archive",
    links_outside: bool = False,
    max_member: int = MAX_MEMBER,
    max_total: int = MAX_TOTAL,
    accept: Callable[[str, tarfile.TarInfo], bool] | None = None,
) -> list[str]:
    """Extract the tar stream ``fileobj`` into the new folder ``target``; the names written.

    ``accept(name, info)`` may skip a member (return False) or raise to refuse it.
    Raises :class:`UnsafeArchive` (nothing is left behind) for anything refused.
    """
    target = Path(target)
    if target.exists():
        raise InputError(
            f"The folder {target} already exists; escrow extracts only into a new one."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".escrow-extract-", dir=target.parent))
    written: list[str] = []
    try:
        _extract_into(fileobj, staging, what, links_outside, max_member, max_total, accept, written)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _extract_into(
    fileobj: IO[bytes],
    root: Path,
    what: str,
    links_outside: bool,
    max_member: int,
    max_total: int,
    accept: Callable[[str, tarfile.TarInfo], bool] | None,
    written: list[str],
) -> None:
    seen: set[str] = set()
    files: set[str] = set()
    links: list[tuple[str, str]] = []
    dirs: list[tuple[str, int, float]] = []
    total = 0
    current = None  # the member being read: where a truncated archive ends
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for info in tar:
                current = info.name
                name = check_member(info, what, links_outside=links_outside, max_member=max_member)
                if not name:
                    continue
                if accept is not None and not accept(name, info):
                    continue
                if name in seen and not info.isdir():
                    raise UnsafeArchive(f"{what} holds the member {name!r} twice; refused.")
                seen.add(name)
                total += info.size
                if total > max_total:
                    raise UnsafeArchive(
                        f"{what} holds more than the {max_total} bytes allowed; refused."
                    )
                _no_symlink_parents(root, name)
                path = root / name
                if info.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    dirs.append((name, info.mode, info.mtime))
                elif info.issym():
                    links.append((name, info.linkname))
                elif info.islnk():
                    source = _clean_name(info.linkname, what)
                    if source not in files:
                        raise UnsafeArchive(
                            f"{what} holds the hard link {info.name!r} to {info.linkname!r}, "
                            "which is not a file extracted before it; refused."
                        )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.link(root / source, path, follow_symlinks=False)
                    files.add(name)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(info)
                    assert src is not None
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        left = info.size
                        while left:
                            chunk = src.read(min(_CHUNK, left))
                            if not chunk:
                                raise TruncatedArchive(
                                    f"{what} is cut short within its member {info.name!r}."
                                )
                            out.write(chunk)
                            left -= len(chunk)
                    os.chmod(path, stat.S_IMODE(info.mode))
                    os.utime(path, (info.mtime, info.mtime))
                    files.add(name)
                written.append(name)
    except tarfile.TarError as e:
        if current is not None and str(e) in ("unexpected end of data", "truncated header"):
            raise TruncatedArchive(f"{what} is cut short within its member {current!r}.") from e
        raise InputError(f"{what} is not a readable tar archive ({e}).") from e
    for name, link in links:
        path = root / name
        if path.exists() or path.is_symlink():
            raise UnsafeArchive(f"{what} holds the member {name!r} twice; refused.")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link, path)
        with contextlib.suppress(OSError, NotImplementedError):
            os.utime(path, follow_symlinks=False)
    for name, mode, mtime in reversed(dirs):
        os.chmod(root / name, stat.S_IMODE(mode))
        os.utime(root / name, (mtime, mtime))
