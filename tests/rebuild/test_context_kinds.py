"""`escrow rebuild --context DIR` with the wrong context: the text names the kind of each
change (content, mode, type, link; missing, extra), as the JSON does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from escrow.capture.context import make_context
from escrow.rebuild.verify import ContextMismatch, check_context

from .conftest import Recorder
from .test_rebuild import BASE, rebuild


def _record(ctx: Path) -> dict[str, Any]:
    """A predicate recording ``ctx`` as its build context (inline file list)."""
    with make_context(ctx, ctx / "Dockerfile", keep_archive=False) as archive:
        files, digest = archive.files, archive.tree_digest
    return {
        "inputs": {
            "context": {"treeDigest": digest, "files": files},
            "recipe": {"path": "Dockerfile"},
        }
    }


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _mismatch(predicate: dict[str, Any], ctx: Path) -> ContextMismatch:
    with pytest.raises(ContextMismatch) as info:
        check_context(predicate, ctx, ctx / "Dockerfile", None)
    return info.value


def _edit(ctx: Path) -> None:
    """One change of each kind."""
    (ctx / "app.sh").write_text("echo two\n")  # content
    os.chmod(ctx / "run.sh", 0o755)  # mode
    (ctx / "current").unlink()
    os.symlink("app.sh", ctx / "current")  # link target
    (ctx / "data").unlink()
    (ctx / "data").mkdir()  # file -> folder: type (and the folder holds a new file)
    (ctx / "data" / "x").write_text("x\n")
    (ctx / "keep.txt").unlink()  # missing
    (ctx / "new.txt").write_text("new\n")  # extra


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    _write(
        ctx,
        {
            "Dockerfile": "FROM scratch\nCOPY . /app\n",
            "app.sh": "echo one\n",
            "run.sh": "echo run\n",
            "data": "data\n",
            "keep.txt": "same\n",
        },
    )
    os.chmod(ctx / "run.sh", 0o644)
    os.symlink("keep.txt", ctx / "current")
    return ctx


def test_the_message_names_the_kind_of_each_change(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    predicate = _record(ctx)
    _edit(ctx)
    e = _mismatch(predicate, ctx)
    changed = {c["path"]: c["kinds"] for c in e.changes["changed"]}
    assert changed == {
        "app.sh": ["content"],
        "current": ["link"],
        "data": ["type", "content", "mode"],
        "run.sh": ["mode"],
    }
    assert e.changes["missing"] == ["keep.txt"] and e.changes["extra"] == ["data/x", "new.txt"]
    text = e.diagnostics()
    assert (
        "changed: app.sh (content), current (link), data (type, content, mode), run.sh (mode); "
        "missing: keep.txt; extra: data/x, new.txt. Restore the files"
    ) in text, text
    # every changed path with its kinds, in the JSON's words
    for path, kinds in changed.items():
        assert f"{path} ({', '.join(kinds)})" in text


def test_a_long_list_says_how_many_more(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    _write(ctx, {"Dockerfile": "FROM scratch\n", **{f"f{i:02}": "a\n" for i in range(12)}})
    predicate = _record(ctx)
    for i in range(12):
        (ctx / f"f{i:02}").write_text("b\n")
    for i in range(11):
        (ctx / f"n{i:02}").write_text("n\n")
    text = _mismatch(predicate, ctx).diagnostics()
    assert "f09 (content), f10 (content), f11 (content)" not in text  # ten named
    assert "f09 (content) and 2 more; extra: n00, " in text, text
    assert "n09 and 1 more. Restore" in text, text


@pytest.mark.docker
@pytest.mark.slow
def test_the_cli_text_says_what_the_json_says(cli: Any, recorder: Recorder) -> None:
    built = recorder.build(
        {
            "Dockerfile": BASE + "COPY . /app\n",
            "app.sh": "echo one\n",
            "run.sh": "echo run\n",
            "keep.txt": "same\n",
        }
    )
    (built.context / "app.sh").write_text("echo two\n")
    os.chmod(built.context / "run.sh", 0o700)
    (built.context / "keep.txt").unlink()
    (built.context / "new.txt").write_text("new\n")
    as_json = rebuild(cli, recorder, built.index, built.context)
    assert as_json.exit_code == 2
    doc = as_json.json()
    assert doc["context"]["changed"] == [
        {"path": "app.sh", "kinds": ["content"]},
        {"path": "run.sh", "kinds": ["mode"]},
    ]
    text = cli(["rebuild", str(built.index), "--context", str(built.context), "-q"])
    assert text.exit_code == 2
    assert (
        "differs from the recorded one: changed: app.sh (content), run.sh (mode); "
        "missing: keep.txt; extra: new.txt. Restore the files"
    ) in text.stderr, text.stderr
    assert doc["error"] in text.stderr  # the same sentence in both
