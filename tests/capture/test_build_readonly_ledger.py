"""`escrow build` against a ledger this user may only read stops while the engine builds.

Regression: a PostgreSQL role with ``default_transaction_read_only`` (or a standby), a
role granted only SELECT, or a SQLite ledger file that cannot be written had the whole
build run, and only its append refused at the end — the signed entry then kept under
ESCROW_HOME/unrecorded/ "for `escrow post` once the ledger answers again", which it
never would.  The ledger is now checked for an append (a rolled-back probe writing
nothing, as `escrow pack` does) in the thread that opens it while the engine builds: the
build stops, with one sentence and exit 3, nothing recorded or kept — as for a signing
key the ledger would refuse.  What is refused only once the work is done (`escrow
capture`, `escrow record`) is kept, as for an unreachable ledger, and says so truly.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from escrow.config import load_settings
from escrow.ledger.store import Ledger
from tests.capture.conftest import write_tree
from tests.conftest import BASE_TAG, run_cli
from tests.pack.test_pack_refusals_early import (  # noqa: F401 - fixtures, used by name
    ReadingRole,
    _pg_size,
    pg_database,
    pg_home,
    reading_role,
)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

#: long enough that the ledger's check answers while the engine still builds (as
#: test_build_errors.py's stopped builds)
DOCKERFILE = f"FROM {BASE_TAG}\n" + "".join(f"RUN echo step-{i}\n" for i in range(8))


def _stopped(r: Any) -> str:
    """The build was stopped early, said in one error line after the progress; that line."""
    assert r.exit_code == 3, r.stderr
    assert "escrow: the build was stopped; nothing is recorded." in r.stderr
    assert "step-7" not in r.stderr  # stopped before its last step
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("escrow: error: ")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr
    error = errors[0]
    assert "; the build could not be recorded, so it was stopped and nothing was recorded." in (
        error
    )
    assert "Nothing is lost" not in error and "escrow post" not in error
    return error


@pytest.fixture
def tag(docker_client: Any) -> Iterator[str]:
    """A tag of this test's own, removed after it if a build made it."""
    name = f"hunt-ro-{uuid.uuid4().hex[:10]}:1"
    yield name
    try:
        docker_client.images.remove(name)
    except docker.errors.ImageNotFound:
        pass


def _no_image(docker_client: Any, tag: str) -> None:
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)  # the stopped build tagged nothing


@pytest.fixture
def read_only_ledger(escrow_home: Path) -> Iterator[Path]:
    """The SQLite ledger file of ``escrow_home`` made read-only (a read-only bind mount of
    it: CI runs as root, whom file modes do not stop), its folder still writable."""
    db = escrow_home / "ledger.db"
    subprocess.run(["mount", "--bind", str(db), str(db)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(db)], check=True)
        yield db
    finally:
        subprocess.run(["umount", "-l", str(db)], check=False)


def _size() -> int:
    with Ledger.open(load_settings(), create=False) as ledger:
        return ledger.size()


def test_a_sqlite_ledger_that_cannot_be_written_stops_the_build(
    escrow_home: Path,
    read_only_ledger: Path,
    base_image: str,
    docker_client: Any,
    tag: str,
    tmp_path: Path,
) -> None:
    size = _size()
    ctx = write_tree(tmp_path / "app", {"Dockerfile": DOCKERFILE})

    r = run_cli(["build", str(ctx), "-t", tag])

    error = _stopped(r)
    assert "is unavailable: attempt to write a readonly database; the build could not" in error
    assert r.stdout == ""
    assert not (escrow_home / "unrecorded").exists()
    assert _size() == size
    _no_image(docker_client, tag)


def test_a_capture_refused_at_its_end_is_kept_and_says_how_to_append_it(
    escrow_home: Path, read_only_ledger: Path, base_image: str
) -> None:
    """Refused once the work is done: kept, as for an unreachable ledger, but not "until
    the ledger answers again" — it does answer; it refuses this writer."""
    size = _size()

    r = run_cli(["capture", BASE_TAG])

    assert r.exit_code == 3, r.stderr
    assert "attempt to write a readonly database. Nothing is lost: the signed entry is " in (
        r.stderr
    )
    assert "appends it once the ledger may be written to." in r.stderr
    assert "answers again" not in r.stderr
    kept = list((escrow_home / "unrecorded").glob("*.dsse.json"))
    assert len(kept) == 1
    assert _size() == size
    subprocess.run(["umount", "-l", str(read_only_ledger)], check=True)  # may write now
    posted = run_cli(["post", str(kept[0])])
    assert posted.exit_code == 0, posted.stderr
    assert _size() == size + 1


@pytest.mark.postgres
def test_a_postgresql_role_that_may_only_read_stops_the_build(
    pg_home: str,  # noqa: F811 - the imported fixture
    reading_role: ReadingRole,  # noqa: F811
    base_image: str,
    docker_client: Any,
    tag: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESCROW_DB_URL", reading_role.url)
    size = _pg_size(pg_home)
    ctx = write_tree(tmp_path / "app", {"Dockerfile": DOCKERFILE})

    r = run_cli(["build", str(ctx), "-t", tag, "--no-deposit"])

    error = _stopped(r)
    assert f"failed: {reading_role.refused}; the build could not be recorded" in error
    assert reading_role.hint in error
    assert not (load_settings().home / "unrecorded").exists()
    assert _pg_size(pg_home) == size  # neither the build nor the check wrote anything
    _no_image(docker_client, tag)
