"""escrow ledger as the README describes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def test_consistency_from_a_foreign_checkpoint_with_json_prints_one_document(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: `escrow ledger consistency --from saved.checkpoint --json` printed the
    JSON document only when the log did not extend a genuine checkpoint; a checkpoint
    not signed by the log key (exit 1 all the same) left stdout empty."""
    own = cli(["ledger", "checkpoint"])
    assert own.exit_code == 0, own.stderr
    saved = tmp_path / "saved.checkpoint"
    saved.write_text(own.stdout)
    ok = cli(["ledger", "consistency", "--from", str(saved), "--json"])
    assert ok.exit_code == 0, ok.stderr
    assert ok.json()["consistent"] is True

    # a checkpoint of another log: its own origin, signed by another key
    other = tmp_path / "other-home"
    monkeypatch.setenv("ESCROW_HOME", str(other))
    assert cli(["init"]).exit_code == 0
    foreign = tmp_path / "foreign.checkpoint"
    foreign.write_text(cli(["ledger", "checkpoint"]).stdout)
    monkeypatch.setenv("ESCROW_HOME", str(escrow_home))

    r = cli(["ledger", "consistency", "--from", str(foreign), "--json"])
    assert r.exit_code == 1, r.stderr
    doc = r.json()
    assert doc["consistent"] is False
    assert "The checkpoint is for the log" in doc["error"]
    assert "The checkpoint is for the log" in r.stderr
