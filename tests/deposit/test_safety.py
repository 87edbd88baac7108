"""Crafted malicious archives: each is refused with a clear error and leaves nothing behind,
both for the extractor itself and for `escrow deposit import`."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from escrow.deposit.safetar import UnsafeArchive, safe_extract


def _tar(add: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        add(t)
    return buf.getvalue()


def _file(t: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))


def _special(
    name: str, kind: bytes, link: str = "", *, around: bool = True
) -> Callable[[tarfile.TarFile], None]:
    def add(t: tarfile.TarFile) -> None:
        if around:
            _file(t, "ok.txt")
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        t.addfile(info)
        if around:
            _file(t, "after.txt")

    return add


MALICIOUS = {
    "absolute-name": (lambda t: _file(t, "/tmp/escrow-evil")),
    "dotdot": (lambda t: (_file(t, "ok.txt"), _file(t, "a/../../escrow-evil"))),
    "symlink-outside": _special("link", tarfile.SYMTYPE, "/etc"),
    "symlink-dotdot": _special("sub/link", tarfile.SYMTYPE, "../../x"),
    "symlink-then-write-through": (
        lambda t: (
            _special("d", tarfile.SYMTYPE, "/tmp")(t),
            _file(t, "d/escrow-evil"),
        )
    ),
    "hardlink-outside": _special("hl", tarfile.LNKTYPE, "/etc/passwd"),
    "hardlink-dotdot": _special("hl", tarfile.LNKTYPE, "../x"),
    "chardev": _special("null", tarfile.CHRTYPE),
    "blockdev": _special("sda", tarfile.BLKTYPE),
    "fifo": _special("pipe", tarfile.FIFOTYPE),
    "oversized": (lambda t: _file(t, "big.bin", b"y" * 4096)),
    "twice": (lambda t: (_file(t, "same"), _file(t, "same"))),
}
MESSAGES = {
    "absolute-name": "absolute name",
    "dotdot": "'..' component",
    "symlink-outside": "pointing outside",
    "symlink-dotdot": "pointing outside",
    "symlink-then-write-through": "pointing outside",
    "hardlink-outside": "absolute name",
    "hardlink-dotdot": "'..' component",
    "chardev": "device file",
    "blockdev": "device file",
    "fifo": "FIFO",
    "oversized": "more than the 1024 bytes allowed",
    "twice": "twice",
}


@pytest.mark.parametrize("case", sorted(MALICIOUS), ids=sorted(MALICIOUS))
def test_extractor_refuses_and_leaves_nothing(case: str, tmp_path: Path) -> None:
    data = _tar(MALICIOUS[case])
    target = tmp_path / "out" / "target"
    with pytest.raises(UnsafeArchive) as e:
        safe_extract(io.BytesIO(data), target, max_member=1024)
    assert MESSAGES[case] in e.value.message
    assert list((tmp_path / "out").iterdir()) == []  # no target, no staging folder
    assert not Path("/tmp/escrow-evil").exists()


def test_extractor_keeps_links_inside_and_modes(tmp_path: Path) -> None:
    def add(t: tarfile.TarFile) -> None:
        _file(t, "dir/a.txt", b"hello")
        info = tarfile.TarInfo("dir/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "a.txt"
        t.addfile(info)
        info = tarfile.TarInfo("hard")
        info.type = tarfile.LNKTYPE
        info.linkname = "dir/a.txt"
        t.addfile(info)
        x = tarfile.TarInfo("run.sh")
        x.mode = 0o755
        x.size = 2
        t.addfile(x, io.BytesIO(b"#!"))

    target = tmp_path / "t"
    safe_extract(io.BytesIO(_tar(add)), target)
    assert (target / "dir" / "link").read_text() == "hello"
    assert (target / "hard").read_bytes() == b"hello"
    assert (target / "run.sh").stat().st_mode & 0o777 == 0o755


def test_context_links_outside_are_made_last_and_never_written_through(tmp_path: Path) -> None:
    def add(t: tarfile.TarFile) -> None:
        _special("d", tarfile.SYMTYPE, str(tmp_path / "victim"))(t)
        _file(t, "d/evil")

    (tmp_path / "victim").mkdir()
    with pytest.raises(UnsafeArchive):
        safe_extract(io.BytesIO(_tar(add)), tmp_path / "t", links_outside=True)
    assert list((tmp_path / "victim").iterdir()) == []
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------
# escrow deposit import


def _deposit_like(extra: Callable[[tarfile.TarFile], None]) -> bytes:
    """A deposit-shaped archive (TOC, one valid blob) plus a malicious member."""
    blob = b"content"
    digest = hashlib.sha256(blob).hexdigest()

    def add(t: tarfile.TarFile) -> None:
        toc = {"format": "escrow-deposit/v1", "blobs": [{"sha256": digest, "size": len(blob)}]}
        _file(t, "TOC.json", json.dumps(toc).encode())
        _file(t, f"blobs/sha256/{digest[:2]}/{digest}", blob)
        extra(t)

    return _tar(add)


IMPORT_CASES = {
    "absolute-name": (lambda t: _file(t, "/tmp/escrow-evil"), "absolute name"),
    "dotdot": (lambda t: _file(t, "blobs/../../escrow-evil"), "'..' component"),
    "symlink-outside": (
        _special("keys/k.pem", tarfile.SYMTYPE, "/etc/passwd", around=False),
        "pointing outside",
    ),
    "hardlink-outside": (
        _special("keys/k.pem", tarfile.LNKTYPE, "/etc/passwd", around=False),
        "absolute name",
    ),
    "device": (_special("keys/k.pem", tarfile.CHRTYPE, around=False), "device file"),
    "oversized": (lambda t: _file(t, "keys/big.pem", b"z" * 5000), "more than the 4096 bytes"),
    "unexpected-name": (lambda t: _file(t, "bin/run.sh"), "unexpected member"),
}


@pytest.mark.parametrize("case", sorted(IMPORT_CASES), ids=sorted(IMPORT_CASES))
def test_import_refuses_and_stores_nothing(
    case: str, cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    add, message = IMPORT_CASES[case]
    archive = tmp_path / f"{case}.tar"
    archive.write_bytes(_deposit_like(add))
    r = cli(["deposit", "import", str(archive), "--max-member-size", "4096"])
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    store = escrow_home / "deposits"
    assert not list((store / "blobs").rglob("*")) if (store / "blobs").exists() else True
    assert not (store / "refs").exists()
    assert list((store / "tmp").iterdir()) == []


def test_a_sparse_member_is_refused_before_it_expands(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    """A sparse file is a few blocks of archive that would write gigabytes of zeros: an
    archive of 10 KiB must not fill the disk of the agent importing it."""
    assert shutil.which("tar"), "GNU tar (which writes the sparse member) is not installed"
    src = tmp_path / "src"
    digest = "a" * 64
    blob = src / "blobs" / "sha256" / digest[:2] / digest
    blob.parent.mkdir(parents=True)
    with open(blob, "wb") as f:
        f.truncate(256 << 20)
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(archive), "-C", str(src), "blobs"], check=True)
    assert archive.stat().st_size < 64 << 10
    r = cli(["deposit", "import", str(archive)])
    assert r.exit_code == 2, r.stderr
    assert "sparse file" in r.stderr and "Traceback" not in r.stderr
    assert list((escrow_home / "deposits" / "tmp").iterdir()) == []
    with open(archive, "rb") as f, pytest.raises(UnsafeArchive, match="sparse file"):
        safe_extract(f, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_toc_is_an_altered_archive(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "deep.tar"
    archive.write_bytes(_tar(lambda t: _file(t, "TOC.json", b"[" * 200_000 + b"]" * 200_000)))
    r = cli(["deposit", "import", str(archive)])
    assert r.exit_code == 1, r.stderr
    assert "TOC.json is not JSON" in r.stderr and "Traceback" not in r.stderr
