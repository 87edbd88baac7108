"""A ledger restored from a backup older than a checkpoint already handed out (the log
went back in time): `escrow ledger consistency --from SAVED` exits 1 with a sentence
saying so, before and after new entries are appended over the old sizes, and its
--json document says why too (`consistent: false` and `error`)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv


@pytest.fixture
def restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LedgerEnv, Path]:
    """A ledger of 3 entries restored from its backup after a checkpoint of 6 was saved."""
    db = tmp_path / "db" / "ledger.db"
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{db}")
    backup = tmp_path / "backup.db"
    saved = tmp_path / "saved.checkpoint"
    with env.open() as lg:
        for n in range(2):
            lg.append(env.envelope(n))
        with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
            src.backup(dst)
        for n in range(2, 5):
            lg.append(env.envelope(n))
        saved.write_text(lg.checkpoint().note)
        assert lg.size() == 6
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    backup.rename(db)
    monkeypatch.setenv("ESCROW_HOME", str(env.home))
    monkeypatch.setenv("ESCROW_DB_URL", env.settings.db_url)
    for var in ("ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    return env, saved


def test_a_log_shorter_than_the_saved_checkpoint(
    restored: tuple[LedgerEnv, Path], cli: Any
) -> None:
    _, saved = restored

    r = cli(["ledger", "consistency", "--from", str(saved)])
    assert r.exit_code == 1
    assert "The log holds 3 entries, fewer than the 6 of the checkpoint" in r.stderr
    assert "restored from an older backup" in r.stderr

    r = cli(["ledger", "consistency", "--from", str(saved), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["consistent"] is False and "fewer than the 6" in doc["error"]


def test_a_log_grown_again_over_the_saved_checkpoint(
    restored: tuple[LedgerEnv, Path], cli: Any
) -> None:
    env, saved = restored
    with env.open() as lg:  # other entries appended at the sizes handed out before
        for n in range(100, 104):
            lg.append(env.envelope(n))
        assert lg.size() == 7

    r = cli(["ledger", "consistency", "--from", str(saved)])
    assert r.exit_code == 1
    assert "does not extend the checkpoint: its first 6 entries have another root" in r.stderr
    assert "restored from an older backup" in r.stderr

    r = cli(["ledger", "consistency", "--from", str(saved), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["consistent"] is False
    assert "its first 6 entries have another root" in doc["error"]
