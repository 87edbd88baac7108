"""The streaming layer reader and the ``docker save`` reader, on crafted archives."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from escrow.errors import InputError
from escrow.rebuild.layers import (
    SMALL_MEMBER,
    EntryType,
    LayerIndex,
    iter_entries,
    normalise_path,
    read_saved_image,
)

from .tarkit import E, classic_save, gz, layer, oci_save, sha, zstd


def index(data: bytes) -> LayerIndex:
    return LayerIndex.of(io.BytesIO(data))


SAMPLE = [
    E("./etc/", type=tarfile.DIRTYPE, mode=0o755),
    E("./etc/app.conf", b"key=value\n", mode=0o600, uid=10, gid=20),
    E("./bin/tool", b"\x7fELF" + bytes(100), mode=0o4755),
    E("./bin/link", type=tarfile.SYMTYPE, linkname="tool", mode=0o777),
    E("./bin/hard", type=tarfile.LNKTYPE, linkname="./bin/tool"),
    E("./dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
    E("./run/fifo", type=tarfile.FIFOTYPE),
    E("./etc/.wh.old.conf", b""),
    E("./var/cache/.wh..wh..opq", b""),
]


def test_entries_are_normalised_and_hashed() -> None:
    got = {e.path: e for e in iter_entries(io.BytesIO(layer(SAMPLE)))}
    assert set(got) == {
        "/etc",
        "/etc/app.conf",
        "/bin/tool",
        "/bin/link",
        "/bin/hard",
        "/dev/null",
        "/run/fifo",
        "/etc/old.conf",
        "/var/cache/.wh..wh..opq",
    }
    conf = got["/etc/app.conf"]
    assert (conf.type, conf.mode, conf.uid, conf.gid, conf.size) == (
        EntryType.FILE,
        0o600,
        10,
        20,
        10,
    )
    assert conf.sha256 == sha(b"key=value\n")
    assert got["/bin/tool"].mode == 0o4755  # setuid kept
    assert got["/bin/link"].type is EntryType.SYMLINK and got["/bin/link"].link == "tool"
    assert got["/bin/hard"].type is EntryType.HARDLINK and got["/bin/hard"].link == "/bin/tool"
    assert got["/dev/null"].device == (1, 3)
    assert got["/run/fifo"].type is EntryType.FIFO
    assert got["/etc/old.conf"].type is EntryType.WHITEOUT
    assert got["/var/cache/.wh..wh..opq"].type is EntryType.WHITEOUT
    assert [e.order for e in got.values()] == list(range(len(SAMPLE)))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("./a/b/", "/a/b"), ("a//b", "/a/b"), ("/a/./b", "/a/b"), ("./", "/"), ("a/../b", "/a/../b")],
    ids=["dot-slash-trailing", "double-slash", "absolute-dot", "root", "dotdot-kept"],
)
def test_normalise_path(name: str, expected: str) -> None:
    assert normalise_path(name) == expected


LONG = "deep/" * 30 + "file.txt"


@pytest.mark.parametrize(
    ("fmt", "expected_fmt"),
    [(tarfile.GNU_FORMAT, "gnu"), (tarfile.PAX_FORMAT, "pax")],
    ids=["gnu-longname", "pax-path"],
)
def test_long_names(fmt: int, expected_fmt: str) -> None:
    target = "t/" * 70 + "x"
    data = layer([E(LONG, b"long"), E("s", type=tarfile.SYMTYPE, linkname=target)], fmt=fmt)
    got = {e.path: e for e in iter_entries(io.BytesIO(data))}
    assert got["/" + LONG].sha256 == sha(b"long")
    assert got["/" + LONG].fmt == expected_fmt
    assert got["/s"].link == target


def test_pax_records_xattrs_and_times() -> None:
    pax = {
        "SCHILY.xattr.security.capability": "\x01\x02",
        "mtime": "1700000000.25",
        "atime": "1700000001.5",
        "LIBARCHIVE.creationtime": "1",
    }
    (e,) = iter_entries(io.BytesIO(layer([E("f", b"x", pax=pax)])))
    assert e.xattrs == (("security.capability", "0102"),)
    assert e.mtime == 1700000000.25 and e.atime == 1700000001.5
    assert e.pax == (("LIBARCHIVE.creationtime", "1"),)
    assert e.fmt == "pax"


@pytest.mark.parametrize(("compress", "name"), [(gz, "gzip"), (zstd, "zstd")], ids=["gzip", "zstd"])
def test_compressed_layers_are_detected(compress: object, name: str) -> None:
    raw = layer(SAMPLE)
    idx = index(compress(raw))  # type: ignore[operator]
    assert idx.compression == name
    assert idx.entries == index(raw).entries


def test_multi_member_gzip() -> None:
    raw = layer(SAMPLE)
    half = len(raw) // 2
    idx = index(gz(raw[:half]) + gz(raw[half:]))
    assert idx.entries == index(raw).entries


@pytest.mark.parametrize(
    "data",
    [layer(SAMPLE)[:1500], gz(layer(SAMPLE))[:200], b"not a tar at all" * 64],
    ids=["truncated-tar", "truncated-gzip", "garbage"],
)
def test_broken_archives_are_input_errors(data: bytes) -> None:
    with pytest.raises(InputError):
        index(data)


def test_content_larger_than_the_buffer_is_streamed() -> None:
    big = os.urandom(3 * (1 << 20) + 17)
    (e,) = iter_entries(io.BytesIO(layer([E("big", big)])))
    assert e.size == len(big) and e.sha256 == sha(big)


def test_duplicate_paths_last_one_wins() -> None:
    idx = index(layer([E("f", b"one"), E("f", b"two")]))
    assert idx.entries["/f"].sha256 == sha(b"two")
    assert idx.duplicates == ["/f"]


# ---------------------------------------------------------------------------
# docker save archives

L1 = layer([E("bin/", type=tarfile.DIRTYPE, mode=0o755), E("bin/sh", b"shell", mode=0o755)])
L2 = layer([E("f", b"hello\n"), E(".wh.gone", b"")])
BIG = layer([E("big", os.urandom(SMALL_MEMBER + 4096))])


@pytest.mark.parametrize(
    ("archive", "layout"),
    [
        (classic_save([L1, L2, BIG]), "classic"),
        (oci_save([L1, L2, BIG]), "oci"),
        (oci_save([L1, L2, BIG], ["gzip", "zstd", None]), "oci"),
        (oci_save([L1, L2, BIG], ["gzip", None, "zstd"], docker_manifest=False), "oci"),
        (oci_save([L1, L2, BIG], docker_manifest=False, nested_index=True), "oci"),
    ],
    ids=["classic", "oci", "oci-compressed", "oci-index-only", "oci-nested-index"],
)
@pytest.mark.parametrize("want", [False, True], ids=["spooled", "wanted"])
def test_saved_image_layouts(archive: bytes, layout: str, want: bool, tmp_path: Path) -> None:
    diff_ids = [f"sha256:{sha(t)}" for t in (L1, L2, BIG)]
    saved = read_saved_image(
        io.BytesIO(archive), want=set(diff_ids) if want else None, workdir=tmp_path
    )
    with saved:
        assert saved.layout == layout
        assert saved.diff_ids == diff_ids
        assert saved.config["os"] == "linux"
        assert saved.index(diff_ids[0]).entries == index(L1).entries
        assert set(saved.index(diff_ids[1]).entries) == {"/f", "/gone"}
        assert saved.index(diff_ids[2]).entries == index(BIG).entries
        with pytest.raises(InputError, match="no layer"):
            saved.index("sha256:" + "0" * 64)
    assert list(tmp_path.iterdir()) == []  # spooled blobs removed


def test_archive_without_manifest_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a docker save archive"):
        read_saved_image(io.BytesIO(L1), workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []
