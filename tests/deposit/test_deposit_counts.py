"""``escrow deposit stats`` and ``import`` say "1 entry", "1 blob", not "1 entries"."""

from __future__ import annotations

from escrow.cli.deposit_cmd import _figures_text


def test_one_entry_and_one_blob_are_singular() -> None:
    figures = {
        "entries": 1,
        "blobs": 1,
        "bytesStored": 10,
        "bytesSavedByDedup": 0,
        "bytesLogical": 10,
    }
    text = _figures_text("r9-base", figures)
    assert text.startswith("r9-base: 1 entry, 1 blob, stored "), text


def test_many_stay_plural() -> None:
    figures = {
        "entries": 3,
        "blobs": 0,
        "bytesStored": 0,
        "bytesSavedByDedup": 0,
        "bytesLogical": 0,
    }
    assert _figures_text("r9", figures).startswith("r9: 3 entries, 0 blobs, stored "), figures
