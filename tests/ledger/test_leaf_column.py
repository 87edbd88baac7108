"""``ledger verify`` says which was changed: the envelope bytes or the leaf_hash column.

An edit of the ``leaf_hash`` column alone was reported as "the stored envelope bytes
were changed", though the envelope was untouched.  Once an entry's subtree hashes are
stored, the tree's own leaf hash tells the two apart; before, the message names both."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import LedgerEnv, q, raw_sql

from escrow.ledger.store import Ledger

SIZE = 14


@pytest.fixture
def filled(cli_env: LedgerEnv, cli: Any, monkeypatch: pytest.MonkeyPatch) -> LedgerEnv:
    monkeypatch.setattr(Ledger, "index_every", 4)  # entries 0..11 indexed, 12 and 13 not yet
    with cli_env.open() as lg:
        for n in range(1, SIZE):
            lg.append(cli_env.envelope(n, tag="r11leaf"))
    assert cli(["ledger", "verify"]).exit_code == 0
    return cli_env


def _first(cli: Any) -> dict[str, Any]:
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 1, r.stdout
    first: dict[str, Any] = r.json()["first_problem"]
    return first


def test_an_edited_leaf_hash_column_is_named_as_such(filled: LedgerEnv, cli: Any) -> None:
    with raw_sql(filled.settings.db_url) as conn:
        q(conn, "UPDATE ledger_entry SET leaf_hash = :h WHERE idx = 3", h=b"\x07" * 32)
    first = _first(cli)
    assert (first["index"], first["kind"]) == (3, "edited")
    assert first["message"] == (
        "Entry 3: its leaf_hash column was changed; the envelope bytes are the tree's."
    )


def test_edited_envelope_bytes_are_named_as_such(filled: LedgerEnv, cli: Any) -> None:
    with raw_sql(filled.settings.db_url) as conn:
        data = bytes(q(conn, "SELECT envelope FROM ledger_entry WHERE idx = 3").scalar_one())
        q(conn, "UPDATE ledger_entry SET envelope = :e WHERE idx = 3", e=data + b" ")
    first = _first(cli)
    assert (first["index"], first["kind"]) == (3, "edited")
    assert first["message"] == "Entry 3: the stored envelope bytes were changed."


def test_before_its_tree_is_stored_both_are_named(filled: LedgerEnv, cli: Any) -> None:
    with raw_sql(filled.settings.db_url) as conn:
        q(conn, "UPDATE ledger_entry SET leaf_hash = :h WHERE idx = 13", h=b"\x07" * 32)
    first = _first(cli)
    assert (first["index"], first["kind"]) == (13, "edited")
    assert first["message"] == (
        "Entry 13: the stored envelope bytes or its leaf_hash column were changed."
    )
