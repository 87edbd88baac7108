"""`escrow keys rotate` / `retire` of a key already retired from a time still to come."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from escrow.config import load_settings
from escrow.ledger.store import Ledger
from escrow.signing.keys import SigningKey


def _keys(cli: Any) -> list[dict[str, Any]]:
    r = cli(["keys", "list", "--json"])
    assert r.exit_code == 0, r.stderr
    keys: list[dict[str, Any]] = r.json()["keys"]
    return keys


def _size() -> int:
    with Ledger.open(load_settings()) as lg:
        return lg.size()


def _future(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def test_rotate_after_retire_from_a_later_date(cli: Any, escrow_home: Path) -> None:
    """Regression: `keys retire build --from <later>` then `keys rotate` registered a new
    key in the ledger, then failed ("already retired", exit 2) and deleted the new
    key's file: an orphan key registered for ever, and no rotation."""
    old = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    when = _future(30)
    assert cli(["keys", "retire", old.keyid, "--from", when]).exit_code == 0
    r = cli(["keys", "rotate", "--json"])
    assert r.exit_code == 0, r.stderr
    out = r.json()
    new = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    assert out["new"]["keyid"] == new.keyid != old.keyid
    # the old key keeps its retirement: it signs until then
    assert out["old"]["status"] == "retired" and out["old"]["retired_from"].startswith(when)
    keys = {k["keyid"]: k for k in _keys(cli)}
    assert set(keys) == {old.keyid, new.keyid}
    assert keys[new.keyid]["status"] == "active" and keys[new.keyid]["build_key"] is True
    assert keys[old.keyid]["retired_at"].startswith(when)
    archived = escrow_home / "keys" / f"build-{old.keyid[:8]}.key.pem"
    assert SigningKey.load(archived).keyid == old.keyid


def test_rotate_from_refuses_to_move_a_retirement_and_changes_nothing(
    cli: Any, escrow_home: Path
) -> None:
    old = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    assert cli(["keys", "retire", old.keyid, "--from", _future(30)]).exit_code == 0
    files = {p.name: p.read_bytes() for p in (escrow_home / "keys").iterdir()}
    size = _size()
    r = cli(["keys", "rotate", "--from", _future(60)])
    assert r.exit_code == 2
    assert "already to be retired from" in r.stderr and len(r.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in (escrow_home / "keys").iterdir()} == files
    assert _size() == size and len(_keys(cli)) == 1


def test_retire_again_names_the_coming_retirement(cli: Any, escrow_home: Path) -> None:
    """Regression: retiring again a key `keys list` shows active (its retirement still to
    come) said it "is already retired"."""
    old = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    when = _future(30)
    assert cli(["keys", "retire", old.keyid[:12], "--from", when]).exit_code == 0
    size = _size()
    r = cli(["keys", "retire", old.keyid[:12]])
    assert r.exit_code == 2
    assert f"is already to be retired from {when}T00:00:00Z" in r.stderr
    assert "already retired" not in r.stderr and len(r.stderr.splitlines()) == 1
    assert _size() == size
    # it can still be revoked, at once
    r = cli(["keys", "revoke", old.keyid[:12], "--reason", "leaked", "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "revoked"
    assert _keys(cli)[0]["status"] == "revoked"
