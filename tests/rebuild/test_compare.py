"""Entry-by-entry layer comparison and image comparison, on crafted archives."""

from __future__ import annotations

import copy
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from escrow.rebuild.compare import (
    Kind,
    Verdict,
    compare_images,
    compare_indexes,
)
from escrow.rebuild.layers import LayerIndex

from .tarkit import E, gz, layer

ASSETS = Path(__file__).parent.parent / "assets"

BASE = [
    E("etc/", type=tarfile.DIRTYPE, mode=0o755),
    E("etc/app.conf", b"key=value\n", mode=0o644),
    E("bin/tool", b"tool v1", mode=0o755),
    E("bin/link", type=tarfile.SYMTYPE, linkname="tool", mode=0o777),
]


def idx(entries: list[E], **kw: Any) -> LayerIndex:
    return LayerIndex.of(io.BytesIO(layer(entries, **kw)))


def with_(entries: list[E], name: str, **changes: Any) -> list[E]:
    return [replace(e, **changes) if e.name == name else e for e in entries]


@pytest.mark.parametrize(
    ("rebuilt", "normalisations"),
    [
        ([replace(e, mtime=e.mtime + 60) for e in BASE], ["mtime"]),
        (list(reversed(BASE)), ["entry-order"]),
        ("gnu", ["tar-format"]),
        ([replace(e, uname="", gname="") for e in BASE], ["owner-names"]),
        (
            with_(BASE, "etc/app.conf", pax={"LIBARCHIVE.creationtime": "5"}),
            ["pax-headers", "tar-format"],
        ),
        ("pad", ["archive-bytes"]),
        ("gzip", ["compression"]),
    ],
    ids=["mtime", "order", "tar-format", "owner-names", "pax-headers", "padding", "compression"],
)
def test_equivalent_layers_name_their_normalisations(
    rebuilt: Any, normalisations: list[str]
) -> None:
    original = idx(BASE)
    if rebuilt == "gnu":
        other = idx(BASE, fmt=tarfile.GNU_FORMAT)
    elif rebuilt == "pad":
        other = idx(BASE, pad=10240)
    elif rebuilt == "gzip":
        other = LayerIndex.of(io.BytesIO(gz(layer(BASE))))
    else:
        other = idx(rebuilt)
    c = compare_indexes(original, other)
    assert c.differences == []
    assert c.verdict is Verdict.EQUIVALENT
    assert c.normalisations == normalisations


@pytest.mark.parametrize(
    ("rebuilt", "path", "kind"),
    [
        (with_(BASE, "bin/tool", data=b"tool v2"), "/bin/tool", Kind.CONTENT),
        (with_(BASE, "etc/app.conf", mode=0o600), "/etc/app.conf", Kind.MODE),
        (with_(BASE, "etc/app.conf", uid=1000), "/etc/app.conf", Kind.OWNER),
        (with_(BASE, "etc/app.conf", gid=50), "/etc/app.conf", Kind.OWNER),
        (with_(BASE, "bin/link", linkname="/bin/tool"), "/bin/link", Kind.LINK),
        (with_(BASE, "etc/app.conf", pax={"SCHILY.xattr.user.x": "1"}), "/etc/app.conf", Kind.MODE),
        (with_(BASE, "bin/tool", type=tarfile.DIRTYPE, data=None), "/bin/tool", Kind.TYPE),
        ([*BASE, E("new", b"n")], "/new", Kind.ADDED),
        (BASE[:-1], "/bin/link", Kind.REMOVED),
        ([*BASE, E("var/.wh.cache", b"")], "/var/cache", Kind.REMOVED),
        ([*BASE[:1], E("etc/.wh.app.conf", b""), *BASE[2:]], "/etc/app.conf", Kind.REMOVED),
    ],
    ids=[
        "content",
        "mode",
        "owner-uid",
        "owner-gid",
        "link",
        "xattr",
        "type",
        "added",
        "removed",
        "whiteout-only-in-rebuild",
        "whiteout-replaces-file",
    ],
)
def test_each_difference_is_named(rebuilt: list[E], path: str, kind: Kind) -> None:
    c = compare_indexes(idx(BASE), idx(rebuilt))
    assert c.verdict is Verdict.DIFFERENT
    assert [(d.path, d.kind) for d in c.differences] == [(path, kind)]
    doc = c.differences[0].to_dict()
    if kind is Kind.ADDED:
        assert "original" not in doc
    if kind is Kind.REMOVED:
        assert "rebuilt" not in doc


def test_whiteout_only_in_original_is_added() -> None:
    c = compare_indexes(idx([*BASE, E(".wh.old", b"")]), idx(BASE))
    assert [(d.path, d.kind) for d in c.differences] == [("/old", Kind.ADDED)]


def test_content_and_mode_change_give_two_differences_and_normalisations() -> None:
    rebuilt = [replace(e, mtime=1) for e in with_(BASE, "bin/tool", data=b"v2", mode=0o700)]
    c = compare_indexes(idx(BASE), idx(rebuilt))
    assert [(d.path, d.kind) for d in c.differences] == [
        ("/bin/tool", Kind.CONTENT),
        ("/bin/tool", Kind.MODE),
    ]
    assert c.normalisations == ["mtime"]
    assert c.differences[1].describe() == "/bin/tool: mode 0755 -> 0700"


# ---------------------------------------------------------------------------
# images


def manifest() -> dict[str, Any]:
    doc = json.loads((ASSETS / "build-manifest.example.json").read_text())
    return dict(doc["predicate"])


class FakeSource:
    def __init__(self, layers: dict[tuple[str, str], LayerIndex]) -> None:
        self.layers = layers
        self.asked: list[tuple[str, str]] = []

    def index(self, side: str, diff_id: str) -> LayerIndex:
        self.asked.append((side, diff_id))
        return self.layers[(side, diff_id)]


def test_same_image_id_is_identical_without_reading_layers() -> None:
    src = FakeSource({})
    result = compare_images(manifest(), manifest(), src)
    assert result.verdict is Verdict.IDENTICAL
    assert src.asked == []


def test_same_layers_and_config_different_times_is_identical() -> None:
    b = copy.deepcopy(manifest())
    b["image"]["id"] = "sha256:" + "9" * 64
    b["image"]["created"] = "2027-01-01T00:00:00Z"
    for h in b["history"]:
        h["created"] = "2027-01-01T00:00:00Z"
    result = compare_images(manifest(), b, FakeSource({}))
    assert result.verdict is Verdict.IDENTICAL
    assert result.config == []


def test_config_fields_are_compared_one_by_one() -> None:
    b = copy.deepcopy(manifest())
    b["image"]["id"] = "sha256:" + "9" * 64
    b["image"]["config"]["Labels"] = {"org.example.team": "other"}
    b["history"][2]["createdBy"] = "/bin/sh -c #(nop)  LABEL org.example.team=other"
    result = compare_images(manifest(), b, FakeSource({}))
    assert result.verdict is Verdict.DIFFERENT
    assert [c.field for c in result.config] == ["config.Labels", "history[2].createdBy"]


def test_a_differing_layer_is_compared_file_by_file() -> None:
    a = manifest()
    b = copy.deepcopy(a)
    b["image"]["id"] = "sha256:" + "9" * 64
    new = "sha256:" + "8" * 64
    b["layers"][2]["diffId"] = new
    old = a["layers"][2]["diffId"]
    src = FakeSource(
        {
            ("original", old): idx([E("built", b"built\n")]),
            ("rebuilt", new): idx([E("built", b"built\n", mtime=5)]),
        }
    )
    result = compare_images(a, b, src)
    assert [layer.verdict for layer in result.layers] == [
        Verdict.IDENTICAL,
        Verdict.IDENTICAL,
        Verdict.EQUIVALENT,
    ]
    assert result.verdict is Verdict.EQUIVALENT
    assert result.normalisations == ["mtime"]
    assert src.asked == [("original", old), ("rebuilt", new)]
    doc = result.layers[2].to_dict()
    assert doc["normalisations"] == ["mtime"] and "differences" not in doc


def test_an_extra_layer_lists_its_files_as_added() -> None:
    a = manifest()
    b = copy.deepcopy(a)
    b["image"]["id"] = "sha256:" + "9" * 64
    extra = "sha256:" + "7" * 64
    b["layers"].append({"index": 3, "diffId": extra, "createdBy": "RUN touch /x"})
    src = FakeSource({("rebuilt", extra): idx([E("x", b"")])})
    result = compare_images(a, b, src)
    assert result.verdict is Verdict.DIFFERENT
    last = result.layers[3]
    assert (last.original, last.rebuilt, last.verdict) == (None, extra, Verdict.DIFFERENT)
    assert last.comparison is not None
    assert [(d.path, d.kind) for d in last.comparison.differences] == [("/x", Kind.ADDED)]


def test_many_differences_are_truncated_in_documents() -> None:
    a = idx([E(f"f{i}", b"a") for i in range(30)])
    b = idx([E(f"f{i}", b"b") for i in range(30)])
    from escrow.rebuild.compare import LayerResult

    c = compare_indexes(a, b)
    doc = LayerResult(0, "sha256:" + "1" * 64, "sha256:" + "2" * 64, None, c.verdict, c).to_dict(
        limit=10
    )
    assert len(doc["differences"]) == 10
    assert doc["truncated"] is True and doc["differenceCount"] == 30
