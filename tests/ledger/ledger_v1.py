"""The ledger's tables as escrow wrote them before schema 2 (at commit f76e810), to make
schema-1 ledgers on any database for the migration tests; and a loader that copies the
schema-1 ledger in ``tests/assets/ledger-v1`` into such tables."""

from __future__ import annotations

from pathlib import Path

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
    Index("ix_ledger_entry_project", "project", "idx"),
    Index("ix_ledger_entry_image_id", "image_id", "idx"),
    Index("ix_ledger_entry_signer", "signer", "idx"),
    Index("ix_ledger_entry_predicate_type", "predicate_type", "idx"),
    Index("ix_ledger_entry_integrated", "integrated_us", "idx"),
)

DIFF = Table(
    "ledger_diff_id",
    metadata,
    Column("diff_id", String(80), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    # SQLite: the primary key is the table (a rowid table would be a second b-tree
    # holding the same pairs, one more page for every append to write)
    sqlite_with_rowid=False,
)

NODE = Table(
    "ledger_node",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

HEAD = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("key_version", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
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

ALL_TABLES = [ENTRY, DIFF, NODE, HEAD, CHECKPOINT, KEY, META]


def load_v1(asset_db: Path, url: str) -> None:
    """Create the schema-1 tables at ``url`` and copy every row of ``asset_db`` into them."""
    import sqlite3

    from sqlalchemy import create_engine, insert

    source = sqlite3.connect(asset_db)
    source.row_factory = sqlite3.Row
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            for table in ALL_TABLES:
                rows = [dict(r) for r in source.execute(f"SELECT * FROM {table.name}")]  # noqa: S608
                if rows:
                    conn.execute(insert(table), rows)
    finally:
        engine.dispose()
        source.close()
