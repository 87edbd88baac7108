"""The text of `escrow diff` lists at most CONTEXT_LINES_SHOWN context files, then "… N
more": a daily build whose 3,000 generated files all changed buried the Dockerfile, steps,
image and layers sections under thousands of lines. `--json` still lists every file."""

from __future__ import annotations

from typing import Any

from escrow.rebuild.manifests import CONTEXT_LINES_SHOWN, Side, diff_manifests, render_diff

from .test_diff_reported import predicate


def _pred(tree: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    pred = predicate()
    pred["inputs"]["context"] = {"treeDigest": tree, "files": files}
    return pred


def _file(i: int, digest: str) -> dict[str, Any]:
    return {"path": f"gen/f{i:04d}.txt", "type": "file", "mode": 0o644, "size": 1, "sha256": digest}


def test_many_changed_files_are_cut_short_in_the_text_not_in_json() -> None:
    n = 300
    a = _pred("0" * 64, [_file(i, "2" * 64) for i in range(n)])
    b = _pred("9" * 64, [_file(i, "3" * 64) for i in range(n)])
    doc = diff_manifests(Side(1, a), Side(2, b))
    assert len(doc["inputs"]["context"]["changed"]) == n
    text = render_diff(doc)
    listed = [line for line in text.splitlines() if line.startswith("    changed  gen/")]
    assert len(listed) == CONTEXT_LINES_SHOWN
    assert f"    … {n - CONTEXT_LINES_SHOWN} more (`--json` lists every file)" in text
    assert text.index(" more (`--json`") < text.index("\nSteps\n") < text.index("\nImage\n")


def test_a_few_changed_files_are_all_listed() -> None:
    a = _pred("0" * 64, [_file(i, "2" * 64) for i in range(3)])
    b = _pred("9" * 64, [_file(i, "3" * 64) for i in range(3)])
    text = render_diff(diff_manifests(Side(1, a), Side(2, b)))
    assert text.count("    changed  gen/") == 3 and " more (" not in text
