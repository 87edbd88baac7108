"""`escrow gc` on an escrow agent's store: imported deposits are always kept, and the text
report says so (`--keep-last 1` retaining five entries of a project used to be unexplained)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

_KEY = "escrow.local/ledger/16df854a+ebda895b+Ac6FrrM78D4tBtCyw7+Y6IY+sWE3UcY6xtVnq/a2f8gI"


def _fake_imports(root: Path, n: int) -> Path:
    from escrow.deposit.store import IMPORTS, FileDepositStore

    store = FileDepositStore(root)
    for i in range(1, n + 1):
        envelope = store.put(f"envelope {i}".encode())
        doc = {
            "index": i,
            "project": "acme",
            "integratedAt": f"2026-12-0{i}T00:00:00Z",
            "origin": "escrow.local/ledger/16df854a",
            "verifierKey": _KEY,
            "envelope": envelope,
            "record": "0" * 64,
        }
        store.set_ref(IMPORTS, f"{i:064x}", store.put(json.dumps(doc).encode()))
    return root


def test_gc_says_imported_deposits_are_always_kept(escrow_home: Path, tmp_path: Path) -> None:
    store = _fake_imports(tmp_path / "store", 3)
    r = run_cli(["gc", "--keep-last", "1", "--deposit-store", str(store)])
    assert r.exit_code == 0, r.stderr
    assert "retained 3 (3 imported: always kept), dropped 0" in r.stdout, r.stdout
    j = run_cli(["gc", "--keep-last", "1", "--deposit-store", str(store), "--json"])
    assert j.exit_code == 0, j.stderr
    acme = json.loads(j.stdout)["projects"]["acme"]
    assert acme["imported"] == 3
    assert sorted(acme["retained"]) == [1, 2, 3] and acme["dropped"] == []
