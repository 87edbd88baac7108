"""`escrow verify INDEX` of an envelope signed by a revoked key and a valid one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from escrow.config import load_settings
from escrow.ledger.store import Ledger
from escrow.signing.dsse import sign_statement
from escrow.signing.keys import SigningKey

DOCS = Path(__file__).parent / "assets" / "documents"


def test_one_signer_valid_at_the_append_is_enough(cli: Any, escrow_home: Path) -> None:
    """Regression: the ledger appends an envelope when any of its signers may sign, and
    `ledger verify` agrees, but `escrow verify INDEX` judged the first signer only: an
    envelope signed by a revoked key first and the build key second FAILed (exit 1)."""
    assert cli(["keys", "generate", "--name", "ci"]).exit_code == 0
    ci = SigningKey.load(escrow_home / "keys" / "ci.key.pem")
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    assert cli(["keys", "revoke", "ci", "--reason", "leaked"]).exit_code == 0
    statement = json.loads((DOCS / "rebuild-verification.identical.json").read_text())
    with Ledger.open(load_settings()) as lg:
        entry, created = lg.append(sign_statement(statement, [ci, build]))
        assert created and entry.signer == build.keyid
        assert lg.verify().ok
    r = cli(["verify", str(entry.index), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    (sig,) = [c for c in r.json()["checks"] if c["name"] == "signature"]
    assert sig["ok"] is True and f"build key {build.keyid[:16]}…" in sig["detail"]
