"""`escrow gc --apply` removes what interrupted writes left behind in the store — also the
temporary file of a reference being replaced (`refs/*/.ref-*`), which no command removed
before; a dry run removes nothing."""

from __future__ import annotations

from pathlib import Path

from escrow.deposit.gc import collect_garbage
from escrow.deposit.store import ENTRIES, FileDepositStore


def test_gc_apply_removes_half_written_references(tmp_path: Path) -> None:
    root = tmp_path / "deposits"
    store = FileDepositStore(root)
    store.set_ref(ENTRIES, "cd" * 32, store.put(b"{}"))
    leftover = root / "refs" / "entries" / ".ref-interrupted"
    leftover.write_text("12")  # killed while writing it
    spooled = root / "tmp" / "incoming-interrupted"
    spooled.write_bytes(b"half a blob")

    collect_garbage(FileDepositStore(root))
    assert leftover.exists() and spooled.exists()  # a dry run changes nothing

    collect_garbage(FileDepositStore(root), apply=True)
    assert not leftover.exists() and not spooled.exists()
    assert FileDepositStore(root).get_ref(ENTRIES, "cd" * 32) is not None  # the real one stays
