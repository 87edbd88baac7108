"""Checkpoints an auditor kept, months later: `escrow ledger consistency --from FILE` on
the copies people actually keep (a BOM from an editor, CRLF line endings, the last line
ending lost, blank lines after it, other keys' signatures), and on checkpoints that are
not this log's today (another log's, one larger than the log): each a clear answer and
its documented exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv

from escrow.ledger.checkpoint import parse_note, sign_checkpoint, sign_note
from escrow.signing.keys import SigningKey


@pytest.fixture
def saved(cli_env: LedgerEnv, tmp_path: Path, cli: Any) -> str:
    """The checkpoint of a log of 4 entries, as `escrow ledger checkpoint` printed it."""
    with cli_env.open() as lg:
        for n in range(3):
            lg.append(cli_env.envelope(n))
    r = cli(["ledger", "checkpoint"])
    assert r.exit_code == 0, r.stderr
    return str(r.stdout)


def _consistency(cli: Any, path: Path) -> Any:
    return cli(["ledger", "consistency", "--from", str(path)])


@pytest.mark.parametrize(
    ("name", "keep"),
    [
        ("bom", lambda note: "\ufeff" + note),
        ("crlf", lambda note: note.replace("\n", "\r\n")),
        ("bom-crlf", lambda note: "\ufeff" + note.replace("\n", "\r\n")),
        ("no-final-newline", lambda note: note.rstrip("\n")),
        ("blank-lines-after", lambda note: note + "\n\n"),
        ("spaces-after", lambda note: note.rstrip("\n") + "  \n"),
    ],
)
def test_a_saved_checkpoint_as_editors_and_shells_keep_it(
    saved: str, tmp_path: Path, cli: Any, name: str, keep: Any
) -> None:
    """None of these change what is signed (the note's text, its signature line): the
    log extends the checkpoint (exit 0), as it does the file as printed."""
    path = tmp_path / f"{name}.checkpoint"
    path.write_bytes(keep(saved).encode("utf-8"))
    r = _consistency(cli, path)
    assert r.exit_code == 0, r.stderr
    assert "The log (size 4) extends the checkpoint of size 4." in r.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_saved_checkpoint_with_a_witness_signature(
    saved: str, tmp_path: Path, cli: Any, where: str
) -> None:
    """C2SP signed notes may carry signatures by other keys (witnesses): they are passed
    over, before or after the log's own."""
    body, _ = parse_note(saved)
    witness = sign_note(body, SigningKey.generate(), "witness.example/w1").split("\n\n", 1)[1]
    head, own = saved.split("\n\n", 1)
    note = f"{head}\n\n{witness}{own}" if where == "before" else saved + witness
    path = tmp_path / "witnessed.checkpoint"
    path.write_text(note)
    r = _consistency(cli, path)
    assert r.exit_code == 0, r.stderr


def test_a_checkpoint_of_another_log(
    saved: str, cli_env: LedgerEnv, tmp_path: Path, cli: Any
) -> None:
    """Another log's checkpoint (its own origin, signed by its own key) is named as such:
    exit 1, its origin and this log's, not a bad signature."""
    other = SigningKey.generate()
    origin = "escrow.local/ledger/0badc0de"
    path = tmp_path / "other.checkpoint"
    path.write_text(sign_checkpoint(origin, 2, b"\x11" * 32, other, origin))
    with cli_env.open() as lg:
        ours = lg.origin

    r = _consistency(cli, path)
    assert r.exit_code == 1
    assert f"The checkpoint is for the log '{origin}', not this log '{ours}'" in r.stderr
    assert "not signed" not in r.stderr

    r = cli(["ledger", "consistency", "--from", str(path), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["consistent"] is False and "is for the log" in doc["error"]


def test_a_checkpoint_larger_than_the_log(
    saved: str, cli_env: LedgerEnv, tmp_path: Path, cli: Any
) -> None:
    """A checkpoint of this log at a size it does not reach (the log was cut back): exit 1,
    both sizes named."""
    with cli_env.open() as lg:
        origin = lg.origin
    path = tmp_path / "future.checkpoint"
    path.write_text(sign_checkpoint(origin, 9, b"\x22" * 32, cli_env.log_key, origin))
    r = _consistency(cli, path)
    assert r.exit_code == 1
    assert "The log holds 4 entries, fewer than the 9 of the checkpoint" in r.stderr


def test_a_checkpoint_whose_text_was_changed(saved: str, tmp_path: Path, cli: Any) -> None:
    """This log's origin, its signature line, another root: exit 1, not signed."""
    origin, size, root, rest = saved.split("\n", 3)
    other_root = root[:-2] + ("A=" if root[-2] != "A" else "B=")
    path = tmp_path / "edited.checkpoint"
    path.write_text(f"{origin}\n{size}\n{other_root}\n{rest}")
    r = _consistency(cli, path)
    assert r.exit_code == 1
    assert "is not signed by the log key" in r.stderr


def test_a_file_that_holds_no_signature(saved: str, tmp_path: Path, cli: Any) -> None:
    """Only the note's text (its signature lines cut off): exit 2, one sentence."""
    path = tmp_path / "body.checkpoint"
    path.write_text(saved.split("\n\n", 1)[0] + "\n\n")
    r = _consistency(cli, path)
    assert r.exit_code == 2
    assert "is not a checkpoint note" in r.stderr and "Traceback" not in r.stderr
