"""`escrow attach` of an entry that records no image."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_attach_of_a_recorded_command_says_it_has_no_image(cli: Any, escrow_home: Path) -> None:
    """Not "name the image with --to", which the user would then follow to another refusal."""
    r = cli(["record", "--json", "--", "true"])
    assert r.exit_code == 0, r.stderr
    index = r.json()["index"]
    for extra in ([], ["--to", "127.0.0.1:1/team/app:latest"]):
        r = cli(["attach", str(index), *extra])
        assert r.exit_code == 2, r.stderr
        assert r.stderr.startswith(f"escrow: error: Entry {index} records no image"), r.stderr
        assert "--to" not in r.stderr
