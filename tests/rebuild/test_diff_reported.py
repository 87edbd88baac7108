"""``escrow diff``: reported bugs — `escrow record` commands, layers and history on one side
only, unset values, secret build args."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest

from escrow.rebuild.layers import LayerIndex
from escrow.rebuild.manifests import Side, diff_manifests, render_diff

from .tarkit import E, layer

TREE = "0" * 64


def predicate(**over: Any) -> dict[str, Any]:
    """A small build-manifest predicate (a dockerfile build with an image)."""
    pred: dict[str, Any] = {
        "build": {
            "id": "b",
            "project": "p",
            "kind": "dockerfile",
            "status": "succeeded",
            "startedOn": "2025-01-01T00:00:00Z",
        },
        "inputs": {
            "context": {"treeDigest": TREE},
            "recipe": {"path": "Dockerfile", "sha256": "1" * 64},
            "buildArgs": [],
            "labels": [],
            "baseImages": [],
        },
        "steps": [{"index": 1, "instruction": "FROM base", "exitCode": 0}],
        "image": {"id": "sha256:" + "a" * 64, "config": {}},
        "layers": [],
        "history": [],
    }
    pred.update(over)
    return pred


def secret(name: str, salt: str, sha: str) -> dict[str, Any]:
    return {"name": name, "secret": True, "salt": salt, "sha256": sha}


def diff(a: dict[str, Any], b: dict[str, Any], source: Any = None) -> tuple[dict[str, Any], str]:
    doc = diff_manifests(Side(1, a), Side(2, b), source=source)
    return doc, render_diff(doc)


# ---------------------------------------------------------------------------
# 1. `escrow record` entries: argv, working directory, exit code


def test_two_recorded_commands_report_argv_cwd_and_exit_code(
    cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    assert cli(["record", "--", "sh", "-c", "echo out; exit 7"]).exit_code == 7
    monkeypatch.chdir(second)
    assert cli(["record", "--", "sh", "-c", "echo hi"]).exit_code == 0
    r = cli(["diff", "1", "2", "--json"])
    assert r.exit_code == 0, r.stderr
    changes = {c["field"]: (c["original"], c["rebuilt"]) for c in r.json()["command"]}
    assert changes == {
        "command.argv": (["sh", "-c", "echo out; exit 7"], ["sh", "-c", "echo hi"]),
        "command.cwd": (str(first), str(second)),
        "command.exitCode": (7, 0),
    }
    text = cli(["diff", "1", "2"]).stdout
    assert "command: sh -c 'echo out; exit 7' -> sh -c 'echo hi'" in text, text
    assert f"working directory: {first} -> {second}" in text, text
    assert "exit code: 7 -> 0" in text, text
    assert "same instructions, same exit codes" not in text, text  # no steps to compare


def test_the_same_command_twice_says_so() -> None:
    command = {"argv": ["make"], "cwd": "/src", "exitCode": 0, "inputsChanged": False}
    a = predicate(steps=[], command=command)
    doc, text = diff(a, copy.deepcopy(a))
    assert doc["command"] == []
    assert "same command line, working directory and exit code" in text, text


def test_a_command_against_a_dockerfile_build_names_the_command_as_one_sided() -> None:
    command = {"argv": ["make"], "cwd": "/src", "exitCode": 0, "inputsChanged": False}
    doc, text = diff(predicate(steps=[], command=command), predicate())
    (change,) = doc["command"]
    assert change["field"] == "command" and change["onlyIn"] == 1
    assert "command: only in entry 1: make" in text, text


def test_a_dockerfile_build_has_no_command_section() -> None:
    doc, text = diff(predicate(), predicate())
    assert doc["command"] is None
    assert "Command" not in text
    assert "same instructions, same exit codes" in text


# ---------------------------------------------------------------------------
# 2. layers and history items on one side only


def _layers(n: int, prefix: str = "") -> list[dict[str, Any]]:
    return [{"diffId": f"sha256:{prefix}{i:063d}", "createdBy": f"RUN step {i}"} for i in range(n)]


def _history(n: int) -> list[dict[str, Any]]:
    return [{"createdBy": f"RUN step {i}", "created": "2025-01-01T00:00:00Z"} for i in range(n)]


def _images(la: int, lb: int) -> tuple[dict[str, Any], dict[str, Any]]:
    a = predicate(layers=_layers(la), history=_history(la))
    b = predicate(layers=_layers(lb), history=_history(lb))
    b["image"] = {"id": "sha256:" + "b" * 64, "config": {}}
    return a, b


def test_layers_in_one_image_only_are_reported_as_such() -> None:
    a, b = _images(5, 3)
    doc, text = diff(a, b)
    layers = doc["image"]["layers"]
    assert [x.get("onlyIn") for x in layers] == [None, None, None, 1, 1]
    assert all("note" not in x for x in layers[3:]), layers
    assert "layer 3: only in entry 1" in text, text
    assert "layer 4: only in entry 1" in text, text
    assert "files not compared" not in text, text
    doc, text = diff(b, a)
    assert [x.get("onlyIn") for x in doc["image"]["layers"]] == [None, None, None, 2, 2]
    assert "layer 4: only in entry 2" in text, text


class OneFileLayers:
    def index(self, side: str, diff_id: str) -> LayerIndex:
        return LayerIndex.of(io.BytesIO(layer([E("f", b"x", mode=0o644)])))


def test_with_files_a_layer_in_one_image_only_lists_its_files_without_rebuild_wording() -> None:
    a, b = _images(3, 4)
    a["layers"][0]["diffId"] = "sha256:" + "e" * 64  # compared file by file: no difference
    doc, text = diff(a, b, source=OneFileLayers())
    extra = doc["image"]["layers"][3]
    assert extra["onlyIn"] == 2
    assert [(d["path"], d["kind"]) for d in extra["differences"]] == [("/f", "added")]
    assert "layer 3: only in entry 2" in text, text
    assert "rebuild" not in text, text


def test_history_items_in_one_image_only_are_reported_readably() -> None:
    a, b = _images(6, 5)
    a["history"][5]["emptyLayer"] = True
    doc, text = diff(a, b)
    (item,) = [c for c in doc["image"]["config"] if c["field"] == "history[5]"]
    assert item["onlyIn"] == 1
    assert "history[5]: only in entry 1: RUN step 5 (empty layer)" in text, text
    assert "-> null" not in text and "null ->" not in text, text


# ---------------------------------------------------------------------------
# 3. no Python None in the report


def test_unset_values_read_as_not_set() -> None:
    a, b = predicate(), predicate()
    b["inputs"]["buildArgs"] = [{"name": "GREETING", "value": "bonjour"}]
    a["inputs"]["labels"] = [{"name": "extra", "value": "1"}]
    b["inputs"]["target"] = "final"
    b["image"] = {"id": "sha256:" + "b" * 64, "config": {"User": "app"}}
    doc, text = diff(a, b)
    assert "build arg GREETING: (not set) -> bonjour" in text, text
    assert "label extra: 1 -> (not set)" in text, text
    assert "target: (not set) -> final" in text, text
    assert 'config.User: (not set) -> "app"' in text, text
    assert "None" not in text and "null" not in text, text
    # the JSON keeps null for a value that is not set
    assert doc["inputs"]["buildArgs"] == [
        {"name": "GREETING", "original": None, "rebuilt": "bonjour", "change": "added"}
    ]


# ---------------------------------------------------------------------------
# 4. secret build args


def test_a_secret_set_in_both_builds_is_named_as_not_comparable() -> None:
    a, b = predicate(), predicate()
    a["inputs"]["buildArgs"] = [secret("API_TOKEN", "1" * 32, "2" * 64)]
    b["inputs"]["buildArgs"] = [secret("API_TOKEN", "3" * 32, "4" * 64)]
    doc, text = diff(a, b)
    assert doc["inputs"]["buildArgs"] == [
        {
            "name": "API_TOKEN",
            "original": "[secret API_TOKEN]",
            "rebuilt": "[secret API_TOKEN]",
            "change": "not-comparable",
            "secret": True,
        }
    ]
    assert "build arg API_TOKEN: secret, not comparable (salted hashes)" in text, text
    assert "Inputs\n  unchanged" not in text


def test_one_secret_recording_against_itself_is_unchanged() -> None:
    a = predicate()
    a["inputs"]["buildArgs"] = [secret("API_TOKEN", "1" * 32, "2" * 64)]
    doc, text = diff(a, copy.deepcopy(a))
    assert doc["inputs"]["buildArgs"] == []
    assert "Inputs\n  unchanged" in text, text


def test_a_secret_added_or_removed_is_reported_as_such() -> None:
    a, b = predicate(), predicate()
    b["inputs"]["buildArgs"] = [secret("API_TOKEN", "1" * 32, "2" * 64)]
    a["inputs"]["labels"] = [secret("DEPLOY_PASSWORD", "1" * 32, "2" * 64)]
    doc, text = diff(a, b)
    (arg,) = doc["inputs"]["buildArgs"]
    assert arg["change"] == "added" and arg["secret"] is True
    (label,) = doc["inputs"]["labels"]
    assert label["change"] == "removed" and label["secret"] is True
    assert "build arg API_TOKEN: (not set) -> set (secret)" in text, text
    assert "label DEPLOY_PASSWORD: set (secret) -> (not set)" in text, text


def test_a_step_without_an_exit_code_reads_none() -> None:
    a, b = predicate(), predicate()
    a["steps"] = [{"index": 1, "instruction": "FROM base", "exitCode": None}]
    b["steps"] = [{"index": 1, "instruction": "FROM base", "exitCode": 1}]
    _, text = diff(a, b)
    assert "step 1: exit code (none) -> 1: FROM base" in text, text


# ---------------------------------------------------------------------------
# inputs one entry does not record


def test_a_capture_without_context_or_dockerfile_says_what_it_does_not_record() -> None:
    """A capture (no --context, no -f) against a build read "context: tree digest changed
    (the recorded file list of one entry is not available)" and "Dockerfile: changed"."""
    capture = predicate()
    capture["inputs"] = {**capture["inputs"], "context": None, "recipe": None}
    doc, text = diff(predicate(), capture)
    assert doc["inputs"]["context"]["note"] == "entry 2 records no build context"
    assert "  context: entry 2 records no build context" in text, text
    assert "  Dockerfile: entry 2 records no Dockerfile" in text, text
    assert "tree digest changed" not in text and "Dockerfile: changed" not in text


def test_the_same_dockerfile_text_from_another_file_is_named() -> None:
    """Only the Dockerfile's hash was compared: `-f Dockerfile.prod` against `Dockerfile`
    with the same text read as "same"."""
    prod = predicate()
    prod["inputs"] = {**prod["inputs"], "recipe": {"path": "Dockerfile.prod", "sha256": "1" * 64}}
    doc, text = diff(predicate(), prod)
    assert not doc["inputs"]["recipe"]["same"]
    assert "Dockerfile: the same text, read from Dockerfile and then Dockerfile.prod" in text, text
