"""Runtime config fields set to ``null`` (or left out) and to an empty list, map or string
mean the same to Docker, so `escrow diff` and `escrow rebuild` do not report them; real
differences, and empty-looking values that are not empty (``[""]``), still are."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from escrow.rebuild.compare import Verdict, compare_config, compare_images
from escrow.rebuild.manifests import Side, diff_manifests, render_diff

from .conftest import Recorder

ASSETS = Path(__file__).parent.parent / "assets"

#: each runtime config field treated as unset when empty, and its empty value
EMPTY = {
    "Env": [],
    "Cmd": [],
    "Entrypoint": [],
    "WorkingDir": "",
    "User": "",
    "ExposedPorts": {},
    "Volumes": {},
    "Labels": {},
    "StopSignal": "",
    "Shell": [],
    "OnBuild": [],
}


def manifest() -> dict[str, Any]:
    doc = json.loads((ASSETS / "build-manifest.example.json").read_text())
    return dict(doc["predicate"])


def pair(key: str, a: Any, b: Any, *, absent: bool = False) -> tuple[dict[str, Any], ...]:
    """Two manifests of one image but for ``config[key]``: ``a`` and ``b`` (or no key)."""
    first, second = manifest(), manifest()
    second["image"]["id"] = "sha256:" + "9" * 64
    first["image"]["config"][key] = a
    if absent:
        second["image"]["config"].pop(key, None)
    else:
        second["image"]["config"][key] = b
    return first, second


@pytest.mark.parametrize("key", sorted(EMPTY))
def test_null_and_empty_compare_equal(key: str) -> None:
    for a, b in ((None, EMPTY[key]), (EMPTY[key], None)):
        first, second = pair(key, a, b)
        assert compare_config(first, second) == [], (key, a, b)
        result = compare_images(first, second, None)
        assert result.config == [] and result.verdict is Verdict.IDENTICAL
    # an OCI config leaves an empty field out altogether
    first, second = pair(key, EMPTY[key], None, absent=True)
    assert compare_config(first, second) == []


def test_labels_null_vs_empty_is_not_in_the_diff_report() -> None:
    first, second = pair("Labels", None, {})
    doc = diff_manifests(Side(1, first), Side(2, second))
    assert doc["image"]["config"] == []
    assert doc["image"]["verdict"] == "identical"
    assert "config.Labels" not in render_diff(doc)


@pytest.mark.parametrize(
    ("key", "a", "b"),
    [
        ("Labels", None, {"team": "qa"}),
        ("Labels", {}, {"team": "qa"}),
        ("Env", [], ["A=1"]),
        ("Cmd", None, ["sh"]),
        ("Cmd", [], ["sh"]),
        # ENTRYPOINT [""] is a value a recipe wrote, not a spelling of "nothing"
        ("Entrypoint", None, [""]),
        ("Entrypoint", [], [""]),
        ("WorkingDir", "", "/app"),
        ("User", None, "1000"),
        ("ExposedPorts", {}, {"80/tcp": {}}),
        ("Volumes", None, {"/data": {}}),
        # Healthcheck is an object with its own conventions: compared as recorded
        ("Healthcheck", None, {}),
    ],
)
def test_real_differences_are_still_reported_as_recorded(key: str, a: Any, b: Any) -> None:
    first, second = pair(key, a, b)
    diffs = compare_config(first, second)
    assert [(d.field, d.original, d.rebuilt) for d in diffs] == [(f"config.{key}", a, b)]
    assert compare_images(first, second, None).verdict is Verdict.DIFFERENT


# ---------------------------------------------------------------------------
# as a user meets it: a Dockerfile build and a `docker commit` of it, captured


def _docker(*args: str) -> str:
    return subprocess.run(
        ["/usr/bin/docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.docker
@pytest.mark.slow
def test_diff_of_a_build_and_its_committed_copy_has_no_labels_line(
    cli: Any, recorder: Recorder
) -> None:
    built = recorder.build(
        {
            "Dockerfile": "FROM escrow-test/base:latest\nCOPY hello.txt /hello.txt\n",
            "hello.txt": "hello\n",
        },
        name="built",
    )
    assert built.image_id is not None
    assert built.statement["predicate"]["image"]["config"]["Labels"] is None
    committed = recorder.tag("committed")
    container = _docker("create", built.tag)
    try:
        _docker("commit", container, committed)
    finally:
        _docker("rm", container)
    r = cli(["capture", committed, "--context", str(built.context), "--json"])
    assert r.exit_code == 0, r.stderr
    index = int(r.json()["index"])
    captured = cli(["show", str(index), "--json"]).json()["statement"]
    assert captured["predicate"]["image"]["config"]["Labels"] == {}  # what the engine wrote

    r = cli(["diff", str(built.index), str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    fields = [c["field"] for c in r.json()["image"]["config"]]
    assert not [f for f in fields if f.startswith("config.")], fields
    text = cli(["diff", str(built.index), str(index)])
    assert text.exit_code == 0, text.stderr
    assert "config." not in text.stdout, text.stdout  # no Labels line, nor any other
