"""The server's check that its database already holds a ledger, made without creating one.

:meth:`escrow.ledger.store.Ledger.open` creates the tables of a missing ledger (that is
how `escrow init` makes one), and connecting to a missing SQLite file creates the file.
`escrow serve` and `escrow tokens` must do neither: a mistyped ``ESCROW_DB_URL`` would
otherwise be served as a new, empty log (bound to the home's log key), or be given
tokens and ledger tables, and a home where `escrow init` was never run would be left
with a half-made ``ledger.db``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from escrow.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from escrow.config import Settings

_INIT_HINT = "Run `escrow init` first, or set ESCROW_HOME or ESCROW_DB_URL to the existing ledger."


def require_ledger(settings: Settings) -> None:
    """:class:`DatabaseUnavailable` (exit 3) unless ``settings.db_url`` holds a ledger
    that `escrow init` made (its tables and at least one entry); changes nothing."""
    from escrow.ledger.store import redacted, sqlite_file

    url = settings.db_url
    path = sqlite_file(url)
    if path is not None:
        if not os.path.isfile(path):
            raise DatabaseUnavailable(f"There is no ledger at {path}.", hint=_INIT_HINT)
        found = _sqlite_has_ledger(path, url)
    else:
        found = _has_ledger(url)
    if not found:
        where = path if path is not None else redacted(url)
        raise DatabaseUnavailable(f"The database {where} holds no escrow ledger.", hint=_INIT_HINT)


def _sqlite_has_ledger(path: str, url: str) -> bool:
    """Read-only: a SQLite file is opened with ``mode=ro`` (nothing created or converted)."""
    import sqlite3

    from escrow.ledger.store import db_errors

    with db_errors(url):
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=120)
        try:
            tables = {
                str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if "ledger_entry" not in tables or not tables & {"ledger_meta", "ledger_head"}:
                return False
            return db.execute("SELECT 1 FROM ledger_entry LIMIT 1").fetchone() is not None
        except sqlite3.DatabaseError as e:  # not a SQLite database at all
            if isinstance(e, sqlite3.OperationalError):
                raise
            return False
        finally:
            db.close()


def _has_ledger(url: str) -> bool:
    from sqlalchemy import inspect, text

    from escrow.ledger.store import db_errors, make_engine

    engine = make_engine(url)
    try:
        with db_errors(url), engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            if "ledger_entry" not in names or not names & {"ledger_meta", "ledger_head"}:
                return False
            return conn.execute(text("SELECT 1 FROM ledger_entry LIMIT 1")).first() is not None
    finally:
        engine.dispose()
