"""The ledger: an append-only RFC 9162 transparency log on SQLite or PostgreSQL.

``Ledger.append`` parses a DSSE envelope, validates its statement against its
schema, checks its signature against a key registered and valid at append
time (key events: the log key), and in ONE transaction — serialised by the
database (SQLite ``BEGIN IMMEDIATE`` in WAL mode; PostgreSQL
``pg_advisory_xact_lock``) — stores the envelope's row: the exact bytes, the leaf
hash, the query fields and the signed checkpoint of the tree it completes.  A
process killed mid-append leaves nothing half-written, and concurrent writers in
any number of processes or servers cannot fork the tree.

What is derived from the rows — the complete-subtree hashes and the query index —
is written for every :data:`INDEX_EVERY` entries, in the transaction of the append
that completes the batch (:func:`index_entries`).  Proofs and roots are assembled
from O(log n) stored hashes and the leaf hashes of the entries after the last
batch (:func:`tree_hashes`); queries read the index and match those entries on
their rows.  :meth:`Ledger.append_many` pipelines a stream of appends.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.config import Settings, hide_query_secrets, new_origin
from escrow.documents.canonical import canonical_bytes
from escrow.documents.schemas import validate_statement
from escrow.documents.types import BUILD_MANIFEST, KEY_EVENT, REBUILD_VERIFICATION, STATEMENT_TYPE
from escrow.errors import (
    DatabaseUnavailable,
    EscrowError,
    InputError,
    KeyLocked,
    LedgerTamperError,
    SchemaError,
    SignatureError,
)
from escrow.ledger import merkle
from escrow.ledger.checkpoint import (
    check_note_name,
    key_events_digest,
    key_events_line,
    sign_checkpoint,
    verifier_key_line,
    verify_checkpoint,
)
from escrow.ledger.models import (
    VERIFY_HINT,
    Checkpoint,
    Entry,
    KeyRecord,
    VerifyReport,
    find_key,
    rfc3339,
    stored_bytes,
)
from escrow.signing.dsse import Envelope, signature_ids
from escrow.signing.keyfile import ENCRYPTED_MARKER, public_key_path
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
#: (every entry's row holds the checkpoint of the tree it completes).
CHECKPOINT_EVERY = 1024
#: Entries are added to the query index (``ledger_term``) in batches of this many, in
#: the transaction of the append that completes a batch; queries read the entries
#: past the last batch from their own rows (docs/DESIGN-NOTES.md).
INDEX_EVERY = 64
#: The largest index a database can store (SQLite ``INTEGER``, PostgreSQL ``bigint``).
MAX_INDEX = 2**63 - 1
#: The current schema (``ledger_meta.schema``); schema 1 is migrated on opening.
SCHEMA = "2"
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
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as its scheme only
        return url.split(":", 1)[0] + ":…"
    if "@" in (parsed.host or ""):
        # a password holding an unencoded @: SQLAlchemy splits at the first @, and the
        # rest of the password became the host; show nothing before the last @
        scheme, _, rest = url.partition("://")
        return hide_query_secrets(f"{scheme}://***@{rest.rsplit('@', 1)[-1]}")
    return hide_query_secrets(parsed.render_as_string(hide_password=True))


#: What to do about a database that holds no ledger.
NO_LEDGER_HINT = "Run `escrow init` first, or set ESCROW_HOME or ESCROW_DB_URL to the ledger."


#: Bytes of -wal file SQLite keeps once it starts it again from the beginning.  A reader
#: holding one snapshot for long (a `sqlite3 .backup`, an open shell) keeps checkpoints
#: from finishing, so the -wal file grows with every append meanwhile; without a limit a
#: long-running writer (`escrow serve`) would then keep the file at that size for good.
#: Twice SQLite's automatic checkpoint (1,000 pages of 4 KiB), so that a -wal file is
#: cut only after such a stall.
WAL_SIZE_LIMIT = 8 << 20


def _sqlite_pragmas(dbapi_conn: Any, *, readonly: bool = False) -> None:
    """Every SQLite connection of the ledger: we issue BEGIN ourselves; WAL, synchronous=FULL
    (a read-only connection changes nothing: it reads the file in the mode it is in)."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=120000")
    if not readonly:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cur.close()


def sqlite_file(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL (no driver options, no query), else None."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if path and path != ":memory:" and not any(c in path for c in "?%#"):
                return path
    return None


def _file_id(path: str) -> tuple[int, int]:
    """``(device, inode)`` of a file: which file a path names (OSError if none)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _connect_sqlite(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A stdlib connection configured as the SQLAlchemy engine's are (see :func:`make_engine`).

    ``readonly``: opened with ``mode=ro``, as every read of a plain SQLite ledger file is.
    A read-write connection that is the last one to close the file copies its -wal file
    into it and deletes the -wal and -shm files: reads must not change an auditor's copy
    of a ledger (nor its -wal file) by merely looking at it.
    """
    import sqlite3

    target = Path(path).absolute().as_uri() + "?mode=ro" if readonly else path
    db = sqlite3.connect(
        target, timeout=120, check_same_thread=False, isolation_level=None, uri=readonly
    )
    try:
        _sqlite_pragmas(db, readonly=readonly)
    except BaseException:
        db.close()
        raise
    return db


#: libpq's ``connect_timeout`` (seconds) unless the URL sets one (``?connect_timeout=N``)
PG_CONNECT_S = 10


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """A SQLAlchemy engine: SQLite in WAL mode (synchronous=FULL), or PostgreSQL.

    ``readonly``: for the reads of a plain ``sqlite:///`` file, connections opened with
    ``mode=ro`` (see :func:`_connect_sqlite`); ignored for other URLs.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError as e:
        if "://" not in url and "@" not in url:  # a path, say: no credentials to hide
            raise InputError(
                f"{url!r} is not a ledger database URL.",
                hint="A SQLite ledger is sqlite:////absolute/path/ledger.db (four slashes), "
                "PostgreSQL postgresql+psycopg://user@host:port/dbname.",
            ) from e
        raise InputError(f"The ledger database URL {redacted(url)!r} is not valid: {e}.") from e
    except ValueError:
        # SQLAlchemy's int() of the port: its message quotes what stood there, which is
        # part of the password when one holds an unencoded @ (user:p@ss:word@host)
        raise InputError(
            f"The ledger database URL {redacted(url)!r} is not valid: its port is not a number.",
            hint="Write it as postgresql+psycopg://user:password@host:port/dbname, with "
            "any @, : or / in the password percent-encoded (%40, %3A, %2F).",
        ) from None
    if "@" in (parsed.host or ""):
        raise InputError(
            f"The ledger database URL {redacted(url)!r} is not valid: its password holds "
            "an unencoded @.",
            hint="Write it as postgresql+psycopg://user:password@host:port/dbname, with "
            "any @, : or / in the password percent-encoded (%40, %3A, %2F).",
        )
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise InputError("The SQLite ledger needs a file: use sqlite:////path/to/ledger.db.")
        file = sqlite_file(url) if readonly else None
        if file is not None:  # connections made and configured by _connect_sqlite
            engine = create_engine(
                parsed, creator=functools.partial(_connect_sqlite, file, readonly=True)
            )
        else:
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DatabaseUnavailable(
                    f"Cannot create the folder of the SQLite ledger {parsed.database}: "
                    f"{e.strerror}."
                ) from e
            engine = create_engine(
                parsed, connect_args={"timeout": 120, "check_same_thread": False}
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                _sqlite_pragmas(dbapi_conn)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("escrow_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        # a host that drops packets silently would otherwise hold every request (and
        # `escrow serve`'s workers) for the system's TCP timeout, minutes
        connect_args = (
            {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_S}
        )
        try:
            return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
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
    """Create those of ``tables`` that are missing, and add to those that exist the
    nullable columns they lack, in one serialised write transaction.

    For tables that live beside the ledger (the server's tokens and pack jobs).  A column
    added to such a table after its first release (``server_pack_job.error_kind``) is added
    to a table an earlier release made (``ALTER TABLE … ADD COLUMN``, found missing in the
    database's catalogue, as :func:`migrate_v1` does for the ledger's own); it is nullable,
    so rows written before, or by an earlier server sharing the database, have none.  On
    SQLite the transaction starts with ``BEGIN IMMEDIATE``, so a process starting while
    another writes waits for the write lock; a deferred transaction would read first
    and then fail at once with "database is locked" when it cannot upgrade.  On
    PostgreSQL the ledger's advisory lock keeps servers starting together from racing
    on the catalogue: one adds what is missing, the others find it.
    """
    from sqlalchemy import inspect

    with engine.connect() as conn:
        conn.execution_options(escrow_write=True)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(_PG_WRITE_SQL)
            for table in tables:
                table.create(conn, checkfirst=True)
                have = {c["name"] for c in inspect(conn).get_columns(table.name)}
                for column in table.columns:
                    if column.name not in have and column.nullable:
                        kind = column.type.compile(dialect=engine.dialect)
                        conn.exec_driver_sql(
                            f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"
                        )
                        logging.getLogger("escrow.ledger").info(
                            "added the column %s to the table %s", column.name, table.name
                        )


def _reason(error: object) -> str:
    """A driver's message as one clause: its first line, without closing punctuation
    (psycopg adds a second line of advice, "Is the server running…?")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__).rstrip(" .?!:;")


def _holds_ledger_tables(path: str) -> bool:
    """Whether the SQLite file ``path`` holds the tables of some escrow ledger (this
    schema's or an older one's), read through a read-only connection."""
    import sqlite3

    try:
        db = _connect_sqlite(path, readonly=True)
    except sqlite3.Error:
        return False
    try:
        names = {
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('ledger_meta', 'ledger_head')"
            )
        }
    except sqlite3.Error:
        return False
    finally:
        db.close()
    return bool(names)


def _unavailable_hint(url: str) -> str:
    """What to check when the database cannot be opened or used."""
    if not url.startswith("sqlite"):
        return "Check ESCROW_DB_URL and that the database server is running."
    path = sqlite_file(url)
    folder = os.path.dirname(os.path.abspath(path)) if path is not None else None
    if folder is not None and os.path.isdir(folder) and not os.access(folder, os.W_OK):
        return (
            f"The folder {folder} is read-only, and SQLite writes its -wal and -shm files "
            "beside the ledger even to read it: make the folder writable, or work on a copy."
        )
    if folder is not None and _disk_full(folder):  # SQLite says "disk I/O error" for it
        return (
            f"The disk holding {folder} is full (SQLite writes its -wal and -shm files beside "
            "the ledger even to read it): free some space there and run the command again."
        )
    return "Check ESCROW_DB_URL and that the database file can be read and written."


#: free bytes under which the disk of a SQLite ledger that failed counts as full
DISK_FULL_BELOW = 256 * 1024


def _disk_full(folder: str) -> bool:
    """Whether the file system of ``folder`` has (next to) no space left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < DISK_FULL_BELOW or st.f_favail == 0


#: SQLSTATEs of a statement cancelled by ``statement_timeout`` (``query_canceled``, also
#: a cancel request) and of a lock not granted within ``lock_timeout``.
_PG_TIMEOUT_STATES = frozenset({"57014", "55P03"})
#: SQLSTATE of ``insufficient_privilege`` ("permission denied for table …", "must be
#: owner of …").
_PG_PRIVILEGE_STATE = "42501"
#: SQLSTATE of ``disk_full`` ("could not extend file …: No space left on device").
_PG_DISK_FULL_STATE = "53100"
#: SQLSTATE of ``read_only_sql_transaction`` ("cannot execute INSERT in a read-only
#: transaction": a role or database with ``default_transaction_read_only``, a standby).
_PG_READ_ONLY_STATE = "25006"
#: SQLSTATE of ``invalid_schema_name`` ("no schema has been selected to create in": a
#: ``search_path`` that names no schema that exists).
_PG_NO_SCHEMA_STATE = "3F000"
#: What escrow does with each kind of object a role may be denied.
_PRIVILEGES = {
    "schema": "USAGE (and CREATE, to make or migrate the ledger's tables)",
    "database": "CONNECT",
    "sequence": "USAGE",
}


def _db_hint(url: str, error: object) -> str:
    """What to check for the driver's ``error``: a timeout and a refused privilege have
    their own causes; anything else is the database's address or the server itself."""
    import re

    reason = _reason(error)
    state = getattr(error, "sqlstate", None)
    timeout = re.search(r"canceling statement due to (statement|lock) timeout", reason)
    if timeout is not None or state in _PG_TIMEOUT_STATES:
        if timeout is None and state == "57014":  # pg_cancel_backend, a shutdown
            return (
                "The database cancelled the statement (an administrator or a shutdown): try again."
            )
        setting = (
            "lock_timeout"
            if state == "55P03" or (timeout is not None and timeout.group(1) == "lock")
            else "statement_timeout"
        )
        return (
            "Another writer or a long transaction held the ledger, or the database role's "
            f"{setting} is too short for this: try again once it is done, or raise the "
            f"role's {setting}."
        )
    if reason.startswith("database is locked") or reason.startswith("database table is locked"):
        return (
            f"Another writer or a long transaction held the ledger for over {WRITER_WAIT_S:.0f} s: "
            "try again once it is done, and check for a stuck escrow process."
        )
    full = state == _PG_DISK_FULL_STATE or "No space left on device" in reason
    if full and not url.startswith("sqlite"):
        return (
            "The database server's disk is full: free some space there (or ask its "
            "administrator to), then run the command again."
        )
    if state == _PG_READ_ONLY_STATE or "in a read-only transaction" in reason:
        return (
            f"The database role {_db_role(url)} may only read here "
            "(default_transaction_read_only, or a standby server): to write, set "
            "ESCROW_DB_URL to the primary server and a role that may write."
        )
    if state == _PG_NO_SCHEMA_STATE and "no schema has been selected" in reason:
        return (
            "The connection's search_path names no schema that exists (the role's setting, "
            "or options=-csearch_path=… in ESCROW_DB_URL): create that schema, or name one "
            "that exists."
        )
    denied = re.search(r"permission denied for (\w+) (\S+)", reason)
    if state == _PG_PRIVILEGE_STATE or denied is not None or reason.startswith("must be owner"):
        role = _db_role(url)
        if denied is None:
            return (
                f"The database role {role} lacks a privilege this needs: grant it, or set "
                "ESCROW_DB_URL to a role that has it."
            )
        kind, name = denied.group(1), denied.group(2)
        needed = _PRIVILEGES.get(kind, "SELECT, INSERT and UPDATE")
        them = "them" if " and " in needed else "it"
        return (
            f"The database role {role} needs {needed} on {kind} {name}: grant {them}, or set "
            f"ESCROW_DB_URL to a role that has {them}."
        )
    return _unavailable_hint(url)


def _db_role(url: str) -> str:
    """The role ``url`` connects as, quoted, or "of ESCROW_DB_URL" when it names none."""
    from urllib.parse import unquote, urlsplit

    try:
        user = urlsplit(url).username
    except ValueError:
        user = None
    return repr(unquote(user)) if user else "of ESCROW_DB_URL"


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
            hint=_db_hint(url, e),
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
                hint=_db_hint(url, e.orig),
            ) from e
        if isinstance(e, exc.DBAPIError):
            hint = _db_hint(url, e.orig)
            raise DatabaseUnavailable(
                f"The ledger database {redacted(url)} failed: {_reason(e.orig)}.",
                hint=None if hint == _unavailable_hint(url) else hint,
            ) from e
        raise DatabaseUnavailable(
            f"The ledger database {redacted(url)} failed: {_reason(e)}."
        ) from e


#: How long a writer waits for another writer before giving up (exit 3).
WRITER_WAIT_S = 120.0

#: What a PostgreSQL write transaction runs first, in one round trip: take the ledger's
#: advisory lock, waiting for another writer up to :data:`WRITER_WAIT_S` whatever the
#: role's ``lock_timeout`` (a role's few milliseconds would fail concurrent appends at
#: once), and commit durably where the role or database sets ``synchronous_commit =
#: off``: an append whose commit was acknowledged has handed out its signed checkpoint,
#: and a server crash must not take it back (the next append would sign another tree
#: of the same size — as SQLite's ``synchronous=FULL``).  Both settings are local to the
#: transaction, and set before the lock is waited for (left to right).
_PG_WRITE_SQL = (
    f"SELECT set_config('lock_timeout', '{int(WRITER_WAIT_S * 1000)}', true), "
    "CASE WHEN current_setting('synchronous_commit') = 'off' "
    "THEN set_config('synchronous_commit', 'on', true) END, "
    f"pg_advisory_xact_lock({PG_LOCK_KEY})"
)


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


def signed_fields(entry: Entry) -> tuple[str | None, str | None, str | None]:
    """``(predicate type, project, image ID)`` as an entry's signed statement states them
    (all ``None`` when it does not decode): what its indexed columns must say."""
    try:
        statement = entry.statement()
    except (EscrowError, ValueError):
        return None, None, None
    ptype = statement.get("predicateType")
    if not isinstance(ptype, str):
        return None, None, None
    project, image_id, _ = index_fields(ptype, statement)
    return ptype, project, image_id


def edited_fields(entry: Entry) -> str:
    """Which of an entry's indexed fields (a database column, a server's answer) disagree
    with its signed statement, as ``"project, image ID"``; empty when none does."""
    shown = (entry.predicate_type, entry.project, entry.image_id)
    names = ("predicate type", "project", "image ID")
    signed = signed_fields(entry)
    return ", ".join(n for n, a, b in zip(names, shown, signed, strict=True) if a != b)


#: Where the statement fields stored in a text column of the ledger's tables are, by
#: predicate type, with the column's length (None: unbounded): the indexed columns
#: (``ledger_entry``, ``ledger_term``), and a key event's ``ledger_key`` row.
_STORED_TEXT: dict[str, tuple[tuple[tuple[str, ...], int | None], ...]] = {
    BUILD_MANIFEST: ((("build", "project"), 200), (("image", "id"), 80)),
    REBUILD_VERIFICATION: ((("project",), 200), (("original", "imageId"), 80)),
    KEY_EVENT: ((("name",), 200), (("reason",), None), (("publicKey",), None)),
}


def _check_stored_text(ptype: str, statement: Mapping[str, Any]) -> None:
    """Refuse a statement whose stored text the columns cannot hold, on every backend alike.

    PostgreSQL text cannot hold U+0000 and enforces the columns' lengths, which SQLite
    ignores: left to the database, such an envelope would fail its transaction as a
    database error (exit 3, ``escrow post`` stopping there, the server answering 503
    "try again") where SQLite stores it.
    """
    pred = statement.get("predicate")
    for path, longest in _STORED_TEXT.get(ptype, ()):
        value: Any = pred
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if not isinstance(value, str):
            continue
        name, pointer = ".".join(path), "/predicate/" + "/".join(path)
        if "\x00" in value:
            raise SchemaError(
                f"The statement's {name} contains a NUL character (\\u0000), "
                "which the ledger cannot store.",
                pointer=pointer,
                hint="Remove it and sign the statement again.",
            )
        if longest is not None and len(value) > longest:
            raise SchemaError(
                f"The statement's {name} is {len(value)} characters long; "
                f"the ledger stores at most {longest}.",
                pointer=pointer,
                hint="Shorten it and sign the statement again.",
            )


def prepare(envelope: Envelope | bytes | str) -> Prepared:
    """Parse, canonicalise and schema-validate an envelope (no database access)."""
    env = envelope if isinstance(envelope, Envelope) else Envelope.from_bytes(envelope)
    leaf = env.to_bytes()
    statement = env.statement(unique=True)
    ptype = validate_statement(statement, source=env.payload)
    _check_stored_text(ptype, statement)
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


def entry_terms(
    idx: int,
    predicate_type: str,
    project: str | None,
    image_id: str | None,
    signer: str,
    diff_ids: str | None,
) -> list[tuple[int, str, str]]:
    """The ``ledger_term`` rows of an entry: ``(idx, kind, value)`` for each query field."""
    out = [(idx, "type", predicate_type), (idx, "signer", signer)]
    if project:
        out.append((idx, "project", project))
    if image_id:
        out.append((idx, "image", image_id))
    out.extend((idx, "diff", d) for d in dict.fromkeys((diff_ids or "").split()))
    return out


def stored_hashes(run: Any, nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The stored hashes of complete subtrees (``ledger_node``); every one must be there."""
    ids = {merkle.stored_index(lv, i): (lv, i) for lv, i in nodes}
    found: dict[merkle.Node, bytes] = {}
    wanted = list(ids)
    for k in range(0, len(wanted), 500):
        part = wanted[k : k + 500]
        marks = ", ".join("?" * len(part))  # placeholders only: the values are parameters
        sql = f"SELECT id, hash FROM ledger_node WHERE id IN ({marks})"  # noqa: S608
        found.update({ids[r.id]: bytes(r.hash) for r in run(sql, tuple(part)).all()})
    if len(found) < len(ids):
        lv, i = min(n for n in ids.values() if n not in found)
        raise LedgerTamperError(
            f"The stored hash of the subtree at level {lv}, index {i} is missing.",
            index=i << lv,
            kind="subtree-hash",
            hint="Run `escrow ledger verify`.",
        )
    return found


def tree_hashes(run: Any, nodes: Sequence[merkle.Node], batched: int) -> dict[merkle.Node, bytes]:
    """Hashes of complete subtrees, read in one or two queries.

    The batches (:func:`index_entries`) store the hash of every complete subtree that
    ends at or before ``batched``; a subtree ending after it is computed from those and
    from the leaf hashes of the (at most a batch of) entries after ``batched``.
    """
    stored: set[merkle.Node] = set()
    tail_end = batched

    def plan(node: merkle.Node) -> None:
        nonlocal tail_end
        lv, i = node
        end = (i + 1) << lv
        if end <= batched:
            stored.add(node)
            return
        tail_end = max(tail_end, end)
        if lv:
            plan((lv - 1, 2 * i))
            plan((lv - 1, 2 * i + 1))

    for node in nodes:
        plan(node)
    known = stored_hashes(run, stored)
    if tail_end > batched:
        for r in run(_LEAVES_SQL, (batched, tail_end)).all():
            known[(0, int(r.idx))] = bytes(r.leaf_hash)

    def hash_of(node: merkle.Node) -> bytes:
        got = known.get(node)
        if got is None:
            lv, i = node
            if lv == 0:
                raise LedgerTamperError(
                    f"The entry {i} is missing.",
                    index=i,
                    kind="deleted",
                    hint="Run `escrow ledger verify`.",
                )
            got = merkle.node_hash(hash_of((lv - 1, 2 * i)), hash_of((lv - 1, 2 * i + 1)))
            known[node] = got
        return got

    return {node: hash_of(node) for node in nodes}


def index_entries(run: Any, start: int, end: int, *, nodes: bool = True) -> None:
    """Write the derived data of entries ``[start, end)`` — their subtree hashes (with
    ``nodes``) and their query-index rows — and record that the batches cover ``end``.

    ``run(sql, params)`` runs SQL in the caller's write transaction.  The subtree hashes
    are computed from the entries' stored leaf hashes and the right edge of the tree
    of ``start`` leaves, which earlier batches stored.
    """
    rows = run(_FIELDS_SQL, (start, end)).all()
    if nodes:
        if [r.idx for r in rows] != list(range(start, end)):
            missing = min(set(range(start, end)) - {r.idx for r in rows})
            raise LedgerTamperError(
                f"The entry {missing} is missing.",
                index=missing,
                kind="deleted",
                hint="Run `escrow ledger verify`.",
            )
        edge = merkle.range_nodes(0, start)
        found = stored_hashes(run, edge)
        frontier = [found[n] for n in edge]
        made: list[tuple[int, bytes]] = []
        for r in rows:
            m = int(r.idx)
            h = bytes(r.leaf_hash)
            base = merkle.stored_count(m)
            made.append((base, h))
            level = 0
            while (m >> level) & 1:
                h = merkle.node_hash(frontier.pop(), h)
                level += 1
                made.append((base + level, h))
            frontier.append(h)
        if made:
            run(_NODE_SQL, made)
    terms = [t for r in rows for t in entry_terms(*r[:6])]
    if terms:
        run(_TERM_SQL, terms)
    run(_SET_META_SQL, (str(end), "indexed"))


def key_events_below(reader: Any, size: int) -> list[tuple[int, bytes]]:
    """``(index, leaf hash)`` of the key events among a log's first ``size`` entries, in
    log order, read through the query index of ``reader`` (a :class:`Ledger`, or a server's
    client); the leaf hash is computed from the stored bytes."""
    events: list[tuple[int, bytes]] = []
    after: int | None = None
    while True:
        page = reader.entries(predicate_type=KEY_EVENT, after=after, limit=PAGE_LIMIT)
        events += [(e.index, merkle.leaf_hash(e.envelope)) for e in page if e.index < size]
        if len(page) < PAGE_LIMIT or page[-1].index >= size:
            return events
        after = page[-1].index


def replay_key_events(events: Iterable[Entry], now: datetime) -> list[KeyRecord]:
    """The keys as the key-event entries ``events`` (in log order) left them, each event
    applied as :meth:`Ledger._apply_key_event` applied it when it was appended; ``now``
    decides whether a retirement is in force yet.  What :meth:`Ledger.keys` gives for
    the whole log, for any prefix of it (the key table holds each key's latest state)."""
    records: dict[str, KeyRecord] = {}
    for entry in events:
        pred = entry.statement()["predicate"]
        keyid, event = str(pred["keyid"]), pred["event"]
        at = entry.integrated_at
        if event == "added" and keyid not in records:
            records[keyid] = KeyRecord(
                keyid=keyid,
                name=str(pred["name"]),
                algorithm=str(pred["algorithm"]),
                public_pem=str(pred["publicKey"]),
                status=ACTIVE,
                added_at=at,
                added_index=entry.index,
            )
        elif event in (REVOKED, RETIRED) and keyid in records:
            rec = records[keyid]
            if rec.revoked_at is not None or (event == RETIRED and rec.retired_at is not None):
                # an event the append refuses (a revoked key changed, a retirement moved),
                # as `ledger verify` reports it: it changes nothing
                continue
            changes: dict[str, Any] = {
                "status": event,
                "reason": pred.get("reason"),
                "ended_index": entry.index,
            }
            if event == REVOKED:
                changes["revoked_at"] = at
            else:
                changes["retired_at"] = max(parse_time(pred["effectiveFrom"]), at)
                changes["retired_index"] = entry.index
            records[keyid] = dataclasses.replace(records[keyid], **changes)
    return [
        dataclasses.replace(r, status=ACTIVE)
        if r.status == RETIRED and r.retired_at is not None and r.retired_at > now
        else r
        for r in sorted(records.values(), key=lambda r: r.added_index)
    ]


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
#: What an append reads first, in its write transaction: the entry with the leaf hash
#: if there is one (the idempotency check), the last entry (the tree's size, and the
#: frontier cache's check) and the key table's version.
_TIP_SQL = (
    "SELECT (SELECT idx FROM ledger_entry WHERE leaf_hash = ?) AS existing, "
    "(SELECT max(idx) FROM ledger_entry) AS last, "
    "(SELECT leaf_hash FROM ledger_entry ORDER BY idx DESC LIMIT 1) AS last_hash, "
    "(SELECT integrated_us FROM ledger_entry ORDER BY idx DESC LIMIT 1) AS last_us, "
    "(SELECT value FROM ledger_meta WHERE name = 'key_version') AS key_version, "
    "(SELECT value FROM ledger_meta WHERE name = 'indexed') AS indexed"
)
_LAST_SQL = "SELECT max(idx) AS last FROM ledger_entry"
#: How far back a retirement's ``effective_from`` may be and still be taken as now
#: (:meth:`Ledger.retire_key`): the time a command read as "now", a client's clock.
RETIRE_GRACE = timedelta(seconds=60)
#: Entries read per page by :meth:`Ledger.key_events_checkpoint`.
PAGE_LIMIT = 500
#: The checkpoint of a tree size: the note of its last entry, else one kept in the table.
_NOTE_AT_SQL = (
    "SELECT coalesce((SELECT note FROM ledger_entry WHERE idx = ?), "
    "(SELECT note FROM ledger_checkpoint WHERE size = ?)) AS note"
)
_ENTRY_COLS = "idx, leaf_hash, envelope, predicate_type, project, image_id, signer, integrated_us"
#: The first entry at or after an index, and its integration time (binary search by time).
_TIME_AT_SQL = "SELECT idx, integrated_us FROM ledger_entry WHERE idx >= ? ORDER BY idx LIMIT 1"
#: The latest signed checkpoint: the note of the last entry that has one.
_LATEST_NOTE_SQL = (
    "SELECT idx, note FROM ledger_entry WHERE note IS NOT NULL ORDER BY idx DESC LIMIT 1"
)
#: The latest signed checkpoint of a schema-1 ledger.
_V1_NOTE_SQL = "SELECT size - 1 AS idx, note FROM ledger_head WHERE id = 1"
_INSERT_ENTRY_SQL = (
    "INSERT INTO ledger_entry (idx, leaf_hash, envelope, predicate_type, project, image_id, "
    "signer, integrated_us, diff_ids, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_NODE_SQL = "INSERT INTO ledger_node (id, hash) VALUES (?, ?)"
_TERM_SQL = "INSERT INTO ledger_term (idx, kind, value) VALUES (?, ?, ?)"
_SET_META_SQL = "UPDATE ledger_meta SET value = ? WHERE name = ?"
#: Entries' query fields (the arguments of :func:`entry_terms`) and leaf hashes.
_FIELDS_SQL = (
    "SELECT idx, predicate_type, project, image_id, signer, diff_ids, leaf_hash "
    "FROM ledger_entry WHERE idx >= ? AND idx < ? ORDER BY idx"
)
_LEAVES_SQL = "SELECT idx, leaf_hash FROM ledger_entry WHERE idx >= ? AND idx < ? ORDER BY idx"
_IMAGE_PREFIX_SQL = (
    "SELECT DISTINCT value FROM ledger_term WHERE kind = 'image' AND value >= ? AND value < ? "
    "ORDER BY value LIMIT ?"
)

_CHECKPOINT_SQL = "INSERT INTO ledger_checkpoint (size, root, note, created_us) VALUES (?, ?, ?, ?)"
#: What :meth:`Ledger.check_writable` runs in a transaction it rolls back: a statement of
#: each kind an append runs on each table it writes, matching no row, so that it writes
#: nothing yet is refused as an append would be — by a read-only transaction
#: (``default_transaction_read_only``, a standby: SQLSTATE 25006), a missing privilege
#: (42501), or a SQLite file, folder or mount that cannot be written.
_WRITE_PROBE_SQL = (
    "INSERT INTO ledger_entry SELECT * FROM ledger_entry WHERE 1 = 0",
    "INSERT INTO ledger_node SELECT * FROM ledger_node WHERE 1 = 0",
    "INSERT INTO ledger_term SELECT * FROM ledger_term WHERE 1 = 0",
    "INSERT INTO ledger_checkpoint SELECT * FROM ledger_checkpoint WHERE 1 = 0",
    "UPDATE ledger_meta SET value = value WHERE 1 = 0",
)
_KEYS_SQL = (
    "SELECT keyid, name, algorithm, public_pem, status, added_us, added_index, revoked_us, "
    "retired_us, reason, ended_index FROM ledger_key"
)
_KEY_VERSION_SQL = "SELECT value AS key_version FROM ledger_meta WHERE name = 'key_version'"
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


def _driver_cursor(conn: Any) -> Any:
    """A DBAPI cursor on a :mod:`sqlite3` connection or a SQLAlchemy SQLite connection."""
    import sqlite3

    if isinstance(conn, sqlite3.Connection):
        return conn.cursor()
    return conn.connection.driver_connection.cursor()


def run_sql(conn: Any, sql: str, params: Any, *, pg: bool) -> Any:
    """Run SQL written with ``?`` placeholders straight on the driver of a SQLAlchemy
    connection or a :mod:`sqlite3` connection; a list of parameter tuples runs it once
    per tuple.  Rows come back with attribute access by column name."""
    many = isinstance(params, list)
    if pg:
        return conn.exec_driver_sql(sql.replace("?", "%s"), params if many else tuple(params))
    cur = _driver_cursor(conn)
    if many:
        cur.executemany(sql, params)
    else:
        cur.execute(sql, tuple(params))
    return _Rows(cur)


def sql_tuples(conn: Any, sql: str, params: Any, *, pg: bool) -> list[tuple[Any, ...]]:
    """:func:`run_sql` for many small rows: plain tuples, without attribute access (a
    named row each costs ``ledger verify`` ~3% of its time on its index rows)."""
    if pg:
        return [tuple(r) for r in conn.exec_driver_sql(sql.replace("?", "%s"), tuple(params))]
    cur = _driver_cursor(conn)
    try:
        return list(cur.execute(sql, tuple(params)).fetchall())
    finally:
        cur.close()


#: Schema 1's indexes on ``ledger_entry``, replaced by ``ledger_term``.
_V1_INDEXES = ("project", "image_id", "signer", "predicate_type", "integrated")


def migrate_v1(run: Any, *, pg: bool) -> None:
    """Bring a schema-1 ledger to schema 2 in the caller's write transaction.

    Schema 1 kept a head row (size, root, the latest checkpoint, the right edge of the
    tree, the key-table version), five indexes on ``ledger_entry`` and the diff IDs in
    ``ledger_diff_id``.  Every entry, subtree hash, checkpoint and key is kept as it is:
    the diff IDs move into their entries' rows, the latest checkpoint into the last
    entry's row, the key-table version into ``ledger_meta``, and every entry is added
    to the query index.  Nothing of the log itself changes, so its root, its
    checkpoints and every proof stay the same.
    """
    run("ALTER TABLE ledger_entry ADD COLUMN diff_ids TEXT", ())
    run("ALTER TABLE ledger_entry ADD COLUMN note TEXT", ())
    diffs: dict[int, list[str]] = {}
    for r in run("SELECT idx, diff_id FROM ledger_diff_id ORDER BY idx, diff_id", ()).all():
        diffs.setdefault(int(r.idx), []).append(str(r.diff_id))
    if diffs:
        run(
            "UPDATE ledger_entry SET diff_ids = ? WHERE idx = ?",
            [(" ".join(ds), idx) for idx, ds in diffs.items()],
        )
    head = run("SELECT size, note, key_version FROM ledger_head WHERE id = 1", ()).first()
    if head is not None and head.note:
        run("UPDATE ledger_entry SET note = ? WHERE idx = ?", (head.note, int(head.size) - 1))
    if head is not None:
        run(_SET_META_SQL, (str(head.key_version), "key_version"))
    for name in _V1_INDEXES:
        run(f"DROP INDEX IF EXISTS ix_ledger_entry_{name}", ())
    run("DROP TABLE ledger_diff_id", ())
    run("DROP TABLE ledger_head", ())
    last = run(_LAST_SQL, ()).one().last
    index_entries(run, 0, 0 if last is None else int(last) + 1, nodes=False)


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

#: A tree as an append sees it: ``(size, last leaf hash, right-edge subtree hashes)``.
_Tip = tuple[int, bytes, tuple[bytes, ...]]
#: What appending a leaf makes: ``((size, right edge) of the tree it extends, the tree
#: after, its root, its signed checkpoint note)``.  The right edge's hashes fix the whole
#: tree (its root is made of them); a size and a last leaf would not: a guess that
#: skipped an entry another writer appended can reach the same size and last leaf.
_Next = tuple[tuple[int, tuple[bytes, ...]], _Tip, bytes, str]
#: An envelope checked ahead: ``(prepared, signers that verify, what it would make)``.
_Checked = tuple["Prepared", list[str], "_Next | None"]


class _Guess:
    """The tree :meth:`Ledger.append_many`'s thread ahead expects each envelope to extend.

    That thread sees the envelopes in order and assumes each one it checks will be
    appended; the committing thread says where that was wrong (:meth:`rebase`: the
    real tree after envelope ``seq``), and the next guess starts again from there,
    extended with the envelopes checked since.
    """

    def __init__(self, ledger: Ledger, tip: _Tip | None, keep: int) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()
        self._tip = tip  # the tree after the last envelope checked (None: not known)
        self._leaves: dict[int, bytes | None] = {}  # checked envelopes (None: refused)
        self._keep = keep
        self._rebase: tuple[_Tip | None, int] | None = None

    def made_for(self, seq: int, leaf_hash: bytes | None) -> _Next | None:
        """What envelope ``seq`` makes if every envelope before it is appended
        (nothing for a refused envelope or while the tree is not known).  Called once
        for every envelope, in order, by the one thread that checks them."""
        with self._lock:
            if self._rebase is not None:
                base, done = self._rebase
                self._rebase = None
                for s in range(done + 1, seq):
                    leaf = self._leaves.get(s)
                    if base is not None and leaf is not None:
                        base = Ledger._extend(base, leaf)[0]
                self._tip = base
            self._leaves[seq] = leaf_hash
            self._leaves.pop(seq - self._keep, None)
            tip = self._tip
            made = None
            if leaf_hash is not None and tip is not None:
                after, root = Ledger._extend(tip, leaf_hash)
                made = ((tip[0], tip[2]), after, root, "")
                self._tip = after
        if made is None:
            return None
        # signed outside the lock: the next envelope's guess needs only the tree
        _, after, root, _ = made
        note = sign_checkpoint(
            self._ledger.origin, after[0], root, self._ledger._signer(), self._ledger.origin
        )
        return made[0], after, root, note

    def rebase(self, tip: _Tip | None, seq: int) -> None:
        """The real tree after envelope ``seq``."""
        with self._lock:
            self._rebase = (tip, seq)


def _check_schema(url: str, meta: Mapping[str, str]) -> None:
    """:class:`DatabaseUnavailable` (exit 3) when ``ledger_meta`` names a schema this
    escrow does not know: a newer escrow's ledger (or an edited row) must not be read
    nor appended to as this one's.  A missing row is schema 1 (or a ledger being made),
    which :meth:`Ledger._initialise` migrates or records."""
    found = meta.get("schema")
    if found is None or found == SCHEMA:
        return
    where = sqlite_file(url) or redacted(url)
    raise DatabaseUnavailable(
        f"The ledger at {where} has schema {str(found)[:40]!r}, which this escrow does not "
        f"know (it reads and writes schema {SCHEMA}).",
        hint="Use the escrow release that made the ledger (a newer one), or restore the row "
        "'schema' of ledger_meta from a backup if it was edited; nothing was written.",
    )


def _short_verifier_key(origin: str, public: PublicKey) -> str:
    """``<origin>+<key hash>``: a verifier key line without its base64 key."""
    return "+".join(verifier_key_line(origin, public).split("+", 2)[:2])


class Ledger:
    """An RFC 9162 Merkle-tree log of DSSE envelopes with signed C2SP checkpoints."""

    checkpoint_every: int = CHECKPOINT_EVERY
    index_every: int = INDEX_EVERY

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
        #: (size, last leaf hash, right-edge hashes) after this process's last append
        self._tip: _Tip | None = None
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        # SQLite: the writer's own connection, held from the first write until close():
        # a stdlib connection to a plain sqlite:/// file, else one out of the pool
        self._writer: sqlite3.Connection | None = writer
        self._writer_proxy: PoolProxiedConnection | None = None
        self._engine_lock = threading.Lock()
        #: (device, inode) of the SQLite file when it was opened: the file this process's
        #: connections hold, whatever is later deleted, renamed or copied over its path
        self._file_id: tuple[int, int] | None = None
        if self._sqlite_file is not None:
            try:
                self._file_id = _file_id(self._sqlite_file)
            except OSError:
                pass  # SQLite reports what it cannot open
        #: a read-only open of a ledger an older escrow made: the SQLite file it was read
        #: from, this ledger being a migrated private copy of it (:meth:`open`)
        self.copied_from: str | None = None
        self._copy_dir: str | None = None

    @property
    def _engine(self) -> Engine:
        """The SQLAlchemy engine, made on first use: appending to an existing SQLite
        ledger needs only :mod:`sqlite3` (SQLAlchemy costs ~0.2 s of CPU to import)."""
        with self._engine_lock:
            if self._engine_made is None:
                # reads of a plain SQLite file: read-only connections (_connect_sqlite)
                self._engine_made = make_engine(self.url, readonly=self._sqlite_file is not None)
            return self._engine_made

    # -- opening ------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings, *, create: bool = True, readonly: bool = False) -> Ledger:
        """Open the ledger at ``settings.db_url``, creating its tables when missing; with
        ``create=False`` a database that holds no ledger is :class:`DatabaseUnavailable`
        (exit 3) and is left as it was: a mistyped ``ESCROW_DB_URL`` or home must not
        look like an empty, healthy ledger (only ``escrow init`` makes one).

        ``readonly`` (the commands that only read): a SQLite ledger an older escrow made,
        which opening would migrate, is left as it is — an auditor's copy must not change
        — and read from a migrated private copy (:attr:`copied_from` names the file; the
        copy is removed by :meth:`close`).  The first command that writes migrates it."""
        path = sqlite_file(settings.db_url)
        if path is not None and os.path.isfile(path):
            ready = cls._open_sqlite(settings, path)
            if ready is not None:
                return ready
            if readonly and not create and _holds_ledger_tables(path):
                return cls._open_copy(settings, path)
        elif path is not None and not create:
            raise DatabaseUnavailable(f"There is no ledger at {path}.", hint=NO_LEDGER_HINT)
        engine = make_engine(settings.db_url)
        try:
            log_public = cls._log_public_from_files(settings)
            with db_errors(settings.db_url):
                origin, stored_pub = cls._initialise(engine, settings, log_public, create)
        except BaseException:
            engine.dispose()
            raise
        try:
            cls._check_log_key(settings, log_public, stored_pub, origin)
        except KeyLocked:
            engine.dispose()
            raise
        return cls(engine, settings, origin, log_public or stored_pub)

    @classmethod
    def _open_copy(cls, settings: Settings, path: str) -> Ledger:
        """The ledger in the SQLite file ``path``, read from a private copy (SQLite's online
        backup, through a read-only connection) that :meth:`open` then migrates."""
        import atexit
        import shutil
        import sqlite3
        import tempfile

        folder = tempfile.mkdtemp(prefix="escrow-ledger-copy-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # also if not closed
        copy = os.path.join(folder, "ledger.db")
        try:
            with db_errors(settings.db_url):
                source = _connect_sqlite(path, readonly=True)
                try:
                    target = sqlite3.connect(copy)
                    try:
                        source.backup(target)
                    finally:
                        target.close()
                finally:
                    source.close()
            ledger = cls.open(settings._replace(db_url=f"sqlite:///{copy}"), create=False)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        ledger.copied_from = path
        ledger._copy_dir = folder
        return ledger

    @staticmethod
    def _check_log_key(
        settings: Settings, log_public: PublicKey | None, stored: PublicKey | None, origin: str
    ) -> None:
        """:class:`KeyLocked` unless the log key files are the key the ledger was made with.
        Both keys are named as `escrow init` and `escrow ledger verifier-key` print them
        (``<origin>+<key hash>``), so that they can be told apart by eye."""
        if log_public is not None and stored is not None and log_public.keyid != stored.keyid:
            try:
                ledger_key = _short_verifier_key(origin, stored)
                this_key = _short_verifier_key(origin, log_public)
            except InputError:  # an origin no note may name: the key IDs then
                ledger_key, this_key = stored.keyid[:16] + "…", log_public.keyid[:16] + "…"
            raise KeyLocked(
                f"The log key {settings.log_key_path} ({this_key}) does not belong to this "
                f"ledger (it was created with the log key {ledger_key}).",
                hint="Point ESCROW_HOME at the matching keys, or use another database.",
            )

    @classmethod
    def _open_sqlite(cls, settings: Settings, path: str) -> Ledger | None:
        """An initialised SQLite ledger opened with :mod:`sqlite3` alone; None when the
        file is not one yet (the general path creates the tables)."""
        import sqlite3

        try:
            db = _connect_sqlite(path, readonly=True)
        except sqlite3.Error:
            return None  # the general path reports it
        try:
            has_meta = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_meta'"
            ).fetchone()
            meta = dict(db.execute(_META_ALL_SQL).fetchall()) if has_meta else {}
            log_public = cls._log_public_from_files(settings)
            if (
                "origin" not in meta
                or meta.get("schema") != SCHEMA
                or (log_public is not None and "log_public_key" not in meta)
            ):
                db.close()
                return None  # the general path creates or migrates the tables
            pem = meta.get("log_public_key")
            stored = PublicKey.from_pem(pem) if pem else None
            cls._check_log_key(settings, log_public, stored, str(meta["origin"]))
        except sqlite3.Error:
            db.close()
            return None
        except BaseException:
            db.close()
            raise
        try:
            # the writer's connection is opened by the first write (_writer_db)
            return cls(None, settings, str(meta["origin"]), log_public or stored)
        finally:
            db.close()

    @staticmethod
    def _log_public_from_files(settings: Settings) -> PublicKey | None:
        priv = settings.log_key_path
        pub = public_key_path(priv)
        if pub.is_file():
            return PublicKey.from_pem(pub.read_bytes())
        if priv.is_file() and (settings.passphrase or ENCRYPTED_MARKER not in priv.read_bytes()):
            return SigningKey.load(priv, settings.passphrase).public
        return None

    @staticmethod
    def _initialise(
        engine: Engine, settings: Settings, log_public: PublicKey | None, create: bool = True
    ) -> tuple[str, PublicKey | None]:
        from sqlalchemy import inspect

        from escrow.ledger.tables import ALL_TABLES, META

        pg = engine.dialect.name == "postgresql"
        with engine.connect() as conn:
            if inspect(conn).has_table("ledger_meta"):
                meta = dict(run_sql(conn, _META_ALL_SQL, (), pg=pg).all())
                conn.rollback()
                _check_schema(settings.db_url, meta)
                if (
                    "origin" in meta
                    and meta.get("schema") == SCHEMA
                    and (log_public is None or "log_public_key" in meta)
                ):
                    pem = meta.get("log_public_key")
                    return meta["origin"], PublicKey.from_pem(pem) if pem else None
            elif not create and not inspect(conn).has_table("ledger_head"):  # nor a v1 one
                where = sqlite_file(settings.db_url) or redacted(settings.db_url)
                raise DatabaseUnavailable(
                    f"The database {where} holds no escrow ledger.", hint=NO_LEDGER_HINT
                )
        with engine.connect() as conn:
            conn.execution_options(escrow_write=True)
            with conn.begin():
                if pg:
                    conn.exec_driver_sql(_PG_WRITE_SQL)
                legacy = inspect(conn).has_table("ledger_head")
                run = functools.partial(run_sql, conn, pg=pg)
                if inspect(conn).has_table("ledger_meta"):
                    # again under the write lock, before anything is created or written:
                    # another process may have opened it with a newer escrow meanwhile
                    _check_schema(settings.db_url, dict(run(_META_ALL_SQL, ()).all()))
                META.metadata.create_all(conn, tables=ALL_TABLES, checkfirst=True)
                meta = dict(run(_META_ALL_SQL, ()).all())
                Ledger._check_existing_log(run, settings, meta, log_public, legacy=legacy)
                if "origin" not in meta and settings.origin:
                    # before a ledger is bound to it: it names every checkpoint's key
                    check_note_name(settings.origin, "The log origin (config.json 'origin')")
                wanted = {
                    "origin": settings.origin or new_origin(),
                    "key_version": "0",
                    "indexed": "0",
                }
                if log_public is not None:
                    wanted["log_public_key"] = log_public.pem()
                for name, value in wanted.items():
                    if name not in meta:
                        meta[name] = value
                        run(_META_INSERT_SQL, (name, value))
                if legacy:
                    migrate_v1(run, pg=pg)
                if "schema" not in meta:
                    run(_META_INSERT_SQL, ("schema", SCHEMA))
        pem = meta.get("log_public_key")
        return meta["origin"], PublicKey.from_pem(pem) if pem else None

    @staticmethod
    def _check_existing_log(
        run: Any,
        settings: Settings,
        meta: Mapping[str, str],
        log_public: PublicKey | None,
        *,
        legacy: bool = False,
    ) -> None:
        """Before :meth:`_initialise` fills in missing ``ledger_meta`` rows of a database
        that already holds entries: its origin must not be made up anew (every checkpoint
        it signed names the old one, and appends would go on under another log's name),
        and a log key is recorded only when it signed the log's latest checkpoint (else
        two homes with different log keys would both append, each signing over the
        other's entries)."""
        if not run("SELECT 1 AS one FROM ledger_entry LIMIT 1", ()).all():
            return
        # schema 1 kept the latest checkpoint in its head row (migrated after this)
        latest = run(_V1_NOTE_SQL if legacy else _LATEST_NOTE_SQL, ()).first()
        if latest is not None and not latest.note:
            latest = None
        named = str(latest.note).split("\n", 1)[0] if latest is not None else None
        if "origin" not in meta:
            raise LedgerTamperError(
                "The ledger's origin (the row 'origin' of ledger_meta) is missing, but the "
                "ledger holds entries; a new origin would disown their checkpoints.",
                kind="checkpoint-signature",
                hint=f"Restore the row: its checkpoints name the origin {named!r}."
                if named
                else "Restore the row from a backup.",
            )
        if log_public is None or "log_public_key" in meta or latest is None:
            return
        try:
            verify_checkpoint(str(latest.note), verifier_key_line(meta["origin"], log_public))
        except (SignatureError, InputError):
            raise KeyLocked(
                f"The log key {settings.log_key_path} does not belong to this ledger "
                f"(it did not sign the ledger's latest checkpoint, of size {int(latest.idx) + 1}).",
                hint="Point ESCROW_HOME at the matching keys, or use another database.",
            ) from None

    def close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            proxy, self._writer_proxy = self._writer_proxy, None
            if proxy is not None:
                proxy.close()  # back to the pool
            # the read-only connections first: the writer, closing last, copies the -wal
            # file into the database and deletes it, as SQLite's last connection does
            if self._engine_made is not None:
                self._engine_made.dispose()
            if writer is not None and proxy is None:
                writer.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._copy_dir is not None:  # a read-only open's private copy
            import shutil

            shutil.rmtree(self._copy_dir, ignore_errors=True)
            self._copy_dir = None

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
        self._check_file()
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
                    conn.exec_driver_sql(_PG_WRITE_SQL)
                    yield conn
            return
        with db_errors(self.url), self._writer_lock():
            db = self._writer_db()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._check_file()  # under the write lock: nothing is written to a lost file
                yield db
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise

    def check_writable(self) -> None:
        """:class:`DatabaseUnavailable` (exit 3, the error an append would get) when an
        append to this ledger would be refused, found without writing anything: in a write
        transaction that is rolled back, as an append takes it (SQLite: its lock file and
        ``BEGIN IMMEDIATE``), the statements of :data:`_WRITE_PROBE_SQL`, which match no
        row.  For a command that works long before it appends (``escrow pack``)."""
        if self._pg:
            with db_errors(self.url), self._engine.connect() as conn:
                transaction = conn.begin()
                try:
                    for sql in _WRITE_PROBE_SQL:
                        conn.exec_driver_sql(sql)
                finally:
                    transaction.rollback()
            return
        with db_errors(self.url), self._writer_lock():
            db = self._writer_db()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._check_file()
                for sql in _WRITE_PROBE_SQL:
                    db.execute(sql)
            finally:
                self._rollback(db)

    def _check_file(self) -> None:
        """:class:`DatabaseUnavailable` when the SQLite file this ledger opened is no longer
        the one at its path: deleted, or another file renamed onto it (a restored backup).
        Its connections still hold the old file: appends to it would be acknowledged and
        then lost, or fork the log from the one at the path."""
        if self._file_id is None or self._sqlite_file is None:
            return
        path = self._sqlite_file
        try:
            now = _file_id(path)
        except FileNotFoundError:
            raise DatabaseUnavailable(
                f"The ledger file {path} was deleted while this process had it open; "
                "nothing more is read from it or written to it.",
                hint="Put the ledger back at that path, or restart this process (`escrow "
                "serve`) once a ledger is there again.",
            ) from None
        except OSError:
            return  # not ours to tell: SQLite reports what it cannot open
        if now != self._file_id:
            raise DatabaseUnavailable(
                f"The ledger file {path} was replaced by another file while this process had "
                "the first one open; nothing more is read from it or written to it.",
                hint="Restart this process (`escrow serve`) to open the ledger now at that "
                "path, or put the first file back.",
            )

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
            # a retirement revoked since: its index is the log's alone (KeyRecord)
            retired_index=row.ended_index if row.status == RETIRED else None,
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
        """One registered key by full key ID, unique prefix or name (:func:`find_key`)."""
        return find_key(self.keys(), keyid)

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
        # a retired key may still be revoked: its private key can leak after it stopped
        # signing, and verifiers of envelopes met outside the log must learn of that
        if rec.status != ACTIVE and not (event == REVOKED and rec.status == RETIRED):
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
        """Append a ``retired`` key event; the key signs until ``effective_from`` (default now).

        A time in the past is refused, as ``escrow keys retire --from`` refuses it: the
        ledger never retires a key before the event is appended, so the event would state
        a date from which nothing was retired (a few seconds back, a command's own "now"
        or a client's clock, is taken as now)."""
        now = datetime.now(UTC)
        effective = effective_from or now
        if effective.tzinfo is None:
            raise InputError("The retirement time needs a time zone (UTC).")
        if effective < now - RETIRE_GRACE:
            raise InputError(
                "A key cannot be retired from a time in the past.",
                hint="Give a time still to come, or revoke the key.",
            )
        effective = max(effective, now)
        return self._key_event_for("retired", keyid, effective, reason or None)

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
        self, envelopes: Iterable[Envelope | bytes | str | Prepared], *, lookahead: int = 4
    ) -> Generator[tuple[Entry, bool] | EscrowError, None, None]:
        """Append each envelope in its own transaction, in order; yield its result or its error.

        Pipelined: a second thread works up to ``lookahead`` envelopes ahead of the
        commits — parsing and validating each, checking its signatures, and hashing
        and signing the checkpoint it will make if every envelope before it is
        appended.  The transactions stay one per envelope, in order, and each result
        is yielded only after its own commit.  Inside its transaction each envelope is
        checked again as :meth:`append_prepared` checks it (keys registered or revoked
        meanwhile), and a checkpoint made ahead is used only when the log still ends
        where it was expected to; otherwise (another writer came in between, an
        envelope was already there or was refused) the transaction makes its own.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        depth = max(lookahead, 1)
        guess = _Guess(self, self._tip, keep=4 * depth)
        # The thread ahead may start one more envelope's Python work (parsing,
        # validating) each time a transaction starts to commit, when this thread waits
        # on the disk without the GIL; its signature checks release the GIL too.  Once
        # it has ``depth`` envelopes checked ahead it waits for the next commit; with
        # fewer (three appends in four, measured) it runs on.  Without this the two
        # threads take turns on the GIL while both run Python, and each waits on the
        # other.  (BENCHMARKS.md, issue 3, has a timeline and the schedules tried.)
        window = threading.Semaphore(depth)

        def check(seq: int, item: Envelope | bytes | str | Prepared) -> _Checked | EscrowError:
            window.acquire()
            try:
                p = item if isinstance(item, Prepared) else prepare(item)
                candidates = self._verified_signers(p)
            except BaseException as e:
                guess.made_for(seq, None)  # refused: the guesses after it leave it out
                if isinstance(e, InputError | SignatureError):
                    return e
                raise
            return p, candidates, guess.made_for(seq, p.leaf_hash)

        items = enumerate(envelopes)
        self._signer()  # load the log key before the first transaction
        # one thread ahead: the envelopes must be guessed in order
        with ThreadPoolExecutor(1, thread_name_prefix="escrow-append") as pool:
            queue: collections.deque[Future[_Checked | EscrowError]] = collections.deque(
                pool.submit(check, *item) for _, item in zip(range(depth), items, strict=False)
            )
            seq = -1
            try:
                while queue:
                    seq += 1
                    checked = queue.popleft().result()
                    for item in items:
                        queue.append(pool.submit(check, *item))
                        break
                    if isinstance(checked, EscrowError):
                        window.release()
                        yield checked
                        continue
                    p, candidates, made = checked
                    opened = False
                    try:
                        with self._write() as conn:
                            result: tuple[Entry, bool] | EscrowError = self._append_locked(
                                conn, p, candidates, made
                            )
                            opened = True
                            window.release()  # what follows is the commit
                    except (InputError, SignatureError) as e:
                        result = e
                    finally:
                        if not opened:
                            window.release()
                    if made is None or self._tip != made[1]:  # guessed wrong: from here
                        guess.rebase(self._tip, seq)
                    yield result
            finally:  # stopped early: let the checks still queued return
                for future in queue:
                    future.cancel()
                window.release(depth + len(queue))

    @staticmethod
    def _extend(tip: _Tip, leaf_hash: bytes) -> tuple[_Tip, bytes]:
        """The tree after appending ``leaf_hash`` to the one ``tip`` describes, and its root."""
        size, _last, edge = tip
        frontier = list(edge)
        h = leaf_hash
        level = 0
        while (size >> level) & 1:
            h = merkle.node_hash(frontier.pop(), h)
            level += 1
        frontier.append(h)
        return (size + 1, leaf_hash, tuple(frontier)), merkle.hash_of_nodes(frontier)

    def _next_tip(self, tip: _Tip, leaf_hash: bytes) -> _Next:
        """:meth:`_extend`, with the new tree's signed checkpoint, keyed by the tip it extends."""
        after, root = self._extend(tip, leaf_hash)
        note = sign_checkpoint(self.origin, after[0], root, self._signer(), self.origin)
        return (tip[0], tip[2]), after, root, note

    def _find(self, leaf_hash: bytes) -> Entry | None:
        with self._read() as conn:
            row = self._sql(conn, _FIND_SQL, (leaf_hash,)).first()
        return self._entry(row) if row is not None else None

    def _sql(self, conn: _Conn, sql: str, params: Any) -> Any:
        """:func:`run_sql` on ``conn``: a SQLAlchemy connection, or on SQLite the
        writer's DBAPI connection.  SQLite: on a DBAPI cursor, inside the transaction,
        with no SQLAlchemy statement machinery (about 50 µs a statement less)."""
        return run_sql(conn, sql, params, pg=self._pg)

    def _load_keys(self, conn: _Conn) -> None:
        """Cache the key table with the head's key version (read in one snapshot)."""
        row = self._sql(conn, _KEY_VERSION_SQL, ()).first()
        if row is None or row.key_version is None:
            raise LedgerTamperError(
                "The ledger's row 'key_version' of ledger_meta is missing.",
                kind="index",
                hint=VERIFY_HINT,
            )
        version = int(row.key_version)
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
            ids = signature_ids(env)
            named = [s.keyid for s in env.signatures if s.keyid in (self._keys or {})]
            if named:  # a registered key's signature that does not verify: say so
                raise SignatureError(
                    f"The signature by the registered key {named[0][:16]}… does not verify "
                    "over this envelope's payload and payloadType (changed after signing, "
                    "or signed over other bytes than the DSSE PAE).",
                    hint="Sign the DSSE PAE of the exact payload with that key.",
                )
            raise SignatureError(
                f"The envelope is not signed by a key registered in this ledger (key IDs: {ids}).",
                hint="Register the key with `escrow keys add`, or sign with a registered key.",
            )
        return good

    def _frontier(
        self, conn: _Conn, size: int, last_hash: bytes | None, batched: int
    ) -> tuple[bytes, ...]:
        """The right edge of the tree of ``size`` leaves: its complete subtrees' hashes.

        Kept from this process's last append when the log's last leaf is still the
        one it appended; read otherwise (:func:`tree_hashes`, O(log n) rows).
        """
        cached = self._tip
        if cached is not None and cached[0] == size and cached[1] == last_hash:
            return cached[2]
        nodes = merkle.range_nodes(0, size)
        found = tree_hashes(functools.partial(self._sql, conn), nodes, batched)
        return tuple(found[n] for n in nodes)

    def _append_locked(
        self, conn: _Conn, p: Prepared, candidates: Sequence[str], made: _Next | None = None
    ) -> tuple[Entry, bool]:
        tip = self._sql(conn, _TIP_SQL, (p.leaf_hash,)).one()
        for name in ("key_version", "indexed"):
            if getattr(tip, name) is None:
                raise LedgerTamperError(
                    f"The ledger's row {name!r} of ledger_meta is missing.",
                    kind="index",
                    hint=VERIFY_HINT,
                )
        if tip.existing is not None:  # already in the log: change nothing
            return self._entry(self._sql(conn, _FIND_SQL, (p.leaf_hash,)).one()), False
        n = 0 if tip.last is None else int(tip.last) + 1
        last_hash = None if tip.last_hash is None else bytes(tip.last_hash)
        at = max(now_us(), tip.last_us or 0)  # integration times never decrease
        key_version = int(tip.key_version)
        if p.predicate_type == KEY_EVENT:
            self._apply_key_event(conn, p.statement, n, at)
            signer: str = self.log_public.keyid
            self._sql(conn, _SET_META_SQL, (str(key_version + 1), "key_version"))
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
        indexed = int(tip.indexed)
        edge = self._frontier(conn, n, last_hash, indexed)
        if made is not None and made[0] == (n, edge) and made[1][1] == p.leaf_hash:
            _, after, root, note = made  # made ahead, for this very tree
        else:
            after, root, note = self._next_tip((n, last_hash or b"", edge), p.leaf_hash)[1:]
        size = n + 1
        diff_ids = " ".join(p.diff_ids) or None
        params = (
            n,
            p.leaf_hash,
            p.leaf,
            p.predicate_type,
            p.project,
            p.image_id,
            signer,
            at,
            diff_ids,
            note,
        )
        self._sql(conn, _INSERT_ENTRY_SQL, params)
        if size % self.checkpoint_every == 0:
            self._sql(conn, _CHECKPOINT_SQL, (size, root, note, at))
        if size - indexed >= self.index_every:
            index_entries(functools.partial(self._sql, conn), indexed, size)
        # kept for the next append, which checks it against the log's last leaf
        self._tip = after
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
        if event == RETIRED and row.status == RETIRED and (row.retired_us or 0) > at:
            raise InputError(
                f"The key {keyid[:16]}… is already to be retired from "
                f"{rfc3339(from_us(row.retired_us))} (entry {row.ended_index}); a retirement "
                "cannot be moved.",
                hint="To stop it signing now, revoke it.",
            )
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
            envelope=stored_bytes(row.envelope),
            predicate_type=row.predicate_type,
            project=row.project,
            image_id=row.image_id,
            signer=row.signer,
            integrated_at=from_us(row.integrated_us),
        )

    def size(self) -> int:
        """Number of entries in the log (the latest checkpoint's tree size)."""
        with self._read() as conn:
            return self._size(conn)

    def _size(self, conn: Connection) -> int:
        last = self._sql(conn, _LAST_SQL, ()).one().last
        return 0 if last is None else int(last) + 1

    def get(self, index: int) -> Entry:
        """The entry at ``index``.

        An :class:`InputError` when ``index`` is at or past the log's size; a
        :class:`LedgerTamperError` when it is below it but the entry's row is gone (a
        row deleted from the middle of the log).
        """
        from sqlalchemy import select

        from escrow.ledger.tables import ENTRY

        query = select(ENTRY).where(ENTRY.c.idx == index)
        storable = 0 <= index <= MAX_INDEX  # past it, no database could hold the index
        row = None
        if storable:
            with self._read() as conn:
                row = conn.execute(query).first()
        if row is None:
            # The row and the size again, from one snapshot: an entry appended between
            # two plain reads must not pass for one deleted.
            with self._read(snapshot=True) as conn:
                row = conn.execute(query).first() if storable else None
                size = self._size(conn)
        if row is None:
            held = count(size, "entry", "entries")
            if 0 <= index < size:
                raise LedgerTamperError(
                    f"Entry {index} is missing from the ledger's log of {held}: "
                    "its row was deleted.",
                    index=index,
                    kind="deleted",
                    hint=VERIFY_HINT,
                )
            raise InputError(f"The ledger has no entry {index} (it holds {held}, from 0).")
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
        """Entries matching every given filter, oldest first, through the query index.

        Pagination: pass the last index you received as ``after`` to get the next page.
        ``since`` is inclusive, ``until`` exclusive.  Entries the index does not cover
        yet (fewer than :attr:`index_every`) are matched on their own rows.
        """
        if limit < 1:
            raise InputError("The page size (limit) must be at least 1.")
        terms = [
            (kind, value)
            for kind, value in (
                ("project", project),
                ("image", image_id),
                ("diff", diff_id),
                ("signer", signer),
                ("type", predicate_type),
            )
            if value is not None
        ]
        with self._read(snapshot=True) as conn:
            size = self._size(conn)
            lo = 0 if after is None else max(after + 1, 0)
            hi = size
            # integration times never decrease along the log: a time range is an
            # index range, found by binary search
            if since is not None:
                lo = max(lo, self._first_at_or_after(conn, to_us(since), size))
            if until is not None:
                hi = min(hi, self._first_at_or_after(conn, to_us(until), size))
            if lo >= hi:
                return []
            indexed = min(self._indexed(conn), size)
            found: list[Any] = []
            if lo < indexed:
                found = self._indexed_matches(conn, terms, lo, min(hi, indexed), limit)
            if len(found) < limit and max(lo, indexed) < hi:
                found += self._unindexed_matches(
                    conn, terms, max(lo, indexed), hi, limit - len(found)
                )
        return [self._entry(r) for r in found]

    def count_entries(
        self,
        *,
        project: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        predicate_type: str | None = None,
        ranges: Sequence[tuple[int, int]] | None = None,
    ) -> int:
        """How many entries :meth:`entries` would give with these filters, counted through
        the query index without reading an envelope (``escrow pack`` refuses a scope over
        its limit before loading it).  ``ranges``: only entries whose index is in one of
        these ``[start, end)`` ranges (default: the whole log)."""
        terms = [
            (kind, value)
            for kind, value in (("project", project), ("type", predicate_type))
            if value is not None
        ]
        total = 0
        with self._read(snapshot=True) as conn:
            size = self._size(conn)
            lo = 0 if since is None else self._first_at_or_after(conn, to_us(since), size)
            hi = size if until is None else self._first_at_or_after(conn, to_us(until), size)
            indexed = min(self._indexed(conn), size)
            tail: list[tuple[int, int]] = []  # parts of the ranges after the batches
            for start, end in ranges if ranges is not None else [(0, size)]:
                start, end = max(start, lo), min(end, hi)
                if start >= end:
                    continue
                if start < indexed:
                    total += self._indexed_count(conn, terms, start, min(end, indexed))
                if max(start, indexed) < end:
                    tail.append((max(start, indexed), end))
            if tail:  # at most a batch of entries: matched on their own rows
                wanted = set(terms)
                first, last = min(a for a, _ in tail), max(b for _, b in tail)
                total += sum(
                    1
                    for r in self._sql(conn, _FIELDS_SQL, (first, last)).all()
                    if any(a <= r.idx < b for a, b in tail)
                    and wanted <= {(kind, value) for _, kind, value in entry_terms(*r[:6])}
                )
        return total

    def _indexed_count(
        self, conn: Connection, terms: Sequence[tuple[str, str]], lo: int, hi: int
    ) -> int:
        if not terms:
            sql = "SELECT count(*) AS n FROM ledger_entry WHERE idx >= ? AND idx < ?"
            return int(self._sql(conn, sql, (lo, hi)).one().n)
        kind, value = terms[0]
        sql = (
            "SELECT count(*) AS n FROM ledger_term q"
            " WHERE q.kind = ? AND q.value = ? AND q.idx >= ? AND q.idx < ?"
        )
        params: list[Any] = [kind, value, lo, hi]
        for kind, value in terms[1:]:
            sql += (
                " AND EXISTS (SELECT 1 FROM ledger_term t WHERE t.idx = q.idx"
                " AND t.kind = ? AND t.value = ?)"
            )
            params += [kind, value]
        return int(self._sql(conn, sql, tuple(params)).one().n)

    def image_ids_starting(self, short: str, *, limit: int = 2) -> list[str]:
        """Recorded image IDs (``sha256:…``) that begin with ``short``, hex digits such as
        the 12 that `escrow log` prints, ``sha256:`` optional: at most ``limit`` of them,
        in order, through the query index (and the entries after its last batch).

        What finds an entry by the short ID it was shown with once the Docker Engine no
        longer holds the image; ``[]`` for anything that is not hex digits.
        """
        from escrow.blobs import digest_prefix

        digits = digest_prefix(short)
        if digits is None:
            return []
        # every ID that begins with the digits sorts between them and the digits with a
        # "g" after them (in any collation: hex digits sort before "g")
        low, high = "sha256:" + digits, "sha256:" + digits + "g"
        found: set[str] = set()
        with self._read(snapshot=True) as conn:
            size = self._size(conn)
            indexed = min(self._indexed(conn), size)
            rows = self._sql(conn, _IMAGE_PREFIX_SQL, (low, high, limit))
            found.update(str(r.value) for r in rows.all())
            for r in self._sql(conn, _FIELDS_SQL, (indexed, size)).all():
                if r.image_id and low <= r.image_id < high:
                    found.add(str(r.image_id))
        return sorted(found)[:limit]

    def _indexed_matches(
        self, conn: Connection, terms: Sequence[tuple[str, str]], lo: int, hi: int, limit: int
    ) -> list[Any]:
        sql = f"SELECT {_ENTRY_COLS} FROM ledger_entry WHERE idx >= ? AND idx < ?"  # noqa: S608
        params: list[Any] = [lo, hi]
        if terms:
            kind, value = terms[0]
            sql += (
                " AND idx IN (SELECT idx FROM ledger_term"
                " WHERE kind = ? AND value = ? AND idx >= ? AND idx < ?)"
            )
            params += [kind, value, lo, hi]
            for kind, value in terms[1:]:
                sql += (
                    " AND EXISTS (SELECT 1 FROM ledger_term t WHERE t.idx = ledger_entry.idx"
                    " AND t.kind = ? AND t.value = ?)"
                )
                params += [kind, value]
        sql += " ORDER BY idx LIMIT ?"
        return list(self._sql(conn, sql, (*params, limit)).all())

    def _unindexed_matches(
        self, conn: Connection, terms: Sequence[tuple[str, str]], lo: int, hi: int, limit: int
    ) -> list[Any]:
        wanted = set(terms)
        hits = [
            r.idx
            for r in self._sql(conn, _FIELDS_SQL, (lo, hi)).all()
            if wanted <= {(kind, value) for _, kind, value in entry_terms(*r[:6])}
        ][:limit]
        if not hits:
            return []
        marks = ", ".join("?" * len(hits))
        sql = f"SELECT {_ENTRY_COLS} FROM ledger_entry WHERE idx IN ({marks}) ORDER BY idx"  # noqa: S608
        return list(self._sql(conn, sql, tuple(hits)).all())

    def _indexed(self, conn: Connection) -> int:
        """How many entries the batches cover (``ledger_meta``'s row ``indexed``)."""
        row = self._sql(conn, _META_SQL, ("indexed",)).first()
        if row is None or row.value is None:
            raise LedgerTamperError(
                "The ledger's row 'indexed' of ledger_meta is missing.",
                kind="index",
                hint=VERIFY_HINT,
            )
        return int(row.value)

    def _first_at_or_after(self, conn: Connection, us: int, size: int) -> int:
        """The first index whose integration time is at or after ``us`` (``size`` if none)."""
        lo, hi = 0, size
        while lo < hi:
            mid = (lo + hi) // 2
            row = self._sql(conn, _TIME_AT_SQL, (mid,)).first()
            if row is None:  # no entry at or after mid (a damaged log): search below
                hi = mid
            elif row.integrated_us >= us:
                hi = mid
            else:
                lo = max(mid, int(row.idx)) + 1
        return lo

    # -- hashes and proofs ----------------------------------------------------------
    def _tree_size(self, conn: Connection, tree_size: int | None) -> int:
        current = self._size(conn)
        if tree_size is None:
            return current
        if not 0 <= tree_size <= current:
            raise InputError(
                f"The tree size {tree_size} is not between 0 and the log's size {current}."
            )
        return tree_size

    def _hashes(self, conn: Connection, nodes: Sequence[merkle.Node]) -> dict[merkle.Node, bytes]:
        if not nodes:
            return {}
        batched = self._indexed(conn)
        return tree_hashes(functools.partial(self._sql, conn), nodes, batched)

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
    def checkpoint(self, tree_size: int | None = None) -> Checkpoint:
        """The latest signed checkpoint (signed with every append, kept in its entry's row),
        or the one the log signed when it had ``tree_size`` entries.

        Every entry appended since schema 2 keeps the checkpoint it made; a ledger
        migrated from schema 1 has, for its earlier entries, only those kept every
        :attr:`checkpoint_every` entries and the last one (:class:`InputError` otherwise).
        """
        if tree_size is not None:
            return self._checkpoint_at(tree_size)
        with self._read() as conn:
            row = self._sql(conn, _LATEST_NOTE_SQL, ()).first()
        if row is None:  # an empty log: sign the empty tree now
            note = sign_checkpoint(self.origin, 0, merkle.EMPTY_ROOT, self._signer(), self.origin)
            return Checkpoint(origin=self.origin, size=0, root=merkle.EMPTY_ROOT, note=note)
        return verify_checkpoint(row.note, self.verifier_key())

    def key_events_checkpoint(self, tree_size: int | None = None) -> Checkpoint:
        """The checkpoint of ``tree_size`` entries (default: the latest) signed again by the
        log key with one extension line, ``key-events <count> <base64 digest>``
        (:func:`escrow.ledger.checkpoint.key_events_digest` of the key events below that
        size, read through the query index).  A pack is made against it and embeds those
        key events, so that ``escrow pack verify`` can tell that none was left out — a
        revocation hidden from an auditor would otherwise leave a revoked key valid."""
        cp = self.checkpoint(tree_size)
        line = key_events_line(*key_events_digest(key_events_below(self, cp.size)))
        note = sign_checkpoint(
            self.origin, cp.size, cp.root, self._signer(), self.origin, extensions=(line,)
        )
        return Checkpoint(origin=cp.origin, size=cp.size, root=cp.root, note=note)

    def _checkpoint_at(self, tree_size: int) -> Checkpoint:
        with self._read() as conn:
            size = self._size(conn)
            if not 1 <= tree_size <= size:
                raise InputError(
                    f"The tree size {tree_size} is not between 1 and the log's size {size}."
                )
            row = self._sql(conn, _NOTE_AT_SQL, (tree_size - 1, tree_size)).first()
        if row is None or not row.note:
            raise InputError(
                f"The ledger keeps no signed checkpoint of size {tree_size}.",
                hint="Entries appended before schema 2 kept only every "
                f"{self.checkpoint_every:,}th checkpoint and the last one.",
            )
        cp = verify_checkpoint(str(row.note), self.verifier_key())
        if cp.size != tree_size:
            raise LedgerTamperError(
                f"The checkpoint kept for size {tree_size} is for size {cp.size}.",
                index=tree_size - 1,
                kind="checkpoint-signature",
                hint="Run `escrow ledger verify`.",
            )
        return cp

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
