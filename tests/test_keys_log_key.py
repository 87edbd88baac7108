"""`escrow keys revoke/retire/export` given the ledger's log key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from escrow.signing.keys import PublicKey


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["revoke", "{id}", "--reason", "leaked"], "cannot be revoked"),
        (["retire", "{id}"], "cannot be retired"),
        (["revoke", "{id16}", "--reason", "leaked"], "cannot be revoked"),
        (["export", "{id}"], "escrow ledger verifier-key"),
    ],
    ids=["revoke", "retire", "revoke-prefix", "export"],
)
def test_the_log_key_is_named_as_such(
    cli: Any, escrow_home: Path, args: list[str], fragment: str
) -> None:
    """Regression: the log key's ID (shown by `escrow verify` of a key event) was "not
    registered" — as if mistyped — when a security officer tried to revoke it."""
    log_id = PublicKey.from_pem((escrow_home / "keys" / "log.pub.pem").read_bytes()).keyid
    r = cli(["keys", *(a.format(id=log_id, id16=log_id[:16]) for a in args)])
    assert r.exit_code == 2
    assert f"is the ledger's log key {log_id[:16]}…" in r.stderr
    assert fragment in r.stderr and len(r.stderr.splitlines()) == 1
    assert "No registered key" not in r.stderr


def test_an_unknown_key_is_still_not_registered(cli: Any, escrow_home: Path) -> None:
    r = cli(["keys", "revoke", "nosuchkey", "--reason", "x"])
    assert r.exit_code == 2 and "No registered key has the ID or name 'nosuchkey'" in r.stderr
