"""A schema-1 ledger (made by escrow before the append path was reworked) is migrated
in place when it is opened: every entry, hash, checkpoint and key kept, every proof the
same, the queries answered from the new index.

``tests/assets/ledger-v1`` was written by escrow at commit f76e810: a log key, a build
key and 10 entries (the build key's key event, then builds 1..9 of projects alpha (odd)
and beta (even)), with checkpoints kept every 4 entries.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from ledger_helpers import ASSETS, LedgerEnv, diff_ids, manifest, raw_sign
from ledger_v1 import load_v1
from test_independent_reference import leaf_hash as ref_leaf_hash
from test_independent_reference import mth as ref_mth
from test_independent_reference import verify_consistency as ref_verify_consistency

from escrow.ledger import merkle
from escrow.ledger.checkpoint import verify_checkpoint


def v1_home(tmp_path: Path) -> tuple[LedgerEnv, Path]:
    home = tmp_path / "home"
    shutil.copytree(ASSETS / "ledger-v1", home)
    db = home / "ledger.db"
    return LedgerEnv.load(home, f"sqlite:///{db}"), db


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


def names(url: str) -> set[str]:
    """Tables and indexes in the database at ``url``."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        found = inspect(engine)
        out = set(found.get_table_names())
        for table in list(out):
            out |= {ix["name"] for ix in found.get_indexes(table) if ix["name"]}
        return out
    finally:
        engine.dispose()


def test_migration_on_both_databases(db_url: str, tmp_path: Path) -> None:
    """The schema-1 ledger copied into schema-1 tables on SQLite and on PostgreSQL: opening
    it migrates it, with the same checkpoint, entries, queries and verification."""
    home = tmp_path / "home"
    shutil.copytree(ASSETS / "ledger-v1", home, ignore=shutil.ignore_patterns("ledger.db"))
    (tmp_path / "db").mkdir(exist_ok=True)  # the SQLite URL's folder
    load_v1(ASSETS / "ledger-v1" / "ledger.db", db_url)
    assert {"ledger_head", "ledger_diff_id", "ix_ledger_entry_project"} <= names(db_url)
    with sqlite3.connect(ASSETS / "ledger-v1" / "ledger.db") as conn:
        old_note = conn.execute("SELECT note FROM ledger_head").fetchone()[0]
    env = LedgerEnv.load(home, db_url)
    with env.open() as lg:
        assert lg.checkpoint().note == old_note and lg.size() == 10
        assert lg.verify().ok
        assert [e.index for e in lg.entries(project="beta")] == [2, 4, 6, 8]
        shared = diff_ids(manifest(1, tag="v1"))[0]
        found: list[Any] = lg.entries(diff_id=shared, since=lg.get(5).integrated_at)
        assert [e.index for e in found] == [5, 6, 7, 8, 9]
        entry, created = lg.append(raw_sign(manifest(12, tag="v1"), env.build_key))
        assert created and entry.index == 10 and lg.verify().ok
    left = names(db_url)
    assert "ledger_term" in left
    assert not {"ledger_head", "ledger_diff_id", "ix_ledger_entry_project"} & left


def test_a_schema_1_ledger_is_migrated_when_opened(tmp_path: Path) -> None:
    env, db = v1_home(tmp_path)
    assert {"ledger_head", "ledger_diff_id", "ix_ledger_entry_project"} <= tables(db)
    with sqlite3.connect(db) as conn:
        envelopes = [bytes(r[0]) for r in conn.execute("SELECT envelope FROM ledger_entry")]
        old_note = conn.execute("SELECT note FROM ledger_head").fetchone()[0]
    # the root, recomputed from the stored bytes by RFC 9162 reference code
    leaves = [ref_leaf_hash(e) for e in envelopes]
    assert len(leaves) == 10
    root = ref_mth(leaves)

    with env.open() as lg:
        assert lg.size() == 10
        cp = lg.checkpoint()
        assert cp.note == old_note and cp.root == root == lg.root()
        assert [c.size for c in lg.checkpoints()] == [4, 8]
        report = lg.verify()
        assert report.ok and report.entries_checked == 10, report.problems
        assert [e.index for e in lg.entries(project="alpha")] == [1, 3, 5, 7, 9]
        assert [e.index for e in lg.entries(project="beta", after=4)] == [6, 8]
        shared = diff_ids(manifest(1, tag="v1"))[0]
        assert len(lg.entries(diff_id=shared)) == 9
        own = diff_ids(manifest(7, tag="v1"))[2]
        assert [e.index for e in lg.entries(diff_id=own)] == [7]
        assert lg.entries(signer=env.build_key.keyid, limit=1)[0].index == 1
        # the log goes on from where it was: same keys, proofs against the old checkpoint
        entry, created = lg.append(raw_sign(manifest(10, tag="v1"), env.build_key))
        assert created and entry.index == 10
        proof = lg.consistency_proof(10)
        assert merkle.verify_consistency(10, 11, root, lg.root(), proof)
        new_leaves = [*leaves, ref_leaf_hash(lg.get(10).envelope)]
        assert lg.root() == ref_mth(new_leaves)
        assert ref_verify_consistency(10, 11, root, lg.root(), proof)
        assert lg.verify().ok

    left = tables(db)
    assert "ledger_term" in left
    assert not {"ledger_head", "ledger_diff_id", "ix_ledger_entry_project"} & left
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM ledger_meta WHERE name = 'schema'").fetchone() == (
            "2",
        )


def test_the_migrated_ledger_keeps_the_old_checkpoint_verifiable(tmp_path: Path) -> None:
    """An auditor's checkpoint saved before the migration is still extended by the log."""
    env, _db = v1_home(tmp_path)
    with sqlite3.connect(_db) as conn:
        old_note = conn.execute("SELECT note FROM ledger_head").fetchone()[0]
    with env.open() as lg:
        old = verify_checkpoint(old_note, lg.verifier_key())
        lg.append(raw_sign(manifest(11, tag="v1"), env.build_key))
        new = lg.checkpoint()
        proof = lg.consistency_proof(old.size, new.size)
        assert merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        assert ref_verify_consistency(old.size, new.size, old.root, new.root, proof)
        leaves = [ref_leaf_hash(lg.get(i).envelope) for i in range(new.size)]
        assert (old.root, new.root) == (ref_mth(leaves[: old.size]), ref_mth(leaves))


def test_checkpoints_of_earlier_sizes_after_the_migration(tmp_path: Path) -> None:
    """Entries appended before schema 2 kept no checkpoint of their own: those of the sizes
    schema 1 kept (every 4th here, and the last) are found; the others are refused in one
    sentence; every entry appended since has its own."""
    import pytest

    from escrow.errors import InputError

    env, _db = v1_home(tmp_path)
    with env.open() as lg:
        assert [lg.checkpoint(n).size for n in (4, 8, 10)] == [4, 8, 10]
        with pytest.raises(InputError, match="keeps no signed checkpoint of size 5"):
            lg.checkpoint(5)
        lg.append(raw_sign(manifest(13, tag="v1"), env.build_key))
        assert lg.checkpoint(11) == lg.checkpoint()
