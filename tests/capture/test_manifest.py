"""Layers mapped to the history entries that made them; the schema; the example."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from escrow.capture.manifest import layers_and_history
from escrow.capture.secrets import Redactor
from escrow.documents.schemas import validate_statement
from escrow.errors import SchemaError
from tests.conftest import ASSETS

D = ["sha256:" + c * 64 for c in "123"]


def _config(history: list[dict[str, Any]], diff_ids: list[str]) -> dict[str, Any]:
    return {"rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}


def test_empty_layer_entries_make_no_layer() -> None:
    history = [
        {"created_by": "COPY busybox"},
        {"created_by": "ENV PATH=/bin", "empty_layer": True},
        {"created_by": "LABEL a=b", "empty_layer": True},
        {"created_by": "WORKDIR /app"},  # a layer of size 0: still a layer
        {"created_by": "RUN make", "comment": "built"},
        {"created_by": 'CMD ["x"]', "empty_layer": True},
    ]
    sizes = [{"Size": 100}, {"Size": 0}, {"Size": 0}, {"Size": 0}, {"Size": 7}, {"Size": 0}]
    layers, hist = layers_and_history(_config(history, D), sizes, Redactor())
    assert [
        (lyr["diffId"], lyr["historyIndex"], lyr["createdBy"], lyr["size"]) for lyr in layers
    ] == [
        (D[0], 0, "COPY busybox", 100),
        (D[1], 3, "WORKDIR /app", 0),
        (D[2], 4, "RUN make", 7),
    ]
    assert layers[2]["comment"] == "built"
    assert [h["emptyLayer"] for h in hist] == [False, True, True, False, False, True]


def test_layers_without_history_are_kept_unmapped() -> None:
    layers, hist = layers_and_history(_config([], D[:2]), None, Redactor())
    assert hist == [] and [lyr["historyIndex"] for lyr in layers] == [None, None]


def test_misaligned_history_sizes_are_not_guessed() -> None:
    layers, _ = layers_and_history(
        _config([{"created_by": "x"}], D[:1]), [{"Size": 1}, {"Size": 2}], Redactor()
    )
    assert layers[0]["size"] is None


@pytest.fixture
def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    return data


def test_the_example_manifest_is_valid(example: dict[str, Any]) -> None:
    assert validate_statement(example) == example["predicateType"]


def _failed(doc: dict[str, Any]) -> None:
    p = doc["predicate"]
    p["build"]["status"] = "failed"
    p["build"]["failure"] = {
        "step": 3,
        "instruction": "RUN x",
        "exitCode": 1,
        "message": "m",
        "logTail": "",
    }
    del p["image"], p["layers"], p["history"]


def _set(path: str, value: Any) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return edit


def _failed_keeping_image(doc: dict[str, Any]) -> None:
    kept = {k: copy.deepcopy(doc["predicate"][k]) for k in ("image", "layers", "history")}
    _failed(doc)
    doc["predicate"].update(kept)


VALID = [
    ("failed-build", _failed),
    (
        "large-file-list",
        lambda d: (
            d["predicate"]["inputs"]["context"].pop("files"),
            d["predicate"]["inputs"]["context"].update(filesBlob={"sha256": "a" * 64, "size": 9}),
        ),
    ),
    ("no-ci", _set("predicate/builder/ci", KeyError)),
    (
        "record-context-without-archive",
        lambda d: (
            d["predicate"]["build"].update(kind="image"),
            d["predicate"]["inputs"]["context"].pop("archiveDigest"),
            d["predicate"]["inputs"]["context"].pop("archiveSize"),
        ),
    ),
]
INVALID = [
    ("failed-with-image", lambda d: _failed_keeping_image(d)),
    ("failed-without-failure", lambda d: (_failed(d), d["predicate"]["build"].pop("failure"))),
    (
        "succeeded-with-failure",
        lambda d: d["predicate"]["build"].update(
            failure={"step": 1, "exitCode": 1, "message": "m", "logTail": ""}
        ),
    ),
    ("succeeded-without-image", lambda d: d["predicate"].pop("image")),
    ("short-image-id", _set("predicate/image/id", "sha256:abc")),
    ("upper-hex-diff-id", _set("predicate/layers/0/diffId", "sha256:" + "A" * 64)),
    ("time-not-rfc3339", _set("predicate/build/startedOn", "2026-12-04 15:44:33")),
    ("time-not-utc", _set("predicate/build/finishedOn", "2026-12-04T15:44:33+02:00")),
    ("size-as-string", _set("predicate/layers/0/size", "44")),
    ("float-duration", _set("predicate/steps/0/durationMs", 1.5)),
    ("file-without-digest", _set("predicate/inputs/context/files/0/sha256", KeyError)),
    ("secret-with-value", _set("predicate/inputs/buildArgs/1/value", "plain")),
    ("secret-without-salt", _set("predicate/inputs/buildArgs/1/salt", KeyError)),
    ("bad-status", _set("predicate/build/status", "ok")),
    (
        "dockerfile-build-without-archive-digest",
        lambda d: (
            d["predicate"]["inputs"]["context"].pop("archiveDigest"),
            d["predicate"]["inputs"]["context"].pop("archiveSize"),
        ),
    ),
    ("archive-size-without-digest", _set("predicate/inputs/context/archiveDigest", KeyError)),
    ("subject-not-hex", _set("subject/0/digest/sha256", "xyz")),
    ("log-without-size", _set("predicate/steps/0/log/size", KeyError)),
    (
        "both-file-lists",
        lambda d: d["predicate"]["inputs"]["context"].update(
            filesBlob={"sha256": "a" * 64, "size": 9}
        ),
    ),
]


@pytest.mark.parametrize(("name", "edit"), VALID, ids=[v[0] for v in VALID])
def test_valid_variants(example: dict[str, Any], name: str, edit: Any) -> None:
    edit(example)
    assert validate_statement(example) == example["predicateType"]


@pytest.mark.parametrize(("name", "edit"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_variants_are_rejected(example: dict[str, Any], name: str, edit: Any) -> None:
    edit(example)
    with pytest.raises(SchemaError):
        validate_statement(example)
