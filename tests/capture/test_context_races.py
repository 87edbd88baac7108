"""A build context that changes while escrow reads it (review 9c): a file that grows is
hashed as the size recorded for it, and a file swapped for a symbolic link to a file
outside the context is refused, never followed (its bytes would be sent and hashed)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from escrow.capture import context as ctx
from escrow.errors import InputError


def _after_walk(monkeypatch: pytest.MonkeyPatch, name: str, change: Callable[[str], None]) -> None:
    """Run ``change(path)`` right after the walk has described ``name``."""
    describe = ctx._Describer.describe

    def patched(self: Any, path: str, arcname: str) -> Any:
        info = describe(self, path, arcname)
        if arcname == name:
            change(path)
        return info

    monkeypatch.setattr(ctx._Describer, "describe", patched)


@pytest.mark.parametrize("keep_archive", [False, True])
def test_a_file_that_grows_is_hashed_as_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_archive: bool
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    first = b"line 1\n" * 100
    (root / "grow.log").write_bytes(first)

    def grow(path: str) -> None:
        with open(path, "ab") as f:
            f.write(b"more\n" * 1000)

    _after_walk(monkeypatch, "grow.log", grow)
    made = ctx.make_context(
        root, require_dockerfile=False, keep_archive=keep_archive, spool_dir=str(tmp_path)
    )
    if made.archive is not None:
        made.archive.close()
    (entry,) = [f for f in made.files if f["path"] == "grow.log"]
    assert entry["size"] == len(first)
    assert entry["sha256"] == hashlib.sha256(first).hexdigest()


@pytest.mark.parametrize("keep_archive", [False, True])
def test_a_file_swapped_for_a_link_out_of_the_context_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_archive: bool
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"s3cret outside the context\n" * 10)
    (root / "a.txt").write_bytes(b"x" * 64)

    def swap(path: str) -> None:
        os.unlink(path)
        os.symlink(secret, path)

    _after_walk(monkeypatch, "a.txt", swap)
    with pytest.raises(InputError) as e:
        ctx.make_context(
            root, require_dockerfile=False, keep_archive=keep_archive, spool_dir=str(tmp_path)
        )
    assert "replaced" in e.value.message
