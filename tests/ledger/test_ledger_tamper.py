"""Tampering with the stored log is detected, naming the first bad index and the kind.

Each case edits the database directly, as an operator with database access
could, then runs ``Ledger.verify`` (in process, and with worker processes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, q, raw_sql

from escrow.ledger import merkle
from escrow.ledger.checkpoint import sign_checkpoint
from escrow.ledger.store import Ledger
from escrow.signing.keys import SigningKey

SIZE = 15  # entry 0 is the build key's key event; 0..11 are in the query index


def rebuild_tree(conn: Any) -> None:
    """What a careful forger does: recompute every stored hash and the head's root."""
    rows = q(conn, "SELECT idx, envelope FROM ledger_entry ORDER BY idx").all()
    leaves = [merkle.leaf_hash(bytes(r.envelope)) for r in rows]
    for r, h in zip(rows, leaves, strict=True):
        q(conn, "UPDATE ledger_entry SET leaf_hash = :h WHERE idx = :i", h=h, i=r.idx)
    q(conn, "DELETE FROM ledger_node")
    levels = merkle.build_levels(leaves)
    for level, hashes in enumerate(levels):
        for i, h in enumerate(hashes):
            q(
                conn,
                "INSERT INTO ledger_node (id, hash) VALUES (:id, :h)",
                id=merkle.stored_index(level, i),
                h=h,
            )


def edit_bytes(lg: Ledger, env: LedgerEnv) -> None:
    with raw_sql(lg.url) as conn:
        data = bytes(q(conn, "SELECT envelope FROM ledger_entry WHERE idx = 5").scalar_one())
        pos = data.index(b'"payload":"') + 40
        flipped = data[:pos] + (b"A" if data[pos : pos + 1] != b"A" else b"B") + data[pos + 1 :]
        q(conn, "UPDATE ledger_entry SET envelope = :e WHERE idx = 5", e=flipped)


def text_in_place_of_bytes(lg: Ledger, env: LedgerEnv) -> None:
    """Regression: a text value where the envelope's bytes were (SQLite keeps its type)
    made reading the entry raise a TypeError."""
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET envelope = 'not json at all' WHERE idx = 5")


def delete_row(lg: Ledger, env: LedgerEnv) -> None:
    with raw_sql(lg.url) as conn:
        q(conn, "DELETE FROM ledger_entry WHERE idx = 4")


def reorder_rows(lg: Ledger, env: LedgerEnv) -> None:
    cols = "envelope, leaf_hash, predicate_type, project, image_id, signer, integrated_us, diff_ids"
    with raw_sql(lg.url) as conn:
        a = q(conn, f"SELECT {cols} FROM ledger_entry WHERE idx = 3").one()._asdict()
        b = q(conn, f"SELECT {cols} FROM ledger_entry WHERE idx = 8").one()._asdict()
        q(conn, "UPDATE ledger_entry SET leaf_hash = :z WHERE idx = 3", z=b"tmp")
        sets = ", ".join(f"{c} = :{c}" for c in cols.split(", "))
        q(conn, f"UPDATE ledger_entry SET {sets} WHERE idx = 8", **a)
        q(conn, f"UPDATE ledger_entry SET {sets} WHERE idx = 3", **b)


def forge_entry(lg: Ledger, env: LedgerEnv) -> None:
    forged = env.envelope(99, key=SigningKey.generate()).to_bytes()
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET envelope = :e WHERE idx = 7", e=forged)
        rebuild_tree(conn)


def forge_appended(lg: Ledger, env: LedgerEnv) -> None:
    forged = env.envelope(99, key=SigningKey.generate()).to_bytes()
    with raw_sql(lg.url) as conn:
        q(
            conn,
            "INSERT INTO ledger_entry (idx, leaf_hash, envelope, predicate_type, signer, "
            "integrated_us) VALUES (:i, :h, :e, 'x', 'x', 0)",
            i=SIZE,
            h=merkle.leaf_hash(forged),
            e=forged,
        )
        rebuild_tree(conn)


def checkpoint_by_other_key(lg: Ledger, env: LedgerEnv) -> None:
    cp = lg.checkpoint()
    note = sign_checkpoint(cp.origin, cp.size, cp.root, SigningKey.generate(), cp.origin)
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET note = :n WHERE idx = :i", n=note, i=cp.size - 1)


def truncate(lg: Ledger, env: LedgerEnv) -> None:
    with raw_sql(lg.url) as conn:
        q(conn, "DELETE FROM ledger_entry WHERE idx >= 9")
        rebuild_tree(conn)


def truncate_to_a_signed_size(lg: Ledger, env: LedgerEnv) -> None:
    """Cut the log to 4 entries: the last one left holds the genuine checkpoint of size
    4, but the retained checkpoint of size 8 still shows the log was longer."""
    with raw_sql(lg.url) as conn:
        q(conn, "DELETE FROM ledger_entry WHERE idx >= 4")
        q(conn, "DELETE FROM ledger_term WHERE idx >= 4")
        rebuild_tree(conn)


def reindex_project(lg: Ledger, env: LedgerEnv) -> None:
    """Hide an entry from project queries by editing its indexed column only."""
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET project = 'elsewhere' WHERE idx = 6")


def reindex_image(lg: Ledger, env: LedgerEnv) -> None:
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET image_id = NULL WHERE idx = 2")


def unindex_diff_id(lg: Ledger, env: LedgerEnv) -> None:
    """Hide an entry from diff-ID queries by deleting its row in the query index."""
    with raw_sql(lg.url) as conn:
        q(conn, "DELETE FROM ledger_term WHERE idx = 9 AND kind = 'diff'")


def reindex_signer(lg: Ledger, env: LedgerEnv) -> None:
    """Move an entry to another signer in the query index only."""
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_term SET value = 'elsewhere' WHERE idx = 7 AND kind = 'signer'")


def index_unindexed(lg: Ledger, env: LedgerEnv) -> None:
    """Add an index row for an entry past the indexed ones (its own row is searched)."""
    with raw_sql(lg.url) as conn:
        q(conn, "INSERT INTO ledger_term (idx, kind, value) VALUES (13, 'project', 'other')")


def move_time_back(lg: Ledger, env: LedgerEnv) -> None:
    """Put an entry's integration time before its predecessor's: time-range queries, which
    binary-search the log by time, would skip it."""
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET integrated_us = integrated_us - 3600000000 WHERE idx = 8")


def forget_diff_ids(lg: Ledger, env: LedgerEnv) -> None:
    """Hide an entry not yet indexed from diff-ID queries by editing its own row."""
    with raw_sql(lg.url) as conn:
        q(conn, "UPDATE ledger_entry SET diff_ids = NULL WHERE idx = 13")


CASES: list[tuple[str, Callable[[Ledger, LedgerEnv], None], int | None, str]] = [
    ("edited-bytes", edit_bytes, 5, "edited"),
    ("text-in-place-of-bytes", text_in_place_of_bytes, 5, "edited"),
    ("reindexed-project", reindex_project, 6, "index"),
    ("reindexed-image", reindex_image, 2, "index"),
    ("unindexed-diff-id", unindex_diff_id, 9, "index"),
    ("reindexed-signer", reindex_signer, 7, "index"),
    ("indexed-past-the-index", index_unindexed, 13, "index"),
    ("forgotten-diff-ids", forget_diff_ids, 13, "index"),
    ("time-moved-back", move_time_back, 8, "index"),
    ("deleted-row", delete_row, 4, "deleted"),
    ("reordered-rows", reorder_rows, 3, "reordered"),
    ("forged-entry", forge_entry, 7, "forged"),
    ("forged-appended", forge_appended, SIZE, "forged"),
    ("checkpoint-by-another-key", checkpoint_by_other_key, None, "checkpoint-signature"),
    ("truncated", truncate, 9, "truncated"),
    ("truncated-to-a-signed-size", truncate_to_a_signed_size, 4, "truncated"),
]


def build(env: LedgerEnv) -> Ledger:
    lg = env.open()
    lg.checkpoint_every = 4  # keep checkpoints at sizes 4, 8 and 12 too
    lg.index_every = 6  # entries 0..11 in the query index, 12..14 searched on their rows
    for n in range(1, SIZE):
        lg.append(env.envelope(n))
    assert lg.size() == SIZE
    return lg


@pytest.mark.parametrize(("name", "tamper", "index", "kind"), CASES, ids=[c[0] for c in CASES])
def test_tampering_is_detected(
    env: LedgerEnv,
    name: str,
    tamper: Callable[[Ledger, LedgerEnv], None],
    index: int | None,
    kind: str,
) -> None:
    with build(env) as lg:
        clean = lg.verify()
        assert clean.ok, clean.problems
        assert clean.checkpoints_checked == 4  # kept at 4, 8 and 12, and the latest
        assert lg.entries(project="proj", after=10, limit=3)[-1].index == 13
        tamper(lg, env)
        report = lg.verify()
        assert not report.ok
        first = report.first
        assert first is not None
        assert (first.index, first.kind) == (index, kind), report.problems


def test_key_valid_at_each_position(env: LedgerEnv) -> None:
    """An entry signed by a key after its revocation is reported, not one before."""
    with build(env) as lg:
        lg.revoke_key(env.build_key.keyid, "compromised")  # entry SIZE
        late = env.envelope(50).to_bytes()  # signed by the revoked key
        from escrow.ledger.store import prepare

        cols = prepare(late)  # a careful forger fills the indexed columns as append would
        with raw_sql(lg.url) as conn:
            q(
                conn,
                "INSERT INTO ledger_entry (idx, leaf_hash, envelope, predicate_type, project, "
                "image_id, signer, integrated_us, diff_ids) "
                "VALUES (:i, :h, :e, :t, :p, :img, 'x', 0, :d)",
                i=SIZE + 1,
                h=merkle.leaf_hash(late),
                e=late,
                t=cols.predicate_type,
                p=cols.project,
                img=cols.image_id,
                d=" ".join(cols.diff_ids),
            )
            rebuild_tree(conn)
        report = lg.verify()
        first = report.first
        assert first is not None and (first.index, first.kind) == (SIZE + 1, "key-not-valid")
        assert all(p.index is None or p.index >= SIZE + 1 for p in report.problems)


@pytest.mark.slow
def test_parallel_verify_agrees(env: LedgerEnv) -> None:
    """Worker processes over many chunks find the same first problem."""
    with build(env) as lg:
        report = lg.verify(workers=2, chunk_size=2)
        assert report.ok and report.entries_checked == SIZE, report.problems
        reorder_rows(lg, env)
        report = lg.verify(workers=2, chunk_size=2)
        first = report.first
        assert first is not None and (first.index, first.kind) == (3, "reordered")
