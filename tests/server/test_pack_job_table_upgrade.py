"""`escrow serve` upgrades a `server_pack_job` table made by the previous release.

That table has no `error_kind` column (the kind of a failed job's error).  The server adds it
when it starts, in its serialised write transaction, on SQLite and on PostgreSQL; the jobs
already in the table keep their rows and, having no kind, fail `escrow pack` with exit 2 as
they always did (as a job document from a server of the previous release does).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import free_port, make_tokens, one_build_ledger, start_serve, stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

#: ``server_pack_job`` as the previous release created it (SQLModel's DDL), per dialect.
OLD_TABLE = """CREATE TABLE server_pack_job (
    id VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    scope TEXT NOT NULL,
    requested_by VARCHAR(200) NOT NULL,
    requested_at {time} NOT NULL,
    started_at {time},
    finished_at {time},
    error TEXT,
    pdf {blob},
    pdf_sha256 VARCHAR(64),
    pdf_size INTEGER,
    entry_index INTEGER,
    PRIMARY KEY (id)
)"""
OLD_INDEX = "CREATE INDEX ix_server_pack_job_status ON server_pack_job (status)"
OLD_ERROR = "The pack could not be rendered."


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Settings of a fresh ledger holding one build of project ``upgraded``."""
    with one_build_ledger(
        request, tmp_path, monkeypatch, "upgraded", pg_name="escrow_jobtable"
    ) as s:
        yield s


def make_old_table(settings: Any) -> str:
    """The previous release's table, holding one failed job; that job's ID."""
    from sqlalchemy import text

    from escrow.ledger.store import make_engine

    engine = make_engine(settings.db_url)
    pg = engine.dialect.name == "postgresql"
    ddl = OLD_TABLE.format(
        time="TIMESTAMP WITH TIME ZONE" if pg else "DATETIME", blob="BYTEA" if pg else "BLOB"
    )
    job_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(text(ddl))
            conn.execute(text(OLD_INDEX))
            conn.execute(
                text(
                    "INSERT INTO server_pack_job (id, status, scope, requested_by, "
                    "requested_at, started_at, finished_at, error) "
                    "VALUES (:id, 'failed', :scope, 'test-auditor', :t, :t, :t, :error)"
                ),
                {"id": job_id, "scope": '{"projects": ["upgraded"]}', "t": now, "error": OLD_ERROR},
            )
    finally:
        engine.dispose()
    return job_id


def columns(settings: Any) -> set[str]:
    from sqlalchemy import inspect

    from escrow.ledger.store import make_engine

    engine = make_engine(settings.db_url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("server_pack_job")}
    finally:
        engine.dispose()


def test_serve_adds_error_kind_to_a_pack_job_table_of_the_previous_release(
    settings: Any, tmp_path: Path
) -> None:
    from escrow.errors import InputError
    from escrow.ledger.store import Ledger
    from escrow.server.client import RemoteLedger

    old_job = make_old_table(settings)
    assert "error_kind" not in columns(settings)
    with Ledger.open(settings) as ledger:
        note = ledger.checkpoint().note
    tokens = make_tokens(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}
    proc = start_serve(settings.home, settings.db_url, port=port, log=tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=url, headers=auth, timeout=60) as auditor:
            # the job the previous release failed: as it was, with no kind
            r = auditor.get(f"/v1/packs/{old_job}")
            assert r.status_code == 200, r.text
            job = r.json()
            assert (job["status"], job["error"]) == ("failed", OLD_ERROR)
            assert (job["error_kind"], job["error_exit_code"]) == (None, None)
            # and `escrow pack` waiting for it fails as before: exit 2
            with RemoteLedger(url, tokens["auditor"], home=tmp_path / "auditor") as remote:
                with pytest.raises(InputError) as failed:
                    remote.wait_pack(old_job)
            assert failed.value.exit_code == 2
            assert failed.value.message == f"The server could not make the pack: {OLD_ERROR}"

            # a job failing now records its kind in the added column
            other = "example.org/another-log\n" + note.split("\n", 1)[1]
            r = auditor.post(
                "/v1/packs", json={"projects": ["upgraded"], "since_checkpoint": other}
            )
            assert r.status_code == 202, r.text
            new_job = str(r.json()["id"])
            deadline = time.monotonic() + 240
            while (job := auditor.get(f"/v1/packs/{new_job}").json())["status"] in (
                "queued",
                "running",
            ):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["status"] == "failed", job
            # another log's checkpoint: a check that failed (`ledger consistency --from`)
            assert (job["error_kind"], job["error_exit_code"]) == ("check", 1)
    finally:
        stop(proc)
    assert "error_kind" in columns(settings)
    assert "added the column error_kind to the table server_pack_job" in (
        (tmp_path / "serve.log").read_text()
    )
