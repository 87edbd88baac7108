"""A saved checkpoint that cannot be read is refused with the reason the system gave:
an ``OSError`` without ``strerror`` was reported as "not UTF-8 text"."""

from __future__ import annotations

from pathlib import Path

import pytest

from escrow.errors import InputError
from escrow.ledger.checkpoint import read_checkpoint_file


def test_an_unreadable_file_is_not_called_non_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "saved.checkpoint"
    path.write_text("anything\n", encoding="utf-8")

    def fail(self: Path, *args: object, **kwargs: object) -> str:
        raise OSError("the device went away")

    monkeypatch.setattr(Path, "read_text", fail)
    with pytest.raises(InputError) as e:
        read_checkpoint_file(path, hint="Give the right file.")
    assert "the device went away" in e.value.message
    assert "UTF-8" not in e.value.message
