"""`escrow pack -o` into a folder the user may not write says so.

Regression: as a user who is not root, `escrow pack -o /root-owned/pack.pdf` said "Cannot
write the pack to …: Permission denied." with the hint "Give -o a path whose folders can
be created" — the folder exists; the user may not write in it.  (The suite runs as root,
whom no permission stops: the probe's refusal is given as the kernel gives it.)"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest


def test_a_folder_the_user_may_not_write_is_said_so(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import escrow.cli.pack_cmd as pack_cmd

    def refused(folder: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(pack_cmd, "_probe_writable", refused)
    out = tmp_path / "root-only" / "pack.pdf"
    r = cli(["pack", "--project", "app", "-o", str(out)])
    assert r.exit_code == 2, r.stderr
    assert f"Cannot write the pack to {out}: Permission denied." in r.stderr
    assert "Give -o a path in a folder you may write to." in r.stderr


def test_a_file_in_the_way_keeps_its_hint(escrow_home: Path, cli: Any, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    r = cli(["pack", "--project", "app", "-o", str(tmp_path / "a-file" / "pack.pdf")])
    assert r.exit_code == 2, r.stderr
    assert "is a file, not a folder" in r.stderr
    assert "Give -o a path whose folders can be created." in r.stderr
