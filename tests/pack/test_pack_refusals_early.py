"""`escrow pack` refuses what it cannot do before the work that would be lost, and says
it once, with the exit code the README's table gives.

Bugs this found:

* a ledger the database lets the role only read — a PostgreSQL role or database with
  ``default_transaction_read_only`` (a standby too: SQLSTATE 25006), a role granted only
  SELECT (42501), a SQLite file that cannot be written — had the whole pack rendered and
  signed (minutes, for a large one) before the pack's own entry was refused.  The ledger
  is now checked for an append first, in a transaction rolled back, writing nothing; a
  ``--render-only`` pack, which records nothing, needs no write;
* a scope over ``--max-builds`` had every build in it loaded (its envelope, some 8 KB a
  build: 20,000 builds took 160 MB more) before it was refused: the builds are now
  counted through the ledger's query index first;
* ``--since-checkpoint`` with a checkpoint of another log (or one this log's key did not
  sign, or larger than the log) exited 2, as bad input, where ``escrow ledger consistency
  --from`` exits 1 for the same file: the file is a checkpoint note, read and understood,
  and the check that this log extends it failed — exit 1 ("a log that does not extend a
  saved checkpoint"), as for ``ledger consistency --from`` and ``deposit export
  --since-checkpoint``; only a file that is no checkpoint note is input (exit 2), and so
  is a ``--tree-size`` below the checkpoint's size (the options contradict each other).
"""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pgkit import fresh_pg_database

from escrow.documents.types import BUILD_MANIFEST
from escrow.ledger.store import Ledger
from tests.conftest import run_cli

from .conftest import PackLedger
from .synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _one_error(stderr: str) -> str:
    """The one line a refused pack printed: its error, and nothing before it (no step of
    the pack was begun, so no progress was shown)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("escrow: error: "), stderr
    return lines[0]


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert list(out.parent.glob(f".{out.name}*")) == []  # no partial pack either


# -- 1. a ledger this role may only read -------------------------------------------------


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _admin(url: str, *sql: str) -> None:
    import psycopg

    with psycopg.connect(_plain(url), autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)


def _pg_size(url: str) -> int:
    import psycopg

    with psycopg.connect(_plain(url)) as conn:
        row = conn.execute("SELECT count(*) FROM ledger_entry").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def pg_database() -> Iterator[str]:
    yield from fresh_pg_database("pack_early")


@pytest.fixture
def pg_home(pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PostgreSQL ledger (made by the database's owner) holding one build of project
    "example"; ESCROW_HOME and ESCROW_DB_URL name it.  Its URL."""
    from escrow.config import load_settings
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESCROW_DB_URL", pg_database)
    for var in ("ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER", "ESCROW_TSA_URL"):
        monkeypatch.delenv(var, raising=False)
    assert run_cli(["init"]).exit_code == 0
    settings = load_settings()
    with Ledger.open(settings) as ledger:
        key = SigningKey.load(settings.key_path, settings.passphrase)
        ledger.append(sign_statement(manifest_variant(0), key))
    return pg_database


@dataclass
class ReadingRole:
    url: str  # ESCROW_DB_URL as that role
    refused: str  # what PostgreSQL says of an INSERT
    hint: str  # what escrow says to do


#: how a role is made one that may only read, and what an append by it is told
ROLES = {
    "read-only-transactions": (
        (
            'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"',
            'ALTER ROLE "{role}" SET default_transaction_read_only = on',
        ),
        "cannot execute INSERT in a read-only transaction",
        "may only read here (default_transaction_read_only, or a standby server)",
    ),
    "select-only": (
        ('GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',),
        "permission denied for table ledger_entry",
        "needs SELECT, INSERT and UPDATE on table ledger_entry",
    ),
}


@pytest.fixture(params=sorted(ROLES))
def reading_role(request: pytest.FixtureRequest, pg_home: str) -> Iterator[ReadingRole]:
    """A login role of the ledger's database that may read it but not append to it."""
    from sqlalchemy.engine import make_url

    grants, refused, hint = ROLES[request.param]
    role = f"pack_early_{uuid.uuid4().hex[:10]}"
    _admin(pg_home, f'CREATE ROLE "{role}" LOGIN', *(g.format(role=role) for g in grants))
    try:
        url = make_url(pg_home).set(username=role).render_as_string(hide_password=False)
        yield ReadingRole(url, refused, f"The database role '{role}' {hint}")
    finally:
        _admin(pg_home, f'DROP OWNED BY "{role}"', f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_a_role_that_may_only_read_is_refused_before_the_pack_is_rendered(
    pg_home: str, reading_role: ReadingRole, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_DB_URL", reading_role.url)
    size = _pg_size(pg_home)
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", "-o", str(out)])

    assert r.exit_code == 3, r.stderr
    error = _one_error(r.stderr)  # before it, no "collecting" nor "rendering" step
    assert "rendering" not in r.stderr
    assert f"failed: {reading_role.refused}; the pack could not be recorded" in error
    assert "so nothing was rendered or written" in error
    assert reading_role.hint in error
    _nothing_written(out)
    assert _pg_size(pg_home) == size  # the check wrote nothing either


@pytest.mark.postgres
def test_a_render_only_pack_needs_no_write(
    pg_home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grants, _, _ = ROLES["read-only-transactions"]
    role = f"pack_early_{uuid.uuid4().hex[:10]}"
    _admin(pg_home, f'CREATE ROLE "{role}" LOGIN', *(g.format(role=role) for g in grants))
    try:
        from sqlalchemy.engine import make_url

        url = make_url(pg_home).set(username=role).render_as_string(hide_password=False)
        monkeypatch.setenv("ESCROW_DB_URL", url)
        size = _pg_size(pg_home)
        out = tmp_path / "rendered.pdf"
        r = run_cli(["pack", "--project", "example", "--render-only", "-q", "-o", str(out)])
        assert r.exit_code == 0, r.stderr
        assert "Rendered only: not signed, not recorded." in r.stderr
        assert out.is_file()
        assert _pg_size(pg_home) == size
    finally:
        _admin(pg_home, f'DROP OWNED BY "{role}"', f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def read_only_ledger_file(pack_ledger: PackLedger) -> Iterator[Path]:
    """The SQLite ledger file made read-only (a bind mount of it, read-only: CI runs as
    root, whom file modes do not stop), its folder still writable: what a user meets
    with a ledger file another user owns.  It holds one build of project "example"."""
    pack_ledger.add(0)
    db = pack_ledger.home / "ledger.db"
    subprocess.run(["mount", "--bind", str(db), str(db)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(db)], check=True)
        yield db
    finally:
        subprocess.run(["umount", "-l", str(db)], check=False)


def test_a_sqlite_ledger_that_cannot_be_written_is_refused_before_rendering(
    pack_ledger: PackLedger, read_only_ledger_file: Path, tmp_path: Path
) -> None:
    size = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", "-o", str(out)])

    assert r.exit_code == 3, r.stderr
    error = _one_error(r.stderr)
    assert "is unavailable: attempt to write a readonly database; the pack could not be" in error
    assert "so nothing was rendered or written" in error
    _nothing_written(out)
    assert pack_ledger.ledger.size() == size


# -- 2. a scope over --max-builds --------------------------------------------------------


def test_a_scope_over_max_builds_is_refused_before_a_build_is_loaded(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        pack_ledger.add(n)  # entries 1-3
    loaded: list[int] = []  # the build entries read from the ledger, envelopes and all
    entries, get = Ledger.entries, Ledger.get

    def counting_entries(self: Ledger, **filters: Any) -> list[Any]:
        found = entries(self, **filters)
        loaded.extend(e.index for e in found if e.predicate_type == BUILD_MANIFEST)
        return found

    def counting_get(self: Ledger, index: int) -> Any:
        entry = get(self, index)
        if entry.predicate_type == BUILD_MANIFEST:
            loaded.append(index)
        return entry

    monkeypatch.setattr(Ledger, "entries", counting_entries)
    monkeypatch.setattr(Ledger, "get", counting_get)
    out = tmp_path / "pack.pdf"
    for scope in (["--project", "example"], ["--entries", "1-3"], ["--since", "2000-01-01"]):
        loaded.clear()
        r = run_cli(["pack", *scope, "--max-builds", "2", "-o", str(out)])
        assert r.exit_code == 2, (scope, r.stderr)
        assert "The scope of this pack holds 3 builds, more than the 2 a pack holds" in r.stderr
        assert loaded == [], scope
        _nothing_written(out)
    # (a scope of exactly the limit is packed: test_pack_scope_limit.py)


def _counts_agree(ledger: Ledger, builds: list[Any]) -> None:
    """:meth:`Ledger.count_entries` gives, for each scope, the number of build entries
    :meth:`Ledger.entries` lists for it (``builds``: all of them, in log order)."""
    times = [e.integrated_at for e in builds]
    periods = [
        (None, None),
        (times[10], None),
        (None, times[70]),
        (times[10], times[70]),
        (times[-1] + timedelta(seconds=1), None),
    ]
    ranges_of = {
        "all": None,
        "runs": [(0, 5), (7, 8), (60, 75), (90, 500)],
        "none": [(0, 1)],  # the key event only
    }
    for project in (None, "app", "base", "nothing"):
        for since, until in periods:
            for name, ranges in ranges_of.items():
                want = [
                    e
                    for e in builds
                    if (project is None or e.project == project)
                    and (since is None or e.integrated_at >= since)
                    and (until is None or e.integrated_at < until)
                    and (ranges is None or any(a <= e.index < b for a, b in ranges))
                ]
                got = ledger.count_entries(
                    project=project,
                    since=since,
                    until=until,
                    predicate_type=BUILD_MANIFEST,
                    ranges=ranges,
                )
                assert got == len(want), (project, since, until, name)


def _fill(ledger: Ledger, key: Any) -> list[Any]:
    """100 builds of two projects, past the query index's first batch (64 entries) and
    into the rows after it; every build entry of the ledger, read back."""
    from escrow.signing.dsse import sign_statement

    appended = list(
        ledger.append_many(
            sign_statement(manifest_variant(n, project=("app", "base")[n % 3 == 0]), key)
            for n in range(100)
        )
    )
    assert not [a for a in appended if isinstance(a, Exception)]
    found = [e for e in ledger.entries(limit=1000) if e.predicate_type == BUILD_MANIFEST]
    assert len([e for e in found if e.project in ("app", "base")]) == 100
    return found


def test_the_count_of_a_scope_is_exact_across_the_query_index_on_sqlite(
    pack_ledger: PackLedger,
) -> None:
    _counts_agree(pack_ledger.ledger, _fill(pack_ledger.ledger, pack_ledger.key))


@pytest.mark.postgres
def test_the_count_of_a_scope_is_exact_across_the_query_index_on_postgresql(
    pg_home: str,
) -> None:
    from escrow.config import load_settings
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    with Ledger.open(settings) as ledger:
        key = SigningKey.load(settings.key_path, settings.passphrase)
        _counts_agree(ledger, _fill(ledger, key))  # and the fixture's own build
        assert ledger.count_entries(predicate_type=BUILD_MANIFEST) == 101


# -- 3. --since-checkpoint: a checkpoint this log does not extend ------------------------


def _both(saved: Path, out: Path) -> tuple[Any, Any]:
    """``escrow pack --since-checkpoint SAVED`` and ``escrow ledger consistency --from
    SAVED``, against the same ledger."""
    pack = run_cli(
        ["pack", "--project", "example", "--since-checkpoint", str(saved), "-o", str(out)]
    )
    consistency = run_cli(["ledger", "consistency", "--from", str(saved)])
    return pack, consistency


def test_a_checkpoint_this_log_does_not_extend_fails_the_check_as_ledger_consistency_does(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.ledger.checkpoint import sign_checkpoint
    from escrow.signing.keys import SigningKey

    pack_ledger.add(0)
    own = pack_ledger.ledger.checkpoint()
    saved: dict[str, str] = {
        # another log's checkpoint, signed by its own key
        "another log": sign_checkpoint(
            "other.example/log", 1, b"\x01" * 32, SigningKey.generate(), "other.example/log"
        ),
        # this log's name and tree, signed by a key that is not the log's
        "not signed by the log key": sign_checkpoint(
            own.origin, own.size, own.root, SigningKey.generate(), own.origin
        ),
    }
    # a backup of the ledger, restored after the auditor saved a later checkpoint
    backup = tmp_path / "restored"
    backup.mkdir()
    for f in pack_ledger.home.iterdir():
        if f.is_file() and not f.name.startswith("ledger.db"):
            (backup / f.name).write_bytes(f.read_bytes())
    subprocess.run(["cp", "-r", str(pack_ledger.home / "keys"), str(backup / "keys")], check=True)
    with sqlite3.connect(pack_ledger.home / "ledger.db") as source:
        with sqlite3.connect(backup / "ledger.db") as copy:
            source.backup(copy)
    pack_ledger.add(1)
    saved["a restored older backup"] = pack_ledger.ledger.checkpoint().note

    for case, note in saved.items():
        home = backup if case == "a restored older backup" else pack_ledger.home
        monkeypatch.setenv("ESCROW_HOME", str(home))
        with Ledger.open(_settings()) as ledger:
            size = ledger.size()
        file = tmp_path / f"{case}.checkpoint"
        file.write_text(note, encoding="utf-8")
        out = tmp_path / "pack.pdf"

        pack, consistency = _both(file, out)

        assert consistency.exit_code == 1, (case, consistency.stderr)
        assert pack.exit_code == 1, (case, pack.stderr)
        errors = [ln for ln in pack.stderr.splitlines() if ln.startswith("escrow: error: ")]
        assert len(errors) == 1 and "rendering" not in pack.stderr, pack.stderr
        error = errors[0]
        assert "previous checkpoint" in error, case
        assert "nothing was written or recorded" in error, case
        _nothing_written(out)
        with Ledger.open(_settings()) as ledger:
            assert ledger.size() == size, case
    monkeypatch.setenv("ESCROW_HOME", str(pack_ledger.home))


def test_a_tree_size_below_the_checkpoint_is_input(pack_ledger: PackLedger, tmp_path: Path) -> None:
    """The log extends the checkpoint; the options asked for a pack of less than it."""
    pack_ledger.add(0)
    pack_ledger.add(1)
    saved = tmp_path / "own.checkpoint"
    saved.write_text(pack_ledger.ledger.checkpoint().note, encoding="utf-8")
    out = tmp_path / "pack.pdf"
    r = run_cli(
        ["pack", "--tree-size", "2", "--since-checkpoint", str(saved), "-o", str(out)]
        + ["--project", "example"]
    )
    assert r.exit_code == 2, r.stderr
    assert "The previous checkpoint has 3 entries, more than the 2 of --tree-size." in r.stderr
    assert "Give --tree-size 3 or more, or an earlier checkpoint" in r.stderr
    _nothing_written(out)
    assert run_cli(["ledger", "consistency", "--from", str(saved)]).exit_code == 0


def _settings() -> Any:
    from escrow.config import load_settings

    return load_settings()
