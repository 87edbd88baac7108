"""``escrow ledger consistency --from`` checks a pack checkpoint's ``key-events`` line.

The checkpoint a pack is made against names the log's key events below its size (their
count and digest), signed by the log key.  An auditor who keeps the pack's
``checkpoint.txt`` and later runs ``escrow ledger consistency --from checkpoint.txt``
against the ledger now learns when that line does not match the log — the pack was made
with a key event left out (a revocation hidden) — and not only whether the log grew.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from escrow.config import load_settings
from escrow.ledger import checkpoint as cpmod
from escrow.ledger.store import Ledger
from escrow.signing.keys import SigningKey


def _log(cli: Any) -> None:
    r = cli(["keys", "revoke", "build", "--reason", "the laptop was stolen"])
    assert r.exit_code == 0, r.stderr  # entry 1: the revocation of entry 0's key


def _pack_checkpoint(tmp_path: Path, *, forged: bool) -> Path:
    settings = load_settings()
    with Ledger.open(settings) as lg:
        cp = lg.key_events_checkpoint()
        note = cp.note
        if forged:  # the build key's registration only: the revocation left out
            first = lg.get(0)
            line = cpmod.key_events_line(
                *cpmod.key_events_digest([(0, hashlib.sha256(b"\x00" + first.envelope).digest())])
            )
            log_key = SigningKey.load(settings.log_key_path, settings.passphrase)
            note = cpmod.sign_checkpoint(lg.origin, cp.size, cp.root, log_key, lg.origin, (line,))
    path = tmp_path / ("forged.txt" if forged else "checkpoint.txt")
    path.write_text(note, encoding="utf-8")
    return path


def test_the_packs_own_checkpoint_is_consistent(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    _log(cli)
    saved = _pack_checkpoint(tmp_path, forged=False)
    r = cli(["ledger", "consistency", "--from", str(saved)])
    assert r.exit_code == 0, r.stderr
    assert "extends the checkpoint of size 2" in r.stderr


def test_a_checkpoint_naming_other_key_events_fails(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    _log(cli)
    saved = _pack_checkpoint(tmp_path, forged=True)
    r = cli(["ledger", "consistency", "--from", str(saved)])
    assert r.exit_code == 1
    message = (
        "The checkpoint's key-events line (1 key event below entry 2) does not match the "
        "log's (2): the pack it came from was made with a key event left out or added."
    )
    assert message in r.stderr
    r = cli(["ledger", "consistency", "--from", str(saved), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["consistent"] is False and doc["error"] == message
