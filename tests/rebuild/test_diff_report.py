"""``escrow diff`` as an engineer reads it: what changed is named, not hidden by cutting a
long value, by a layer inserted earlier, or by an equal size; and what to do is said."""

from __future__ import annotations

import hashlib
from typing import Any

from escrow.rebuild.compare import compare_config, layer_pairs

from .test_diff_reported import diff, predicate


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _image(layers: list[str], **config: Any) -> dict[str, Any]:
    """A predicate whose layers and history are made by the commands ``layers``."""
    pred = predicate(
        layers=[{"diffId": _digest(c), "createdBy": c} for c in layers],
        history=[{"createdBy": c, "created": "2025-01-01T00:00:00Z"} for c in layers],
    )
    pred["image"] = {"id": _digest("\n".join(layers)), "config": config}
    return pred


LONG_LABELS = {
    "org.opencontainers.image.title": "escrow example app",
    "org.opencontainers.image.vendor": "escrow",
}


def test_a_label_added_beside_long_ones_is_named() -> None:
    a = _image(["COPY x"], Labels=dict(LONG_LABELS))
    b = _image(["COPY x"], Labels={**LONG_LABELS, "team": "x"})
    b["image"]["id"] = "sha256:" + "b" * 64
    _doc, text = diff(a, b)
    assert 'config.Labels: team: (not set) -> "x"' in text, text


def test_an_env_item_that_changed_is_named() -> None:
    env = [f"VAR{i}=some-long-value-{i}" for i in range(6)]
    a = _image(["COPY x"], Env=[*env, "MODE=debug"])
    b = _image(["COPY x"], Env=[*env, "MODE=production"])
    b["image"]["id"] = "sha256:" + "b" * 64
    _doc, text = diff(a, b)
    assert 'config.Env: -"MODE=debug", +"MODE=production"' in text, text


def test_a_long_command_changed_at_its_end_shows_the_change() -> None:
    head = '|1 GREETING=hello /bin/sh -c chmod 0755 /app/app.sh && echo "${GREETING}" > '
    a, b = _image([head + "/app/greeting"]), _image([head + "/app/greeting2"])
    _doc, text = diff(a, b)
    (line,) = [x for x in text.splitlines() if "history[0].createdBy" in x]
    assert "/app/greeting2" in line, line
    assert line.count("/app/greeting") == 2, line


def test_without_files_each_differing_layer_says_to_add_files() -> None:
    a, b = _image(["COPY a"]), _image(["COPY b"])
    _doc, text = diff(a, b)
    assert "(diff IDs differ; files not compared; add --files)" in text, text


def test_a_layer_inserted_by_another_base_image_does_not_shift_the_others() -> None:
    steps = ["WORKDIR /app", "COPY app.sh .", "RUN chmod 0755 app.sh"]
    a = _image(["COPY busybox", *steps])
    b = _image(["COPY busybox", "RUN echo one > /etc/basever", *steps])
    for pred in (a, b):  # the same steps, but their diff IDs differ (times)
        for layer in pred["layers"][1:]:
            layer["diffId"] = "sha256:" + layer["diffId"][-63:] + str(len(pred["layers"]))
    doc, text = diff(a, b)
    layers = doc["image"]["layers"]
    assert [(x["index"], x.get("rebuiltIndex"), x.get("onlyIn")) for x in layers] == [
        (0, None, None),
        (1, None, 2),
        (1, 2, None),
        (2, 3, None),
        (3, 4, None),
    ]
    assert "layer 1: only in entry 2  RUN echo one > /etc/basever" in text, text
    assert "layer 3 -> 4: different  RUN chmod 0755 app.sh" in text, text
    history = [c for c in doc["image"]["config"] if c["field"].startswith("history")]
    assert [(c["field"], c.get("onlyIn")) for c in history] == [("history[1]", 2)], history
    # `escrow diff --files` reads the layers it pairs
    assert layer_pairs(a, b, align=True)[2] == (a["layers"][1]["diffId"], b["layers"][2]["diffId"])


def test_a_rebuild_still_compares_layers_and_history_by_position() -> None:
    a = _image(["COPY busybox", "RUN x"])
    b = _image(["COPY busybox", "RUN y", "RUN x"])
    fields = [c.field for c in compare_config(a, b)]
    assert fields == ["history[1].createdBy", "history[2]"], fields


def test_same_size_content_names_the_digests() -> None:
    from escrow.rebuild.manifests import render_layers

    entry = {"type": "file", "mode": 0o644, "uid": 0, "gid": 0, "size": 13}
    layer = {
        "index": 2,
        "verdict": "different",
        "differences": [
            {
                "path": "/stamp",
                "kind": "content",
                "original": {**entry, "sha256": "15f42ae9ee0f" + "0" * 52},
                "rebuilt": {**entry, "sha256": "282d872b7b87" + "0" * 52},
            }
        ],
    }
    (_, line) = render_layers([layer], True)
    assert line.endswith("/stamp  13 bytes, sha256 15f42ae9ee0f… -> 282d872b7b87…"), line


def test_an_entry_without_image_is_named() -> None:
    a = predicate()
    b = predicate(image=None)
    b["build"]["status"] = "failed"
    _doc, text = diff(a, b)
    assert "not compared: entry 2 records no image" in text, text
