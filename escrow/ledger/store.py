"""The ledger: an append-only RFC 9162 transparency log on SQLite or PostgreSQL.

``Ledger.append`` parses a DSSE envelope, validates its statement against its
schema, checks its signature against a key registered and valid at append
time (key events: the log key), and in ONE transaction — serialised by the
database (SQLite ``BEGIN IMMEDIATE`` in WAL mode; PostgreSQL
``pg_advisory_xact_lock``) — stores the envelope with its query columns, the
hashes of the complete subtrees the new leaf finishes, and a new signed
checkpoint.  A process killed mid-append leaves nothing half-written, and
concurrent writers in any number of processes or servers cannot fork the tree.

Proofs and roots are assembled from O(log n) stored complete-subtree hashes
(:mod:`escrow.ledger.merkle`), read in one query.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.config import Settings
from escrow.documents.canonical import canonical_bytes
from escrow.documents.schemas import validate_statement
from escrow.documents.types import BUILD_MANIFEST, KEY_EVENT, REBUILD_VERIFICATION, STATEMENT_TYPE
from escrow.errors import (
    DatabaseUnavailable,
    EscrowError,
    InputError,
    KeyLocked,
    LedgerTamperError,
    SignatureError,
)
from escrow.ledger import merkle
from escrow.ledger.checkpoint import sign_checkpoint, verifier_key_line, verify_checkpoint
from escrow.ledger.models import Checkpoint, Entry, KeyRecord, VerifyReport, rfc3339
from escrow.signing.dsse import Envelope
from escrow.signing.keyfile import ENCRYPTED_MARKER
from escrow.signing.keys import PublicKey, SigningKey
from escrow.text import count

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.engine import Connection, Engine, Row
    from sqlalchemy.pool import PoolProxiedConnection

    #: What :meth:`Ledger._sql` runs on: SQLAlchemy, or the SQLite writer's DBAPI connection.
    _Conn = Connection | sqlite3.Connection

__all__ = ["Checkpoint", "Entry", "KeyRecord", "Ledger", "VerifyReport"]

#: PostgreSQL advisory lock key serialising appends ("escrow" in ASCII).
PG_LOCK_KEY = 0x657363726F77
#: A signed checkpoint is kept in ``ledger_checkpoint`` every this many entries
#: (the latest one is always in ``ledger_head``).
CHECKPOINT_EVERY = 1024
#: Statuses of a registered key.
ACTIVE, REVOKED, RETIRED = "active", "revoked", "retired"


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def to_us(t: datetime) -> int:
    if t.tzinfo is None:
        raise InputError(f"The time {t.isoformat()} has no time zone; give UTC.")
    return int(t.timestamp() * 1_000_000)


def parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"{text!r} is not an RFC 3339 time.") from e
    if t.tzinfo is None:
        raise InputError(f"The time {text!r} has no time zone; add 'Z' for UTC.")
    return t.astimezone(UTC)


# -- database plumbing ------------------------------------------------------------


def redacted(url: str) -> str:
    if url.startswith("sqlite"):
        return url  # a file path: no credentials in it
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as its scheme only
        return url.split(":", 1)[0] + ":…"


def _sqlite_pragmas(dbapi_conn: Any) -> None:
    """Every SQLite connection of the ledger: we issue BEGIN ourselves; WAL, synchronous=FULL."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=120000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def sqlite_file(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL (no driver options, no query), else None."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if path and path != ":memory:" and not any(c in path for c in "?%#"):
                return path
    return None


def _connect_sqlite(path: str) -> sqlite3.Connection:
    """A stdlib connection configured as the SQLAlchemy engine's are (see :func:`make_engine`)."""
    import sqlite3

    db = sqlite3.connect(path, timeout=120, check_same_thread=False, isolation_level=None)
    try:
        _sqlite_pragmas(db)
    except BaseException:
        db.close()
        raise
    return db


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine: SQLite in WAL mode (synchronous=FULL), or PostgreSQL."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise InputError(f"The ledger database URL {redacted(url)!r} is not valid: {e}.") from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise InputError("The SQLite ledger needs a file: use sqlite:////path/to/ledger.db.")
        try:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseUnavailable(
                f"Cannot create the folder of the SQLite ledger {parsed.database}: {e.strerror}."
            ) from e
        engine = create_engine(parsed, connect_args={"timeout": 120, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_conn)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("escrow_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (NoSuchModuleError, ModuleNotFoundError) as e:
            raise InputError(
                f"Unsupported PostgreSQL driver in {redacted(url)!r}.",
                hint="Use postgresql+psycopg://user@host:port/dbname.",
            ) from e
    raise InputError(
        f"Unsupported ledger database {backend!r}.",
        hint="Use sqlite:////path/ledger.db or postgresql+psycopg://….",
    )


def create_missing_tables(engine: Engine, *tables: Any) -> None:
    """Create those of ``tables`` that are missing, in one serialised write transaction.

    For tables that live beside the ledger (the server's tokens and pack jobs).  On
    SQLite the transaction starts with ``BEGIN IMMEDIATE``, so a process starting while
    another writes waits for the write lock; a deferred transaction would read first
    and then fail at once with "database is locked" when it cannot upgrade.  On
    PostgreSQL the ledger's advisory lock keeps servers starting together from racing
    on the catalogue.
    """
    with engine.connect() as conn:
        conn.execution_options(escrow_write=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
            for table in tables:
                table.create(conn, checkfirst=True)


def _reason(error: object) -> str:
    """A driver's message as one clause: its first line, without closing punctuation
    (psycopg adds a second line of advice, "Is the server running…?")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__).rstrip(" .?!:;")


@contextmanager
def db_errors(url: str) -> Iterator[None]:
    """Turn driver failures into :class:`DatabaseUnavailable` (exit 3).

    SQLAlchemy's exceptions are only looked at when SQLAlchemy is loaded: the SQLite
    append path runs on :mod:`sqlite3` alone.
    """
    import sqlite3
    import sys

    try:
        yield
    except sqlite3.OperationalError as e:  # the ledger's own sqlite3 connections
        raise DatabaseUnavailable(
            f"The ledger database {redacted(url)} is unavailable: {_reason(e)}.",
            hint="Check ESCROW_DB_URL and that the database file can be written.",
        ) from e
    except sqlite3.Error as e:
        raise DatabaseUnavailable(
            f"The ledger database {redacted(url)} failed: {_reason(e)}."
        ) from e
    except Exception as e:
        exc: Any = sys.modules.get("sqlalchemy.exc")
        if exc is None or not isinstance(e, exc.SQLAlchemyError):
            raise
        if isinstance(e, exc.OperationalError):
            raise DatabaseUnavailable(
                f"The ledger database {redacted(url)} is unavailable: {_reason(e.orig)}.",
                hint="Check ESCROW_DB_URL and that the database server is running.",
            ) from e
        if isinstance(e, exc.DBAPIError):
            raise DatabaseUnavailable(
                f"The ledger database {redacted(url)} failed: {_reason(e.orig)}."
            ) from e
        raise DatabaseUnavailable(
            f"The ledger database {redacted(url)} failed: {_reason(e)}."
        ) from e


#: How long a writer waits for another writer before giving up (exit 3).
WRITER_WAIT_S = 120.0


def _flock(fd: int, timeout: float) -> None:
    """Take an exclusive ``flock`` on ``fd``, waiting at most ``timeout`` seconds."""
    import fcntl
    import time

    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(
                    f"Another writer has held the ledger for over {timeout:.0f} s.",
                    hint="Check for a stuck escrow process.",
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.005)


# -- what an append needs to know about an envelope -------------------------------


@dataclass(frozen=True)
class Prepared:
    envelope: Envelope
    leaf: bytes
    leaf_hash: bytes
    statement: dict[str, Any]
    predicate_type: str
    project: str | None
    image_id: str | None
    diff_ids: tuple[str, ...]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def index_fields(
    predicate_type: str, statement: Mapping[str, Any]
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """``(project, image_id, diff_ids)`` of a statement (docs/ARCHITECTURE.md)."""
    pred = statement.get("predicate")
    if not isinstance(pred, Mapping):
        return None, None, ()
    if predicate_type == BUILD_MANIFEST:
        build = pred.get("build")
        image = pred.get("image")
        layers = pred.get("layers")
        project = _str_or_none(build.get("project")) if isinstance(build, Mapping) else None
        image_id = _str_or_none(image.get("id")) if isinstance(image, Mapping) else None
        diff_ids: list[str] = []
        if isinstance(layers, list):
            for layer in layers:
                d = _str_or_none(layer.get("diffId")) if isinstance(layer, Mapping) else None
                if d and d not in diff_ids:
                    diff_ids.append(d)
        return project, image_id, tuple(diff_ids)
    if predicate_type == REBUILD_VERIFICATION:
        original = pred.get("original")
        image_id = _str_or_none(original.get("imageId")) if isinstance(original, Mapping) else None
        return _str_or_none(pred.get("project")), image_id, ()
    return None, None, ()


def prepare(envelope: Envelope | bytes | str) -> Prepared:
    """Parse, canonicalise and schema-validate an envelope (no database access)."""
    env = envelope if isinstance(envelope, Envelope) else Envelope.from_bytes(envelope)
    leaf = env.to_bytes()
    statement = env.statement()
    ptype = validate_statement(statement, source=env.payload)
    project, image_id, diff_ids = index_fields(ptype, statement)
    return Prepared(
        envelope=env,
        leaf=leaf,
        leaf_hash=merkle.leaf_hash(leaf),
        statement=statement,
        predicate_type=ptype,
        project=project,
        image_id=image_id,
        diff_ids=diff_ids,
    )


def key_event_statement(
    event: str,
    public: PublicKey,
    name: str,
    effective: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """The in-toto Statement of a key event (docs/ARCHITECTURE.md, "Key events")."""
    keyid = public.keyid
    predicate: dict[str, Any] = {
        "event": event,
        "keyid": keyid,
        "name": name,
        "algorithm": public.type.value,
        "publicKey": public.pem(),
        "effectiveFrom": rfc3339(effective.astimezone(UTC)),
    }
    if reason:
        predicate["reason"] = reason
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"key:{keyid}", "digest": {"sha256": keyid}}],
        "predicateType": KEY_EVENT,
        "predicate": predicate,
    }


# Hot-path SQL, run straight on the driver (SQLAlchemy Core costs ~10x more per statement).
_FIND_SQL = (
    "SELECT idx, leaf_hash, envelope, predicate_type, project, image_id, signer, integrated_us "
    "FROM ledger_entry WHERE leaf_hash = ?"
)
#: The head, and the index of the entry with the leaf hash if there is one (the
#: idempotency check, in the write transaction).
_HEAD_SQL = (
    "SELECT size, frontier, key_version, updated_us, "
    "(SELECT idx FROM ledger_entry WHERE leaf_hash = ?) AS existing FROM ledger_head WHERE id = 1"
)
_INSERT_ENTRY_SQL = (
    "INSERT INTO ledger_entry (idx, leaf_hash, envelope, predicate_type, project, image_id, "
    "signer, integrated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_DIFF_SQL = "INSERT INTO ledger_diff_id (diff_id, idx) VALUES (?, ?)"
_NODE_SQL = "INSERT INTO ledger_node (id, hash) VALUES (?, ?)"
_HEAD_UPDATE_SQL = (
    "UPDATE ledger_head SET size = ?, root = ?, note = ?, frontier = ?, key_version = ?, "
    "updated_us = ? WHERE id = 1"
)
_CHECKPOINT_SQL = "INSERT INTO ledger_checkpoint (size, root, note, created_us) VALUES (?, ?, ?, ?)"
_KEYS_SQL = (
    "SELECT keyid, name, algorithm, public_pem, status, added_us, added_index, revoked_us, "
    "retired_us, reason, ended_index FROM ledger_key"
)
_KEY_VERSION_SQL = "SELECT key_version FROM ledger_head WHERE id = 1"
_KEY_INSERT_SQL = (
    "INSERT INTO ledger_key (keyid, name, algorithm, public_pem, status, added_us, added_index) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_KEY_END_SQL = {
    REVOKED: "UPDATE ledger_key SET status = ?, reason = ?, ended_index = ?, revoked_us = ? "
    "WHERE keyid = ?",
    RETIRED: "UPDATE ledger_key SET status = ?, reason = ?, ended_index = ?, retired_us = ? "
    "WHERE keyid = ?",
}
_META_SQL = "SELECT value FROM ledger_meta WHERE name = ?"
_META_ALL_SQL = "SELECT name, value FROM ledger_meta"
_META_INSERT_SQL = "INSERT INTO ledger_meta (name, value) VALUES (?, ?)"


class _Rows:
    """``.first()``/``.one()`` of a DBAPI cursor, rows with attribute access by column."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def first(self) -> Any:
        row = self._cur.fetchone()
        self._cur.fetchall()  # finish the statement (RETURNING) before the commit
        self._cur.close()
        if row is None:
            return None
        names = tuple(d[0] for d in self._cur.description)
        return _row_type(names)(*row)

    def one(self) -> Any:
        row = self.first()
        if row is None:
            raise DatabaseUnavailable("A row the ledger database must hold is missing.")
        return row

    def all(self) -> list[Any]:
        rows = self._cur.fetchall()
        self._cur.close()
        if not rows:
            return []
        row_type = _row_type(tuple(d[0] for d in self._cur.description))
        return [row_type(*r) for r in rows]


@functools.cache
def _row_type(names: tuple[str, ...]) -> Any:
    return collections.namedtuple("_Row", names)


# -- the ledger -------------------------------------------------------------------


class Ledger:
    """An RFC 9162 Merkle-tree log of DSSE envelopes with signed C2SP checkpoints."""

    checkpoint_every: int = CHECKPOINT_EVERY

    def __init__(
        self,
        engine: Engine | None,
        settings: Settings,
        origin: str,
        log_public: PublicKey | None,
        *,
        writer: sqlite3.Connection | None = None,
    ) -> None:
        self._engine_made = engine
        self._settings = settings
        self.url = settings.db_url
        self.origin = origin
        self._log_public = log_public
        self._log_key: SigningKey | None = None
        self._pg = (
            engine.dialect.name == "postgresql"
            if engine is not None
            else settings.db_url.startswith("postgresql")
        )
        self._sqlite_file = None if self._pg else sqlite_file(settings.db_url)
        self._key_cache: dict[str, PublicKey] = {}
        self._keys: dict[str, Any] | None = None  # the key table, as of _keys_version
        self._keys_version = -1
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        # SQLite: the writer's own connection, held from the first write until close():
        # a stdlib connection to a plain sqlite:/// file, else one out of the pool
        self._writer: sqlite3.Connection | None = writer
        self._writer_proxy: PoolProxiedConnection | None = None
        self._engine_lock = threading.Lock()

    @property
    def _engine(self) -> Engine:
        """The SQLAlchemy engine, made on first use: appending to an existing SQLite
        ledger needs only :mod:`sqlite3` (SQLAlchemy costs ~0.2 s of CPU to import)."""
        with self._engine_lock:
            if self._engine_made is None:
                self._engine_made = make_engine(self.url)
            return self._engine_made

    # -- opening ------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings) -> Ledger:
        """Open (creating the tables if missing) the ledger at ``settings.db_url``."""
        path = sqlite_file(settings.db_url)
        if path is not None and os.path.isfile(path):
            ready = cls._open_sqlite(settings, path)
            if ready is not None:
                return ready
        engine = make_engine(settings.db_url)
        try:
            log_public = cls._log_public_from_files(settings)
            with db_errors(settings.db_url):
                origin, stored_pub = cls._initialise(engine, settings, log_public)
        except BaseException:
            engine.dispose()
            raise
        try:
            cls._check_log_key(settings, log_public, stored_pub)
        except KeyLocked:
            engine.dispose()
            raise
        return cls(engine, settings, origin, log_public or stored_pub)

    @staticmethod
    def _check_log_key(
        settings: Settings, log_public: PublicKey | None, stored: PublicKey | None
    ) -> None:
        """:class:`KeyLocked` unless the log key files are the key the ledger was made with."""
        if log_public is not None and stored is not None and log_public.keyid != stored.keyid:
            raise KeyLocked(
                f"The log key {settings.log_key_path} does not belong to this ledger "
                f"(it was created with log key {stored.keyid[:16]}…).",
                hint="Point ESCROW_HOME at the matching keys, or use another database.",
            )

    @classmethod
    def _open_sqlite(cls, settings: Settings, path: str) -> Ledger | None:
        """An initialised SQLite ledger opened with :mod:`sqlite3` alone; None when the
        file is not one yet (the general path creates the tables)."""
        import sqlite3

        try:
            db = _connect_sqlite(path)
        except sqlite3.Error:
            return None  # the general path reports it
        try:
            has_head = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_head'"
            ).fetchone()
            meta = dict(db.execute(_META_ALL_SQL).fetchall()) if has_head else {}
            log_public = cls._log_public_from_files(settings)
            if "origin" not in meta or (log_public is not None and "log_public_key" not in meta):
                db.close()
                return None
            pem = meta.get("log_public_key")
            stored = PublicKey.from_pem(pem) if pem else None
            cls._check_log_key(settings, log_public, stored)
        except sqlite3.Error:
            db.close()
            return None
        except BaseException:
            db.close()
            raise
        return cls(None, settings, str(meta["origin"]), log_public or stored, writer=db)

    @staticmethod
    def _log_public_from_files(settings: Settings) -> PublicKey | None:
        priv = settings.log_key_path
        pub = priv.with_name(priv.name.replace(".key.pem", "") + ".pub.pem")
        if pub.is_file():
            return PublicKey.from_pem(pub.read_bytes())
        if priv.is_file() and (settings.passphrase or ENCRYPTED_MARKER not in priv.read_bytes()):
            return SigningKey.load(priv, settings.passphrase).public
        return None

    @staticmethod
    def _initialise(
        engine: Engine, settings: Settings, log_public: PublicKey | None
    ) -> tuple[str, PublicKey | None]:
        from sqlalchemy import insert, inspect, select

        from escrow.ledger.tables import ALL_TABLES, HEAD, META, NODE

        with engine.connect() as conn:
            if inspect(conn).has_table("ledger_head"):
                meta = {r[0]: r[1] for r in conn.execute(select(META.c.name, META.c.value))}
                conn.rollback()
                if "origin" in meta:
                    pem = meta.get("log_public_key")
                    return meta["origin"], PublicKey.from_pem(pem) if pem else None
        with engine.connect() as conn:
            conn.execution_options(escrow_write=True)
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
                NODE.metadata.create_all(conn, tables=ALL_TABLES, checkfirst=True)
                meta = {r[0]: r[1] for r in conn.execute(select(META.c.name, META.c.value))}
                if "origin" not in meta:
                    meta["origin"] = settings.origin
                    conn.execute(insert(META), {"name": "origin", "value": settings.origin})
                if "log_public_key" not in meta and log_public is not None:
                    meta["log_public_key"] = log_public.pem()
                    conn.execute(
                        insert(META), {"name": "log_public_key", "value": log_public.pem()}
                    )
                if conn.execute(select(HEAD.c.id)).first() is None:
                    conn.execute(
                        insert(HEAD),
                        {
                            "id": 1,
                            "size": 0,
                            "root": merkle.EMPTY_ROOT,
                            "note": "",
                            "frontier": b"",
                            "key_version": 0,
                            "updated_us": now_us(),
                        },
                    )
        pem = meta.get("log_public_key")
        return meta["origin"], PublicKey.from_pem(pem) if pem else None

    def close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            proxy, self._writer_proxy = self._writer_proxy, None
            if proxy is not None:
                proxy.close()  # back to the pool
            elif writer is not None:
                writer.close()
        if self._engine_made is not None:
            self._engine_made.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------
    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read connection; ``snapshot``: every statement sees the same state.

        Stored hashes and entries never change once written, so plain reads on
        PostgreSQL run in autocommit mode (no BEGIN/COMMIT round trips).
        """
        with db_errors(self.url), self._engine.connect() as conn:
            if self._pg and not snapshot:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
                return
            with conn.begin():
                if self._pg:
                    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection | sqlite3.Connection]:
        """One write transaction, serialised against every other writer.

        PostgreSQL: a pooled connection, ``pg_advisory_xact_lock``.  SQLite: the
        ledger's own DBAPI connection (see :meth:`_writer_db`) with ``BEGIN
        IMMEDIATE``/``COMMIT`` issued here, entered under an exclusive ``flock`` on
        ``<db>.lock`` (and a thread lock), so waiting writers queue in the kernel
        instead of SQLite's sleeping busy handler.  Statements go through :meth:`_sql`.
        """
        if self._pg:
            with db_errors(self.url), self._engine.connect() as conn:
                with conn.begin():
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
                    yield conn
            return
        with db_errors(self.url), self._writer_lock():
            db = self._writer_db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise

    def _writer_db(self) -> sqlite3.Connection:
        """The SQLite writer's connection (WAL, synchronous=FULL), opened once and kept
        until :meth:`close`: no pool checkout or SQLAlchemy event per append.  A plain
        ``sqlite:///`` file gets a :mod:`sqlite3` connection of its own; other SQLite
        URLs one checked out of the engine's pool.  Call with ``self._lock`` held."""
        if self._writer is None:
            if self._sqlite_file is not None:
                self._writer = _connect_sqlite(self._sqlite_file)
            else:
                self._writer_proxy = self._engine.raw_connection()
                self._writer = self._writer_proxy.driver_connection
        assert self._writer is not None
        return self._writer

    def _rollback(self, db: sqlite3.Connection) -> None:
        """Roll back the writer's transaction; a connection that cannot is dropped."""
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the original error is the one to report
            writer, self._writer = self._writer, None
            proxy, self._writer_proxy = self._writer_proxy, None
            if proxy is not None:
                proxy.invalidate()
            elif writer is not None:
                writer.close()

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if self._pg:
            yield
            return
        import fcntl

        with self._lock:
            if self._lock_fd is None:
                database = self._sqlite_file
                if database is None:
                    from sqlalchemy.engine import make_url

                    database = make_url(self.url).database
                path = f"{database}.lock"
                try:
                    self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as e:
                    raise DatabaseUnavailable(
                        f"Cannot open the lock file {path}: {e.strerror}."
                    ) from e
            _flock(self._lock_fd, WRITER_WAIT_S)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- keys -------------------------------------------------------------------
    @property
    def log_public(self) -> PublicKey:
        if self._log_public is None:
            self._log_public = self._signer().public
        return self._log_public

    def _signer(self) -> SigningKey:
        if self._log_key is None:
            key = SigningKey.load(self._settings.log_key_path, self._settings.passphrase)
            if self._log_public is not None and key.keyid != self._log_public.keyid:
                raise KeyLocked(
                    f"The log key {self._settings.log_key_path} does not belong to this ledger.",
                    hint="Point ESCROW_HOME at the keys the ledger was created with.",
                )
            self._log_key = key
            if self._log_public is None:
                self._log_public = key.public
                self._remember_log_public(key.public)
        return self._log_key

    def _remember_log_public(self, public: PublicKey) -> None:
        with self._write() as conn:
            if self._sql(conn, _META_SQL, ("log_public_key",)).first() is None:
                self._sql(conn, _META_INSERT_SQL, ("log_public_key", public.pem()))

    def verifier_key(self) -> str:
        """The note verifier key line of the log key: ``<origin>+<hash>+<key>``."""
        return verifier_key_line(self.origin, self.log_public)

    def _public(self, keyid: str, pem: str) -> PublicKey:
        pub = self._key_cache.get(keyid)
        if pub is None:
            pub = PublicKey.from_pem(pem)
            self._key_cache[keyid] = pub
        return pub

    def _key_rows(self, conn: _Conn, keyids: Iterable[str]) -> dict[str, Any]:
        ids = sorted(set(keyids))
        sql = _KEYS_SQL
        if ids:
            sql += f" WHERE keyid IN ({', '.join('?' * len(ids))})"
        return {r.keyid: r for r in self._sql(conn, sql, tuple(ids)).all()}

    @staticmethod
    def _valid_now(row: Any, at_us: int) -> bool:
        if row.status == ACTIVE:
            return True
        return bool(row.status == RETIRED and row.retired_us is not None and row.retired_us > at_us)

    def _record(self, row: Row[Any]) -> KeyRecord:
        status = row.status
        if status == RETIRED and row.retired_us is not None and row.retired_us > now_us():
            status = ACTIVE
        return KeyRecord(
            keyid=row.keyid,
            name=row.name,
            algorithm=row.algorithm,
            public_pem=row.public_pem,
            status=status,
            added_at=from_us(row.added_us),
            added_index=row.added_index,
            revoked_at=from_us(row.revoked_us) if row.revoked_us is not None else None,
            retired_at=from_us(row.retired_us) if row.retired_us is not None else None,
            reason=row.reason,
            ended_index=row.ended_index,
        )

    def keys(self) -> list[KeyRecord]:
        """Registered keys with their status and history, in order of registration."""
        from sqlalchemy import select

        from escrow.ledger.tables import KEY

        with self._read() as conn:
            rows = conn.execute(select(KEY).order_by(KEY.c.added_index)).all()
        return [self._record(r) for r in rows]

    def key_status(self, keyid: str) -> tuple[str, str] | None:
        """``(name, status)`` of the registered key ``keyid`` now (``active`` — a retirement
        not yet in force included — ``revoked`` or ``retired``), or ``None`` when it is not
        registered.  Read as an append reads keys (on SQLite, with :mod:`sqlite3` alone)."""
        row = self._cached_keys(refresh=True).get(keyid)
        if row is None:
            return None
        return str(row.name), ACTIVE if self._valid_now(row, now_us()) else str(row.status)

    def key(self, keyid: str) -> KeyRecord:
        """One registered key by full key ID or unique prefix; InputError when unknown."""
        matches = [k for k in self.keys() if k.keyid.startswith(keyid.lower())] if keyid else []
        if len(matches) != 1:
            raise InputError(
                f"No registered key has the ID {keyid!r}."
                if not matches
                else f"The key ID prefix {keyid!r} is ambiguous.",
                hint="List the keys with `escrow keys list`.",
            )
        return matches[0]

    def register_key(self, public: PublicKey, name: str) -> Entry:
        """Append an ``added`` key event for ``public`` (idempotent for an active key)."""
        existing = self._existing_key_entry(public.keyid)
        if existing is not None:
            return existing
        statement = key_event_statement("added", public, name, datetime.now(UTC))
        try:
            entry, _ = self.append(self._sign(statement))
        except InputError:
            existing = self._existing_key_entry(public.keyid)
            if existing is not None:  # registered concurrently by another process
                return existing
            raise
        return entry

    def _existing_key_entry(self, keyid: str) -> Entry | None:
        with self._read() as conn:
            row = self._key_rows(conn, [keyid]).get(keyid)
        if row is None:
            return None
        if row.status == REVOKED:
            raise InputError(
                f"The key {keyid[:16]}… was revoked and cannot be registered again.",
                hint="Generate a new key.",
            )
        return self.get(row.added_index)

    def _key_event_for(
        self, event: str, keyid: str, effective: datetime, reason: str | None
    ) -> Entry:
        rec = self.key(keyid)
        if rec.status != ACTIVE:
            raise InputError(f"The key {rec.keyid[:16]}… is already {rec.status}.")
        public = PublicKey.from_pem(rec.public_pem)
        statement = key_event_statement(event, public, rec.name, effective, reason)
        entry, _ = self.append(self._sign(statement))
        return entry

    def revoke_key(self, keyid: str, reason: str) -> Entry:
        """Append a ``revoked`` key event: the key signs nothing appended from now on."""
        if not reason.strip():
            raise InputError("Give a reason for revoking the key.")
        return self._key_event_for("revoked", keyid, datetime.now(UTC), reason.strip())

    def retire_key(
        self, keyid: str, effective_from: datetime | None = None, reason: str | None = None
    ) -> Entry:
        """Append a ``retired`` key event; the key signs until ``effective_from`` (default now)."""
        effective = effective_from or datetime.now(UTC)
        if effective.tzinfo is None:
            raise InputError("The retirement time needs a time zone (UTC).")
        return self._key_event_for("retired", keyid, effective, reason or "retired")

    def _sign(self, statement: Mapping[str, Any]) -> Envelope:
        return Envelope(payload=canonical_bytes(statement)).signed_by(self._signer())

    # -- appending ----------------------------------------------------------------
    def append(self, envelope: Envelope | bytes | str) -> tuple[Entry, bool]:
        """Append a DSSE envelope; return ``(entry, created)``.

        Idempotent: an envelope already in the log returns its entry with
        ``created=False``.  Raises :class:`InputError`/:class:`SchemaError` for a
        malformed envelope and :class:`SignatureError` when no registered key that
        is valid now (the log key, for key events) signed it; nothing is appended then.
        """
        p = prepare(envelope)
        return self.append_prepared(p)

    def append_prepared(self, p: Prepared) -> tuple[Entry, bool]:
        """:meth:`append` for an envelope :func:`prepare` already checked.

        The signatures are checked before taking the writer lock; whether the
        envelope is already in the log is looked up inside the write transaction.
        """
        candidates = self._verified_signers(p)
        self._signer()  # load the log key before taking the lock
        with self._write() as conn:
            return self._append_locked(conn, p, candidates)

    def append_many(
        self, envelopes: Iterable[Envelope | bytes | str | Prepared]
    ) -> Iterator[tuple[Entry, bool] | EscrowError]:
        """Append each envelope in its own transaction; yield its result or its error."""
        for item in envelopes:
            try:
                p = item if isinstance(item, Prepared) else prepare(item)
                yield self.append_prepared(p)
            except (InputError, SignatureError) as e:
                yield e

    def _find(self, leaf_hash: bytes) -> Entry | None:
        with self._read() as conn:
            row = self._sql(conn, _FIND_SQL, (leaf_hash,)).first()
        return self._entry(row) if row is not None else None

    def _sql(self, conn: _Conn, sql: str, params: Any) -> Any:
        """Run SQL straight on the driver (written with ``?`` placeholders); a list
        of parameter tuples runs it once per tuple.

        ``conn`` is a SQLAlchemy connection, or on SQLite the writer's DBAPI
        connection.  SQLite: on a DBAPI cursor, inside the transaction, with no
        SQLAlchemy statement machinery (about 50 µs a statement less).
        """
        import sqlite3

        many = isinstance(params, list)
        if isinstance(conn, sqlite3.Connection):
            cur = conn.cursor()
        elif self._pg:
            sql = sql.replace("?", "%s")
            return conn.exec_driver_sql(sql, params if many else tuple(params))
        else:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if many:
            cur.executemany(sql, params)
        else:
            cur.execute(sql, tuple(params))
        return _Rows(cur)

    def _load_keys(self, conn: _Conn) -> None:
        """Cache the key table with the head's key version (read in one snapshot)."""
        version = int(self._sql(conn, _KEY_VERSION_SQL, ()).one().key_version)
        self._keys = self._key_rows(conn, ())
        self._keys_version = version

    def _cached_keys(self, *, refresh: bool = False) -> dict[str, Any]:
        if self._keys is None or refresh:
            if self._pg:
                with self._read(snapshot=True) as conn:
                    self._load_keys(conn)
            else:  # one read transaction on the writer's connection (sqlite3 alone)
                with db_errors(self.url), self._lock:
                    db = self._writer_db()
                    db.execute("BEGIN")
                    try:
                        self._load_keys(db)
                    finally:
                        self._rollback(db)
        assert self._keys is not None
        return self._keys

    def _signers_among(self, p: Prepared, keys: Mapping[str, Any]) -> list[str]:
        env = p.envelope
        wanted = {s.keyid for s in env.signatures}
        rows = keys if "" in wanted else {k: keys[k] for k in wanted if k in keys}
        trusted = {k: self._public(k, r.public_pem) for k, r in rows.items()}
        if not trusted:
            return []
        try:
            return list(env.verify(trusted))
        except SignatureError:
            return []

    def _verified_signers(self, p: Prepared) -> list[str]:
        """Key IDs whose signature on the envelope verifies (before taking the lock)."""
        env = p.envelope
        if p.predicate_type == KEY_EVENT:
            try:
                return list(env.verify([self.log_public]))
            except SignatureError as e:
                raise SignatureError(
                    "The key event is not signed by this ledger's log key.",
                    hint="Key events are made by `escrow keys`, which signs them with the log key.",
                ) from e
        good = self._signers_among(p, self._cached_keys())
        if not good:  # perhaps a key registered since the cache was filled
            good = self._signers_among(p, self._cached_keys(refresh=True))
        if not good:
            ids = ", ".join(s.keyid[:16] or "(none)" for s in env.signatures)
            raise SignatureError(
                f"The envelope is not signed by a key registered in this ledger (key IDs: {ids}).",
                hint="Register the key with `escrow keys add`, or sign with a registered key.",
            )
        return good

    def _append_locked(
        self, conn: _Conn, p: Prepared, candidates: Sequence[str]
    ) -> tuple[Entry, bool]:
        head = self._sql(conn, _HEAD_SQL, (p.leaf_hash,)).one()
        if head.existing is not None:  # already in the log: change nothing
            return self._entry(self._sql(conn, _FIND_SQL, (p.leaf_hash,)).one()), False
        at = max(now_us(), head.updated_us)  # integration times never decrease
        n = head.size
        key_version = head.key_version
        if p.predicate_type == KEY_EVENT:
            self._apply_key_event(conn, p.statement, n, at)
            signer: str = self.log_public.keyid
            key_version += 1
            self._keys = None  # re-read after this commit
        else:
            if key_version != self._keys_version or self._keys is None:
                self._load_keys(conn)  # keys changed since we checked: check again
                candidates = self._signers_among(p, self._keys or {})
            rows = self._keys or {}
            valid = [k for k in candidates if k in rows and self._valid_now(rows[k], at)]
            if not valid:
                states = ", ".join(f"{k[:16]}… {rows[k].status}" for k in candidates if k in rows)
                raise SignatureError(
                    f"The envelope is signed only by keys that may not sign now ({states}).",
                    hint="Sign with an active registered key.",
                )
            signer = valid[0]
        params = (n, p.leaf_hash, p.leaf, p.predicate_type, p.project, p.image_id, signer, at)
        self._sql(conn, _INSERT_ENTRY_SQL, params)
        # The new leaf and every subtree it completes, from the right edge of size n.
        frontier = [head.frontier[i : i + 32] for i in range(0, len(head.frontier), 32)]
        h = p.leaf_hash
        nodes = [(merkle.stored_count(n), h)]
        level = 0
        while (n >> level) & 1:
            h = merkle.node_hash(frontier.pop(), h)
            level += 1
            nodes.append((merkle.stored_count(n) + level, h))
        frontier.append(h)
        root = merkle.hash_of_nodes(frontier)
        size = n + 1
        note = sign_checkpoint(self.origin, size, root, self._signer(), self.origin)
        if p.diff_ids:
            self._sql(conn, _DIFF_SQL, [(d, n) for d in p.diff_ids])
        self._sql(conn, _NODE_SQL, list(nodes))
        self._sql(conn, _HEAD_UPDATE_SQL, (size, root, note, b"".join(frontier), key_version, at))
        if size % self.checkpoint_every == 0:
            self._sql(conn, _CHECKPOINT_SQL, (size, root, note, at))
        entry = Entry(
            index=n,
            leaf_hash=p.leaf_hash.hex(),
            envelope=p.leaf,
            predicate_type=p.predicate_type,
            project=p.project,
            image_id=p.image_id,
            signer=signer,
            integrated_at=from_us(at),
        )
        return entry, True

    def _apply_key_event(
        self, conn: _Conn, statement: Mapping[str, Any], index: int, at: int
    ) -> None:
        pred = statement["predicate"]
        keyid = pred["keyid"]
        if statement["subject"][0]["digest"]["sha256"] != keyid:
            raise InputError("The key event's subject digest is not its key ID.")
        public = PublicKey.from_pem(pred["publicKey"])
        if public.keyid != keyid or public.type.value != pred["algorithm"]:
            raise InputError("The key event's key ID or algorithm does not match its public key.")
        row = self._key_rows(conn, [keyid]).get(keyid)
        event = pred["event"]
        effective = to_us(parse_time(pred["effectiveFrom"]))
        if event == "added":
            if row is not None:
                raise InputError(f"The key {keyid[:16]}… is already registered.")
            params = (keyid, pred["name"], pred["algorithm"], pred["publicKey"], ACTIVE, at, index)
            self._sql(conn, _KEY_INSERT_SQL, params)
            return
        if row is None:
            raise InputError(f"The key {keyid[:16]}… is not registered.")
        if row.status == REVOKED or (event == "retired" and row.status == RETIRED):
            raise InputError(f"The key {keyid[:16]}… is already {row.status}.")
        ended = at if event == REVOKED else max(effective, at)
        self._sql(conn, _KEY_END_SQL[event], (event, pred.get("reason"), index, ended, keyid))

    # -- reading ------------------------------------------------------------------
    @staticmethod
    def _entry(row: Row[Any]) -> Entry:
        return Entry(
            index=row.idx,
            leaf_hash=bytes(row.leaf_hash).hex(),
            envelope=bytes(row.envelope),
            predicate_type=row.predicate_type,
            project=row.project,
            image_id=row.image_id,
            signer=row.signer,
            integrated_at=from_us(row.integrated_us),
        )

    def size(self) -> int:
        """Number of entries in the log (the latest checkpoint's tree size)."""
        from sqlalchemy import select

        from escrow.ledger.tables import HEAD

        with self._read() as conn:
            return int(conn.execute(select(HEAD.c.size).where(HEAD.c.id == 1)).scalar_one())

    def get(self, index: int) -> Entry:
        """The entry at ``index``; InputError when there is none."""
        from sqlalchemy import select

        from escrow.ledger.tables import ENTRY

        with self._read() as conn:
            row = conn.execute(select(ENTRY).where(ENTRY.c.idx == index)).first()
        if row is None or index < 0:
            raise InputError(
                f"The ledger has no entry {index} "
                f"(it holds {count(self.size(), 'entry', 'entries')}, from 0)."
            )
        return self._entry(row)

    def get_by_leaf_hash(self, leaf_hash_hex: str) -> Entry:
        try:
            h = bytes.fromhex(leaf_hash_hex)
        except ValueError as e:
            raise InputError(f"{leaf_hash_hex!r} is not a hex leaf hash.") from e
        entry = self._find(h)
        if entry is None:
            raise InputError(f"The ledger has no entry with leaf hash {leaf_hash_hex}.")
        return entry

    def entries(
        self,
        *,
        project: str | None = None,
        image_id: str | None = None,
        diff_id: str | None = None,
        signer: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        predicate_type: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        """Entries matching every given filter, oldest first, through indexed columns.

        Pagination: pass the last index you received as ``after`` to get the next page.
        ``since`` is inclusive, ``until`` exclusive.
        """
        from sqlalchemy import select

        from escrow.ledger.tables import DIFF, ENTRY

        if limit < 1:
            raise InputError("The page size (limit) must be at least 1.")
        stmt = select(ENTRY)
        if project is not None:
            stmt = stmt.where(ENTRY.c.project == project)
        if image_id is not None:
            stmt = stmt.where(ENTRY.c.image_id == image_id)
        if diff_id is not None:
            stmt = stmt.where(ENTRY.c.idx.in_(select(DIFF.c.idx).where(DIFF.c.diff_id == diff_id)))
        if signer is not None:
            stmt = stmt.where(ENTRY.c.signer == signer)
        if predicate_type is not None:
            stmt = stmt.where(ENTRY.c.predicate_type == predicate_type)
        if after is not None:
            stmt = stmt.where(ENTRY.c.idx > after)
        stmt = stmt.order_by(ENTRY.c.idx).limit(limit)
        with self._read() as conn:
            # integration times never decrease along the log, so a time range is an
            # index range, found with two seeks on the time index
            if since is not None:
                first = self._first_at_or_after(conn, to_us(since))
                if first is None:
                    return []
                stmt = stmt.where(ENTRY.c.idx >= first)
            if until is not None:
                end = self._first_at_or_after(conn, to_us(until))
                if end is not None:
                    stmt = stmt.where(ENTRY.c.idx < end)
            return [self._entry(r) for r in conn.execute(stmt)]

    @staticmethod
    def _first_at_or_after(conn: Connection, us: int) -> int | None:
        from sqlalchemy import select

        from escrow.ledger.tables import ENTRY

        row = conn.execute(
            select(ENTRY.c.idx)
            .where(ENTRY.c.integrated_us >= us)
            .order_by(ENTRY.c.integrated_us, ENTRY.c.idx)
            .limit(1)
        ).first()
        return None if row is None else int(row.idx)

    # -- hashes and proofs ----------------------------------------------------------
    def _tree_size(self, conn: Connection, tree_size: int | None) -> int:
        from sqlalchemy import select

        from escrow.ledger.tables import HEAD

        current = int(conn.execute(select(HEAD.c.size).where(HEAD.c.id == 1)).scalar_one())
        if tree_size is None:
            return current
        if not 0 <= tree_size <= current:
            raise InputError(
                f"The tree size {tree_size} is not between 0 and the log's size {current}."
            )
        return tree_size

    def _hashes(self, conn: Connection, nodes: Sequence[merkle.Node]) -> dict[merkle.Node, bytes]:
        from sqlalchemy import select

        from escrow.ledger.tables import NODE

        if not nodes:
            return {}
        ids = {merkle.stored_index(lv, i): (lv, i) for lv, i in nodes}
        rows = conn.execute(select(NODE.c.id, NODE.c.hash).where(NODE.c.id.in_(list(ids))))
        found = {ids[r.id]: bytes(r.hash) for r in rows}
        missing = [n for n in nodes if n not in found]
        if missing:
            lv, i = missing[0]
            raise LedgerTamperError(
                f"The stored hash of the subtree at level {lv}, index {i} is missing.",
                index=i << lv,
                kind="subtree-hash",
                hint="Run `escrow ledger verify`.",
            )
        return found

    def root(self, tree_size: int | None = None) -> bytes:
        """MTH of the first ``tree_size`` entries (default: all), from stored hashes."""
        with self._read() as conn:
            size = self._tree_size(conn, tree_size)
            nodes = merkle.range_nodes(0, size)
            found = self._hashes(conn, nodes)
        return merkle.hash_of_nodes([found[n] for n in nodes])

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``tree_size``."""
        with self._read() as conn:
            size = self._tree_size(conn, tree_size)
            if not 0 <= index < size:
                raise InputError(f"The entry {index} is not in a tree of size {size}.")
            plan = merkle.inclusion_plan(index, size)
            return merkle.assemble(plan, self._hashes(conn, merkle.plan_nodes(plan)))

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``old`` to ``new`` (default: now)."""
        with self._read() as conn:
            size = self._tree_size(conn, new)
            if not 0 <= old <= size:
                raise InputError(f"The old size {old} is not between 0 and the new size {size}.")
            plan = merkle.consistency_plan(old, size)
            return merkle.assemble(plan, self._hashes(conn, merkle.plan_nodes(plan)))

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The latest signed checkpoint (signed with every append)."""
        from sqlalchemy import select

        from escrow.ledger.tables import HEAD

        with self._read() as conn:
            head = conn.execute(select(HEAD).where(HEAD.c.id == 1)).one()
        if not head.note:  # an empty log: sign the empty tree now
            note = sign_checkpoint(self.origin, 0, merkle.EMPTY_ROOT, self._signer(), self.origin)
            return Checkpoint(origin=self.origin, size=0, root=merkle.EMPTY_ROOT, note=note)
        return verify_checkpoint(head.note, self.verifier_key())

    def checkpoints(self) -> list[Checkpoint]:
        """The retained signed checkpoints (every :attr:`checkpoint_every` entries)."""
        from sqlalchemy import select

        from escrow.ledger.tables import CHECKPOINT

        with self._read() as conn:
            rows = conn.execute(select(CHECKPOINT).order_by(CHECKPOINT.c.size)).all()
        return [
            Checkpoint(origin=self.origin, size=r.size, root=bytes(r.root), note=r.note)
            for r in rows
        ]

    # -- verification -----------------------------------------------------------------
    def verify(self, *, workers: int | None = None, chunk_size: int | None = None) -> VerifyReport:
        """Re-derive every leaf hash, subtree hash and root from the stored bytes, check
        every signature against the key valid at that position and every checkpoint
        against the log key; see :mod:`escrow.ledger.verify`."""
        from escrow.ledger.verify import verify_ledger

        return verify_ledger(self, workers=workers, chunk_size=chunk_size)
