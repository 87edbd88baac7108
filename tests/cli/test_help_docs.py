"""The help texts a user reads first: `escrow --help` and each command's `--help`."""

from __future__ import annotations

import re
from typing import Any


def test_the_command_list_cuts_no_summary_mid_sentence(cli: Any) -> None:
    """Regression: `escrow --help` listed `capture  Record IMAGE, built by other means
    (e.g.` — click cut the summary at the full stop of "e.g."."""
    r = cli(["--help"])
    assert r.exit_code == 0, r.stderr
    listed = dict(
        m.groups() for m in re.finditer(r"^  ([a-z-]+)\s{2,}(.+)$", r.stdout, re.MULTILINE)
    )
    assert "capture" in listed
    assert "(e.g." not in listed["capture"], listed["capture"]
    assert listed["capture"].startswith("Record IMAGE, built by other means"), listed
