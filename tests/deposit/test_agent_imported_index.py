"""`escrow rebuild --imported INDEX` / `deposit check --imported INDEX` with an index no
imported deposit holds: the error says which indexes the store does hold (the hint used to
point at `escrow deposit stats --json`, which gives only a count)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

_KEY = "escrow.local/ledger/16df854a+ebda895b+Ac6FrrM78D4tBtCyw7+Y6IY+sWE3UcY6xtVnq/a2f8gI"


def _fake_imports(root: Path, indexes: list[int]) -> Path:
    """A deposit store whose import records name ``indexes`` (only what the lookup reads)."""
    from escrow.deposit.store import IMPORTS, FileDepositStore

    store = FileDepositStore(root)
    for i in indexes:
        doc = {"index": i, "origin": "escrow.local/ledger/16df854a", "verifierKey": _KEY}
        store.set_ref(IMPORTS, f"{i:064x}", store.put(json.dumps(doc).encode()))
    return root


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_an_index_not_imported_names_the_indexes_the_store_holds(
    escrow_home: Path, tmp_path: Path
) -> None:
    store = _fake_imports(tmp_path / "store", [1, 2, 3, 7, 9, 10])
    r = run_cli(["deposit", "check", "--imported", "8", "--deposit-store", str(store)])
    assert r.exit_code == 2, (r.stdout, r.stderr)
    line = _one_line(r.stderr)
    assert "No imported deposit holds entry 8." in line
    assert "hold entries 1-3, 7, 9-10" in line, line
    assert "stats --json" not in line  # it lists no imported entries


def test_an_origin_never_imported_is_said_so(escrow_home: Path, tmp_path: Path) -> None:
    store = _fake_imports(tmp_path / "store", [1])
    r = run_cli(
        [
            "deposit",
            "check",
            "--imported",
            "1",
            "--origin",
            "deadbeef",
            "--deposit-store",
            str(store),
        ]
    )
    assert r.exit_code == 2, (r.stdout, r.stderr)
    line = _one_line(r.stderr)
    assert "No deposit of that ledger was imported into" in line, line


def test_deposit_imports_keeps_its_columns_under_wide_project_names(
    escrow_home: Path, tmp_path: Path
) -> None:
    """The PROJECT column was padded by characters: a CJK name pushed the image ID and
    the import time out of line."""
    from escrow.deposit.store import IMPORTS, FileDepositStore

    store = FileDepositStore(tmp_path / "store")
    for i, project in enumerate(["app", "応用プログラム", "caf\u00e9"], start=1):
        doc = {
            "index": i,
            "origin": "escrow.local/ledger/16df854a",
            "verifierKey": _KEY,
            "project": project,
            "imageId": "sha256:" + f"{i}" * 64,
            "importedAt": "2026-12-06T12:00:00Z",
        }
        store.set_ref(IMPORTS, f"{i:064x}", store.put(json.dumps(doc).encode()))
    r = run_cli(["deposit", "imports", "--deposit-store", str(tmp_path / "store")])
    assert r.exit_code == 0, r.stderr
    from escrow.text import cell_width

    rows = [line for line in r.stdout.splitlines() if line.startswith("  entry")]
    assert len(rows) == 3, r.stdout
    # the image ID starts in the same terminal column on every row
    starts = {cell_width(row[: row.index(str(i) * 12)]) for i, row in enumerate(rows, start=1)}
    assert len(starts) == 1, r.stdout
