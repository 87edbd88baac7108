"""The ledger's database tables (SQLModel), private to :mod:`escrow.ledger.store`.

* ``ledger_entry`` — one row per leaf: the exact envelope bytes, the leaf hash and the
  indexed query columns (project, image ID, signer, predicate type, time);
* ``ledger_diff_id`` — (diff ID, entry index) pairs for layer queries;
* ``ledger_node`` — every complete-subtree hash, at :func:`merkle.stored_index`;
* ``ledger_head`` — one row: tree size, root, latest signed checkpoint, the
  right-edge subtree hashes (to append without reading), and a key-table version;
* ``ledger_checkpoint`` — signed checkpoints kept for later consistency checks;
* ``ledger_key`` — registered signing keys and their status (derived from key events);
* ``ledger_meta`` — the log's identity (origin, log public key).

Times are integer microseconds since the Unix epoch (UTC), portable and indexable.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text
from sqlmodel import Field, SQLModel

#: 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY (the rowid) otherwise.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class EntryRow(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (
        Index("ix_ledger_entry_project", "project", "idx"),
        Index("ix_ledger_entry_image_id", "image_id", "idx"),
        Index("ix_ledger_entry_signer", "signer", "idx"),
        Index("ix_ledger_entry_predicate_type", "predicate_type", "idx"),
        Index("ix_ledger_entry_integrated", "integrated_us", "idx"),
    )

    idx: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False, unique=True))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    predicate_type: str = Field(sa_column=Column(String(200), nullable=False))
    project: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    image_id: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    signer: str = Field(sa_column=Column(String(64), nullable=False))
    integrated_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class DiffIdRow(SQLModel, table=True):
    __tablename__ = "ledger_diff_id"

    diff_id: str = Field(sa_column=Column(String(80), primary_key=True))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class NodeRow(SQLModel, table=True):
    __tablename__ = "ledger_node"

    id: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class HeadRow(SQLModel, table=True):
    __tablename__ = "ledger_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    frontier: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_version: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "ledger_checkpoint"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class KeyRow(SQLModel, table=True):
    __tablename__ = "ledger_key"

    keyid: str = Field(sa_column=Column(String(64), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    algorithm: str = Field(sa_column=Column(String(20), nullable=False))
    public_pem: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False))
    added_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    added_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    retired_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ended_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class MetaRow(SQLModel, table=True):
    __tablename__ = "ledger_meta"

    name: str = Field(sa_column=Column(String(50), primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


def table(model: type[SQLModel]) -> Table:
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, Table)
    return t


ENTRY = table(EntryRow)
DIFF = table(DiffIdRow)
NODE = table(NodeRow)
HEAD = table(HeadRow)
CHECKPOINT = table(CheckpointRow)
KEY = table(KeyRow)
META = table(MetaRow)
ALL_TABLES = [ENTRY, DIFF, NODE, HEAD, CHECKPOINT, KEY, META]
