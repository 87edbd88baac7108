"""An OSError that names no file (ENOSPC on a write, say) is one sentence that does not read
as if a path were missing, with the documented exit code."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest


def _failing_with(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    import escrow.cli.main as main_mod

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(main_mod.cli, "main", fail)


def test_no_space_left_without_a_file_name(monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    _failing_with(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    r = cli(["log"])
    assert r.exit_code == 3, r.stderr
    assert r.stderr == (
        "escrow: error: Cannot write: No space left on device. "
        "Free some space and run the command again.\n"
    )


def test_permission_error_without_a_file_name(monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    _failing_with(monkeypatch, OSError(errno.EACCES, os.strerror(errno.EACCES)))
    r = cli(["log"])
    assert r.exit_code == 3, r.stderr
    assert "Cannot use:" not in r.stderr
    assert "that path" not in r.stderr  # no path was named
    first = "escrow: error: Cannot complete a file operation: Permission denied."
    assert r.stderr.startswith(first), r.stderr


def test_an_error_naming_its_file_still_names_it(monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    _failing_with(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/out.pdf"))
    r = cli(["log"])
    assert r.exit_code == 3, r.stderr
    assert r.stderr.startswith("escrow: error: Cannot use /x/out.pdf: No space left on device.")
