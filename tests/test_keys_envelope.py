"""`escrow verify --envelope FILE` (no --key) of an envelope signed by a revoked key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from escrow.signing.dsse import sign_statement
from escrow.signing.keys import SigningKey

DOCS = Path(__file__).parent / "assets" / "documents"


def test_a_revoked_signer_is_named_with_its_revocation(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    """Regression: against the ledger's keys, an envelope signed by a key revoked as
    compromised was refused with "No signature on the envelope verifies with a trusted
    key": the signature does verify, and the auditor was not told the key was revoked."""
    assert cli(["keys", "generate", "--name", "ci"]).exit_code == 0
    ci = SigningKey.load(escrow_home / "keys" / "ci.key.pem")
    statement = json.loads((DOCS / "rebuild-verification.identical.json").read_text())
    path = tmp_path / "env.json"
    path.write_bytes(sign_statement(statement, ci).to_bytes())
    assert cli(["verify", "--envelope", str(path)]).exit_code == 0
    assert cli(["keys", "revoke", ci.keyid[:16], "--reason", "leaked in CI logs"]).exit_code == 0
    r = cli(["verify", "--envelope", str(path)])
    assert r.exit_code == 1
    assert "No key active now signed the envelope" in r.stderr
    assert f"signed by key {ci.keyid[:16]}… (ci), revoked on " in r.stderr
    assert "(leaked in CI logs)" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli(["verify", "--envelope", str(path), "--json"])
    assert r.exit_code == 1 and r.json()["ok"] is False
    assert "revoked on" in r.json()["error"]


def test_an_envelope_signed_by_no_registered_key_is_unchanged(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    statement = json.loads((DOCS / "rebuild-verification.identical.json").read_text())
    path = tmp_path / "env.json"
    path.write_bytes(sign_statement(statement, SigningKey.generate()).to_bytes())
    r = cli(["verify", "--envelope", str(path)])
    assert r.exit_code == 1
    assert "No signature on the envelope verifies with a trusted key" in r.stderr
