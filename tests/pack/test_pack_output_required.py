"""``escrow pack --help`` says -o is required; without it, one sentence and exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import option_help


def test_pack_help_marks_output_required(cli: Any) -> None:
    r = cli(["pack", "--help"])
    assert r.exit_code == 0, r.stderr
    text = option_help(r.stdout, "-o, --output")
    assert "[required]" in text
    assert "FILE.pdf" in text


@pytest.mark.parametrize(
    "args",
    [["--project", "x"], ["--project", "x", "--render-only"], []],
    ids=["plain", "render-only", "no-options"],
)
def test_without_output_one_sentence_exit_2(cli: Any, escrow_home: Path, args: list[str]) -> None:
    r = cli(["pack", *args])
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.strip() == "escrow: error: Say where to write the pack with -o FILE.pdf."


def test_pack_verify_needs_no_output(cli: Any, tmp_path: Path) -> None:
    """-o belongs to making a pack; `pack verify` must not ask for it."""
    f = tmp_path / "not-a-pack.pdf"
    f.write_bytes(b"hello")
    r = cli(["pack", "verify", str(f)])
    assert r.exit_code == 1, r.stderr
    assert "Say where to write" not in r.stderr
    assert "not a readable PDF" in r.stderr
