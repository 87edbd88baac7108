"""Counts in messages agree with their noun ("1 statement", "2 files"), as everywhere else
in escrow: a few said "statement(s)", "file(s) are", "item(s)"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).parent.parent / "assets" / "build-manifest.example.json"


def test_sign_counts_its_statements(escrow_home: Path, cli: Any) -> None:
    r = cli(["sign"], input=EXAMPLE.read_text())
    assert r.exit_code == 0, r.stderr
    assert "Signed 1 statement with " in r.stderr, r.stderr


def test_schema_validate_counts_its_files(escrow_home: Path, cli: Any, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(EXAMPLE.read_text())
    bad.write_text(json.dumps({**json.loads(EXAMPLE.read_text()), "subject": []}))
    r = cli(["schema", "validate", str(good), str(bad)])
    assert r.exit_code == 1
    assert f"1 of 2 files is invalid: {bad}." in r.stderr, r.stderr
