"""Every ``--since-checkpoint``/``--from`` reads its file the same way: a file that is
not a checkpoint note is one sentence and exit 2 before anything is done (``escrow pack
--since-checkpoint`` read any text and failed later)."""

from __future__ import annotations

from pathlib import Path

import pytest

from escrow.errors import InputError
from escrow.ledger.checkpoint import read_checkpoint_file
from tests.conftest import run_cli


def test_a_saved_checkpoint_reads_back(escrow_home: Path, tmp_path: Path) -> None:
    r = run_cli(["ledger", "checkpoint"])
    assert r.exit_code == 0, r.stderr
    saved = tmp_path / "saved.checkpoint"
    saved.write_text(r.stdout, encoding="utf-8")
    assert read_checkpoint_file(saved, hint="h") == r.stdout


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("hello, I am no checkpoint\n", "is not a checkpoint note"),
        (b"\xff\xfe not utf-8", "not UTF-8 text"),
        (None, "No such file or directory"),
    ],
    ids=["not-a-note", "not-utf8", "missing"],
)
def test_what_is_not_a_checkpoint_is_one_sentence(
    tmp_path: Path, text: str | bytes | None, said: str
) -> None:
    path = tmp_path / "saved.checkpoint"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_checkpoint_file(path, hint="Give the right file.")
    assert said in e.value.message
    assert str(path) in e.value.message


@pytest.mark.parametrize(
    "words",
    [
        ["pack", "--project", "example", "-o", "{out}", "--since-checkpoint", "{bad}"],
        ["ledger", "consistency", "--from", "{bad}", "--json"],
        ["deposit", "import", "{out}", "--since-checkpoint", "{bad}"],
    ],
    ids=["pack", "ledger-consistency", "deposit-import"],
)
def test_each_command_refuses_a_file_that_is_no_checkpoint(
    escrow_home: Path, tmp_path: Path, words: list[str]
) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("shopping list\n", encoding="utf-8")
    out = tmp_path / "out.pdf"
    r = run_cli([w.format(out=out, bad=bad) for w in words])
    assert r.exit_code == 2, r.stderr + r.stdout
    assert f"{bad} is not a checkpoint note" in r.stderr, r.stderr
    assert not out.exists()
