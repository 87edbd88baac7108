"""The read-only commands leave a SQLite ledger an older escrow made as it is.

Regression: `escrow log`, `show`, `verify`, `ledger verify|checkpoint|proof|consistency`
and `keys list` opened a schema-1 ledger the way a writer does, and so migrated it in
place (dropped `ledger_head` and `ledger_diff_id`, added `ledger_term`): an auditor's
evidence copy was rewritten by reading it, against the README's "they never change a copy
of a ledger".  They now read a migrated private copy, say so on stderr, and remove it;
the first command that writes migrates the ledger itself."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from ledger_helpers import ASSETS

from tests.conftest import run_cli

READ_ONLY = [
    ["log", "--json"],
    ["show", "3", "--json"],
    ["verify", "3", "--json"],
    ["ledger", "verify", "--json"],
    ["ledger", "checkpoint", "--json"],
    ["ledger", "proof", "3", "--json"],
    ["ledger", "consistency", "4", "--json"],
    ["ledger", "leaf", "3"],
    ["keys", "list", "--json"],
    ["diff", "2", "4", "--json"],
]


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def v1_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    shutil.copytree(ASSETS / "ledger-v1", home)
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return home


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_a_read_only_command_leaves_an_old_ledger_as_it_is(
    v1_home: Path, tmp_path: Path, args: list[str]
) -> None:
    before = _digests(v1_home)
    r = run_cli(args)
    assert r.exit_code == 0, r.stderr
    assert _digests(v1_home) == before  # byte for byte, no file added
    assert "was made by an older escrow; it is read from a migrated copy" in r.stderr
    assert list((tmp_path / "tmp").iterdir()) == []  # the private copy is gone


def test_what_is_read_is_what_the_migrated_ledger_answers(v1_home: Path) -> None:
    read = {" ".join(a): run_cli(a).stdout for a in READ_ONLY if a[0] != "keys"}
    # a command that writes migrates the ledger itself (nothing is appended by `post`
    # of no envelope; `keys generate` appends a key event, after the entries compared)
    r = run_cli(["keys", "generate", "--name", "later"])
    assert r.exit_code == 0, r.stderr
    assert "older escrow" not in r.stderr
    for args in READ_ONLY:
        if args[0] == "keys":
            continue
        again = run_cli(args)
        assert again.exit_code == 0, again.stderr
        assert "older escrow" not in again.stderr
        if args[0] in ("show", "diff") or args[:2] == ["ledger", "leaf"]:
            # the others describe the log, one entry longer now
            assert again.stdout == read[" ".join(args)], args
    entries = json.loads(run_cli(["log", "--json"]).stdout)["entries"]
    assert len(entries) == 11
