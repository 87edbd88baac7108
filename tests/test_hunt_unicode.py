"""Unusual but legitimate names end to end: image tags at the edges of what the engine
takes, project names and recorded values in other scripts (CJK, right-to-left, emoji),
shown by `escrow log`, `escrow keys list` and `escrow diff` as they are — aligned, readable,
and unable to drive or reorder the reader's terminal."""

from __future__ import annotations

import copy
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "ledger"))

from ledger_helpers import manifest, raw_sign  # noqa: E402

from escrow.config import load_settings  # noqa: E402
from escrow.ledger.store import Ledger  # noqa: E402
from escrow.signing.keys import SigningKey  # noqa: E402
from tests.conftest import BASE_TAG  # noqa: E402


def _append(*statements: dict[str, Any]) -> list[int]:
    settings = load_settings()
    key = SigningKey.load(settings.key_path)
    out = []
    with Ledger.open(settings) as lg:
        for st in statements:
            entry, _ = lg.append(raw_sign(st, key))
            out.append(entry.index)
    return out


def _column(line: str, start: str) -> int:
    """The terminal column at which ``start`` begins in ``line`` (a wide character takes
    two columns, a combining mark none)."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in line[: line.index(start)]
    )


# -- image tags ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        # `Reference.parse` stripped the ends, so the check passed and the engine refused the
        # name after the build was sent: exit 3, "The Docker Engine failed the build:
        # invalid reference format", which blamed the machine for a typo
        ("hunt-uni-space:v1 ", "begins or ends with a space or line break"),
        ("hunt-uni-nl:v1\n", "begins or ends with a space or line break"),
        (
            "localhost:/hunt-uni-port",
            "names the registry host 'localhost:', which is not a host name",
        ),
        # refused before, but as "it does not name a repository", which says neither why
        (
            "hunt-uni-UPPER:v1",
            "has upper-case letters in its name, which the engine refuses (only the tag "
            "after the colon may have them)",
        ),
        (
            "hunt-uni-日本:v1",
            "has the character '日', which image names cannot hold (ASCII letters, digits "
            "and . _ - / : only)",
        ),
    ],
)
def test_a_tag_the_engine_refuses_is_named_before_anything_is_built(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, tag: str, reason: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nRUN echo hi\n")
    r = cli(["build", str(ctx), "-t", tag, "--no-deposit", "--json"])
    assert r.exit_code == 2, r.stderr
    assert f"escrow: error: The tag {tag!r} is not a valid image name: it {reason}." in r.stderr
    assert "Docker Engine" not in r.stderr and "phoenix build" not in r.stderr
    assert r.stdout == ""
    entries = cli(["log", "--json"]).json()["entries"]
    assert [e["kind"] for e in entries] == ["key-event"]  # nothing recorded


def test_tags_the_engine_takes_are_still_taken() -> None:
    from escrow.registry.reference import check_build_tag

    for tag in (
        "hunt-uni-a:V1_.-x",  # the tag may have upper case
        "Registry.Example.COM:5000/hunt-uni/a:1",  # and so may the host
        "my_host.local/hunt-uni:1",  # read by the engine as a path, docker.io/my_host.local/…
        "localhost:5000/hunt-uni:1",
        "[::1]:5000/hunt-uni:1",
        "hunt-uni__a:" + "a" * 128,
    ):
        check_build_tag(tag)


# -- the terminal --------------------------------------------------------------------------


def test_log_keeps_its_columns_under_wide_project_names(escrow_home: Path, cli: Any) -> None:
    """Regression: the PROJECT column was padded by characters, so a CJK or emoji name
    (two columns a character) pushed IMAGE and STATUS right, by a different amount on
    each row; an escaped control character did the same (``\\x1b`` is four columns)."""
    names = ["plain", "日本語プロジェ", "🎉party", "e\u0301te\u0301", "ctl\x1bname"]
    _append(*(manifest(i, project=p, tag="hunt-uni-log") for i, p in enumerate(names)))
    r = cli(["log"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].index("IMAGE") == lines[0].index("PROJECT") + 17
    image_col = _column(lines[0], "IMAGE")
    rows = [ln for ln in lines[1:] if "build-manifest" in ln]
    assert len(rows) == len(names)
    for row in rows:
        # the image column: the 12 hex digits after the project's padding
        image = row.split()[-2]
        assert _column(row, " " + image) + 1 == image_col, (row, lines[0])
    assert "ctl\\x1bname" in r.stdout and "\x1b" not in r.stdout


def test_a_bidi_override_in_a_project_cannot_reorder_the_terminal_line(
    escrow_home: Path, cli: Any
) -> None:
    """Regression: ``printable`` escaped control characters only; an explicit
    right-to-left override (U+202E) or isolate in a recorded project reached the terminal,
    where a bidi-aware terminal shows the rest of the row reversed (the audit pack shows
    the same characters as [U+202E]). Right-to-left text itself is printed as it is."""
    evil = "evil\u202eliaf\u2066x\u2069"
    (index,) = _append(manifest(1, project=evil, tag="hunt-uni-bidi"))
    _append(manifest(2, project="שלום עולם", tag="hunt-uni-bidi"))
    for args in (["log"], ["log", "--project", evil], ["verify", str(index)]):
        r = cli(args)
        assert r.exit_code == 0, (args, r.stderr)
        for c in ("\u202e", "\u2066", "\u2069"):
            assert c not in r.stdout + r.stderr, (args, r.stdout, r.stderr)
    r = cli(["log"])
    assert "evil\\u202eliaf\\u2066x\\u2069" in r.stdout
    assert "שלום עולם" in r.stdout


def test_diff_shows_a_label_in_another_script_as_written(escrow_home: Path, cli: Any) -> None:
    """Regression: the image configuration's changed values were written as JSON with
    ASCII escapes: a Hebrew label read ``"\\u05e9\\u05dc\\u05d5\\u05dd …"`` (and a long
    value was cut in the middle of an escape)."""
    a = manifest(1, project="hunt-uni-diff", tag="hunt-uni-diff")
    b = copy.deepcopy(manifest(2, project="hunt-uni-diff", tag="hunt-uni-diff"))
    a["predicate"]["image"]["config"]["Labels"] = {"note": "مرحبا 🙂"}
    b["predicate"]["image"]["config"]["Labels"] = {"note": "שלום עולם 日本", "ctl": "a\x1b[2Jb"}
    ia, ib = _append(a, b)
    r = cli(["diff", str(ia), str(ib)])
    assert r.exit_code in (0, 1), r.stderr
    assert 'note: "مرحبا 🙂" -> "שלום עולם 日本"' in r.stdout, r.stdout
    assert "\\u05e9" not in r.stdout
    assert "\x1b" not in r.stdout + r.stderr


def test_a_file_name_with_a_line_break_stays_on_its_line(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """Regression: `escrow diff` listed a changed context file named ``nl⏎name`` as two
    lines ("changed  nl" and "name (content)" at the left edge), and `escrow rebuild
    --context` named it across a line break: a file name could print a line that passed
    for another change ("⏎    removed  Dockerfile")."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY . /c/\n")
    tricky = "nl\n    removed  Dockerfile"
    (ctx / tricky).write_text("1")
    (ctx / "tab\there").write_text("1")
    (ctx / "日本語 ü.txt").write_text("1")
    first = cli(["build", str(ctx), "-t", "hunt-uni-nl:1", "--no-deposit", "--json"])
    assert first.exit_code == 0, first.stderr
    (ctx / tricky).write_text("2")
    (ctx / "tab\there").write_text("2")
    (ctx / "日本語 ü.txt").write_text("2")
    second = cli(["build", str(ctx), "-t", "hunt-uni-nl:2", "--no-deposit", "--json"])
    assert second.exit_code == 0, second.stderr
    a, b = first.json()["index"], second.json()["index"]
    r = cli(["diff", str(a), str(b)])
    assert r.exit_code in (0, 1), r.stderr
    lines = r.stdout.splitlines()
    assert "    changed  nl\\x0a    removed  Dockerfile (content)" in lines, r.stdout
    assert "    changed  tab\\x09here (content)" in lines
    assert "    changed  日本語 ü.txt (content)" in lines
    assert not any(line.startswith("    removed") for line in lines), r.stdout
    assert "context: 3 changed, 0 added, 0 removed" in r.stdout
    # --json keeps the names as they are
    js = cli(["diff", str(a), str(b), "--json"])
    assert tricky in {c["path"] for c in js.json()["inputs"]["context"]["changed"]}
    r = cli(["rebuild", str(a), "--context", str(ctx)])
    assert r.exit_code == 2, r.stderr
    message = next(line for line in r.stderr.splitlines() if "escrow: error:" in line)
    assert "changed: " in message and "nl\\x0a    removed  Dockerfile (content)" in message
    assert "tab\\x09here (content)" in message and "日本語 ü.txt (content)" in message
    for tag in ("hunt-uni-nl:1", "hunt-uni-nl:2"):
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
