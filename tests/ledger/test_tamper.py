"""Hand edits of the ledger database: `escrow ledger verify` names the first bad index and
the kind, exit 1 — including edits to what the append path and queries trust beside the
log (the key table, the signer column, the checkpoint kept in each row)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, q, raw_sql
from test_independent_reference import open_checkpoint

SIZE = 12  # entry 0 registers the build key; 1..11 are builds


@pytest.fixture
def filled(cli_env: LedgerEnv, cli: Any) -> LedgerEnv:
    with cli_env.open() as lg:
        for n in range(1, SIZE):
            lg.append(cli_env.envelope(n, tag="r9tamper"))
        assert lg.size() == SIZE
    assert cli(["ledger", "verify"]).exit_code == 0
    return cli_env


def swap_adjacent_rows(conn: Any) -> None:
    """Rows 4 and 5 change places, each whole (bytes, hash, time, checkpoint)."""
    q(conn, "UPDATE ledger_entry SET idx = -1 WHERE idx = 4")
    q(conn, "UPDATE ledger_entry SET idx = 4 WHERE idx = 5")
    q(conn, "UPDATE ledger_entry SET idx = 5 WHERE idx = -1")


def move_checkpoint(conn: Any) -> None:
    """Entry 9 keeps entry 8's checkpoint: `checkpoint --tree-size 10` then answers size 9."""
    note = q(conn, "SELECT note FROM ledger_entry WHERE idx = 8").scalar_one()
    q(conn, "UPDATE ledger_entry SET note = :n WHERE idx = 9", n=note)


def change_signer(conn: Any) -> None:
    """`escrow log --signer` would list entry 6 under a key that did not sign it."""
    q(conn, "UPDATE ledger_entry SET signer = :s WHERE idx = 6", s="ab" * 32)


def revoke_in_key_table(conn: Any) -> None:
    """The build key marked revoked beside the log: appends by it are refused."""
    q(conn, "UPDATE ledger_key SET status = 'revoked'")


def rename_in_key_table(conn: Any) -> None:
    q(conn, "UPDATE ledger_key SET name = 'someone-else'")


def flip_envelope_byte(conn: Any) -> None:
    data = bytes(q(conn, "SELECT envelope FROM ledger_entry WHERE idx = 3").scalar_one())
    pos = data.index(b'"payload":"') + 30
    flipped = data[:pos] + (b"A" if data[pos : pos + 1] != b"A" else b"B") + data[pos + 1 :]
    q(conn, "UPDATE ledger_entry SET envelope = :e WHERE idx = 3", e=flipped)


def delete_row(conn: Any) -> None:
    q(conn, "DELETE FROM ledger_entry WHERE idx = 7")


CASES: list[tuple[str, Callable[[Any], None], int, str]] = [
    ("swap-adjacent-rows", swap_adjacent_rows, 4, "reordered"),
    ("moved-checkpoint", move_checkpoint, 9, "reordered"),
    ("changed-signer", change_signer, 6, "index"),
    ("key-revoked-in-table", revoke_in_key_table, 0, "key-table"),
    ("key-renamed-in-table", rename_in_key_table, 0, "key-table"),
    ("flipped-byte", flip_envelope_byte, 3, "edited"),
    ("deleted-row", delete_row, 7, "deleted"),
]


@pytest.mark.parametrize(("name", "tamper", "index", "kind"), CASES, ids=[c[0] for c in CASES])
def test_hand_edits_are_named(
    filled: LedgerEnv,
    cli: Any,
    name: str,
    tamper: Callable[[Any], None],
    index: int,
    kind: str,
) -> None:
    with raw_sql(filled.settings.db_url) as conn:
        tamper(conn)
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 1, r.stdout
    first = r.json()["first_problem"]
    assert (first["index"], first["kind"]) == (index, kind), r.json()["problems"]
    text = cli(["ledger", "verify"])
    assert text.exit_code == 1
    assert f"at entry {index}: {kind}" in text.stderr


def test_the_checkpoint_kept_in_each_row_is_for_its_size(filled: LedgerEnv, cli: Any) -> None:
    key = cli(["ledger", "verifier-key"]).stdout.strip()
    for size in range(1, SIZE + 1):
        note = cli(["ledger", "checkpoint", "--tree-size", str(size)]).stdout
        assert open_checkpoint(note, key)[1] == size
