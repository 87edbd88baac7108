"""The ledger's database tables (SQLAlchemy Core), private to :mod:`escrow.ledger.store`.

* ``ledger_entry`` — one row per leaf: the exact envelope bytes, the leaf hash (unique:
  appending an envelope twice returns the first entry), the query fields (project,
  image ID, diff IDs, signer, predicate type, time) and the signed checkpoint of the
  tree this entry completes (the latest checkpoint is the last row's);
* ``ledger_node`` — every complete-subtree hash, at :func:`merkle.stored_index`;
* ``ledger_term`` — the query index: ``(idx, kind, value)`` for each query field of each
  entry, written for entries in batches (:attr:`Ledger.index_every`); entries past
  ``ledger_meta.indexed`` are searched through their own row (at most a batch of them);
* ``ledger_checkpoint`` — signed checkpoints kept for later consistency checks;
* ``ledger_key`` — registered signing keys and their status (derived from key events);
* ``ledger_meta`` — the log's identity (origin, log public key), the schema version, the
  key-table version and how many entries ``ledger_term`` covers.

Schema 2: an append writes one entry row and nothing else — its subtree hashes and query
index are written for every :attr:`Ledger.index_every` entries; no secondary index, no head
row (docs/DESIGN-NOTES.md, "The append path (schema 2)").
Schema 1 (a head row, five indexes on ``ledger_entry`` and a ``ledger_diff_id`` table)
is migrated when the ledger is opened (:func:`escrow.ledger.store.migrate_v1`).

Times are integer microseconds since the Unix epoch (UTC); integration times never
decrease along the log, so a time range is an index range (a binary search).

SQLAlchemy Core tables, not SQLModel models: the ledger only ever reads and writes
rows with SQL of its own, and importing SQLModel (with pydantic) costs ~0.3 s of
CPU in every command that opens the ledger — ``escrow build`` included.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

#: 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY (the rowid) otherwise.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

ENTRY = Table(
    "ledger_entry",
    metadata,
    Column("idx", BigId, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary, nullable=False, unique=True),
    Column("envelope", LargeBinary, nullable=False),
    Column("predicate_type", String(200), nullable=False),
    Column("project", String(200), nullable=True),
    Column("image_id", String(80), nullable=True),
    Column("signer", String(64), nullable=False),
    Column("integrated_us", BigInteger, nullable=False),
    Column("diff_ids", Text, nullable=True),  # space-separated, as in the manifest
    Column("note", Text, nullable=True),  # the signed checkpoint of size idx + 1
)

TERM = Table(
    "ledger_term",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(10), primary_key=True),
    Column("value", String(200), primary_key=True),
    Index("ix_ledger_term_lookup", "kind", "value", "idx"),
    # SQLite: the primary key is the table (no rowid b-tree beside it)
    sqlite_with_rowid=False,
)

NODE = Table(
    "ledger_node",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

CHECKPOINT = Table(
    "ledger_checkpoint",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

KEY = Table(
    "ledger_key",
    metadata,
    Column("keyid", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("algorithm", String(20), nullable=False),
    Column("public_pem", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("added_us", BigInteger, nullable=False),
    Column("added_index", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=True),
    Column("retired_us", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
    Column("ended_index", BigInteger, nullable=True),
)

META = Table(
    "ledger_meta",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", Text, nullable=False),
)

ALL_TABLES = [ENTRY, NODE, TERM, CHECKPOINT, KEY, META]
