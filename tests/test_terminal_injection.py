"""Names recorded by others (a project in a pipeline's manifest) are shown
with their control characters escaped: they must not drive the reader's terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent / "ledger"))

from ledger_helpers import manifest, raw_sign  # noqa: E402

from escrow.config import load_settings  # noqa: E402
from escrow.ledger.store import Ledger  # noqa: E402
from escrow.signing.keys import SigningKey  # noqa: E402

# an OSC (set the window title), a carriage return and "cursor up, erase line" (hides the
# row above), a C1 CSI, then what the row would pretend to be
EVIL = "evil\x1b]0;pwned\x07\r\x1b[1A\x1b[2K\x9b2Jproj"


def _no_controls(text: str) -> None:
    for c in ("\x1b", "\r", "\x07", "\x9b"):
        assert c not in text, repr(text)


def test_a_project_name_cannot_send_escape_sequences(escrow_home: Path, cli: Any) -> None:
    """Regression: `escrow log` and `escrow verify` wrote a project's control characters
    as they were (only some CSI sequences were stripped, and only off a terminal), so a
    pipeline could retitle the terminal, or erase rows of `escrow log` an auditor reads."""
    settings = load_settings()
    key = SigningKey.load(settings.key_path)
    with Ledger.open(settings) as lg:
        entry, _ = lg.append(raw_sign(manifest(1, project=EVIL), key))
    r = cli(["log"])
    assert r.exit_code == 0, r.stderr
    _no_controls(r.stdout + r.stderr)
    assert "evil\\x1b]0;pwned\\x07\\x0d\\x1b[1A\\x1b[2K\\x9b2Jproj" in r.stdout
    r = cli(["verify", str(entry.index)])
    assert r.exit_code == 0, r.stderr
    _no_controls(r.stdout + r.stderr)
    r = cli(["log", "--project", EVIL, "--since", "not-a-date"])
    assert r.exit_code == 2
    _no_controls(r.stdout + r.stderr)
