"""A pack job renders as long as it needs, and the job of a server that died is still found.

While a job's renderer runs, the runner that claimed it sets the row's `heartbeat_at` every
``HEARTBEAT_S``; a running job is stale (queued again when it kept a signed pack, else failed
as ``unavailable``) once its last heartbeat, or its start before the first, is older than
``STALE_AFTER_S``.  The job of a server that died is found within minutes, and a job of
5,000 builds (most of an hour) is not taken for a dead one.  The heartbeat touches its job
only while the job runs under its own claim, stops with the job however it ends, and
outlives a database that fails for a while.  Through a real server (Uvicorn in this
process, its renderer a real child process) with the interval and window shortened, and on
the real tables on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    LiveServer,
    finished,
    free_port,
    make_tokens,
    manifest,
    one_build_ledger,
    start_serve,
    stop,
    wait_for,
)
from server_helpers import (
    job_row as row,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "beating"
#: the shortened heartbeat and stale window of the tests through a server, in seconds
BEAT, WINDOW = 0.2, 2.0
STALE_ERROR = "The server rendering this pack stopped; request it again."


@dataclass
class HeldTsa:
    """A Time-Stamping Authority that takes requests and answers none until ``release``."""

    url: str = ""
    asked: threading.Event = field(default_factory=threading.Event)
    held: list[socket.socket] = field(default_factory=list)
    server: socket.socket | None = None

    def release(self) -> None:
        """Close every connection, and refuse new ones: the renderer's request fails."""
        if self.server is not None:
            self.server.close()
        for conn in self.held:
            conn.close()


@contextmanager
def held_tsa() -> Iterator[HeldTsa]:
    tsa = HeldTsa()
    tsa.server = socket.socket()
    tsa.server.bind(("127.0.0.1", 0))
    tsa.server.listen(8)
    tsa.url = f"http://127.0.0.1:{tsa.server.getsockname()[1]}/tsa"
    server = tsa.server

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # released
            tsa.held.append(conn)
            tsa.asked.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield tsa
    finally:
        tsa.release()
        thread.join(timeout=10)


def dead_claim(engine: Any, *, heartbeat_at: datetime | None = None) -> str:
    """A job as a server that claimed it and then died left it: running, under a claim
    nobody renders, its last heartbeat ``heartbeat_at`` (none: it died before the first)."""
    from sqlmodel import Session

    from escrow.server.packs import PackJob

    now = datetime.now(UTC)
    job_id = uuid.uuid4().hex
    job = PackJob(
        id=job_id,
        status="running",
        scope='{"projects": ["beating"]}',
        requested_by="test-auditor",
        requested_at=now,
        started_at=now,
        attempt=uuid.uuid4().hex,
        heartbeat_at=heartbeat_at,
    )
    with Session(engine.execution_options(escrow_write=True)) as s:
        s.add(job)
        s.commit()
    return job_id


def one_build(live_server: LiveServer) -> None:
    from escrow.signing.dsse import sign_statement

    with live_server.ledger() as ledger:
        ledger.append(sign_statement(manifest(PROJECT), live_server.build_key()))


def heartbeats_alive(job_id: str) -> bool:
    return any(t.name == f"escrow-pack-heartbeat-{job_id}" for t in threading.enumerate())


@pytest.fixture
def short_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner of the server in this process beats every BEAT s, stale after WINDOW s."""
    from escrow.server import packs

    # raising=False: on a server without heartbeats the test runs, and its job goes stale
    monkeypatch.setattr(packs, "HEARTBEAT_S", BEAT, raising=False)
    monkeypatch.setattr(packs, "STALE_AFTER_S", WINDOW)


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_job_whose_heartbeat_goes_on_outlives_the_stale_window_and_a_dead_claim_does_not(
    live_server: LiveServer, short_beats: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs

    one_build(live_server)
    engine = make_engine(live_server.settings.db_url)
    try:
        jobs = PackJobs(engine)
        with held_tsa() as tsa, live_server.client("auditor") as auditor:
            monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the server's renderer's
            r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
            assert r.status_code == 202, r.text
            alive = str(r.json()["id"])
            # its renderer has rendered and signed the pack, and waits for the timestamp
            assert tsa.asked.wait(240), "the server's renderer never asked its TSA"
            dead = dead_claim(engine)

            # three stale windows, while servers sharing the database look for stale jobs
            until = time.monotonic() + 3 * WINDOW
            while time.monotonic() < until:
                assert jobs.claim() is None  # nothing queued
                time.sleep(0.25)

            job = row(engine, alive)
            now = datetime.now(UTC)
            assert job.status == "running", job
            assert job.started_at < now - timedelta(seconds=3 * WINDOW)
            assert job.heartbeat_at is not None and job.heartbeat_at > now - timedelta(
                seconds=WINDOW
            )
            gone = auditor.get(f"/v1/packs/{dead}").json()
            assert (gone["status"], gone["error"]) == ("failed", STALE_ERROR)
            assert (gone["error_kind"], gone["error_exit_code"]) == ("unavailable", 3)

            # the TSA fails: the job fails as its failure, and its heartbeat stops
            tsa.release()
            failed = finished(auditor, alive)
            assert failed["status"] == "failed", failed
            assert "cannot be reached" in failed["error"], failed
            wait_for("the heartbeat to stop", lambda: not heartbeats_alive(alive), timeout=10)
            last = row(engine, alive).heartbeat_at
            time.sleep(5 * BEAT)
            assert row(engine, alive).heartbeat_at == last
    finally:
        engine.dispose()


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_the_heartbeat_of_a_job_that_succeeds_stops_with_it(
    live_server: LiveServer, short_beats: None
) -> None:
    from escrow.ledger.store import make_engine

    one_build(live_server)
    engine = make_engine(live_server.settings.db_url)
    try:
        with live_server.client("auditor") as auditor:
            r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
            assert r.status_code == 202, r.text
            job_id = str(r.json()["id"])
            done = finished(auditor, job_id)
            assert done["status"] == "succeeded", done
            wait_for("the heartbeat to stop", lambda: not heartbeats_alive(job_id), timeout=10)
            job = row(engine, job_id)
            # it beat while the pack rendered (seconds), and not after
            assert job.heartbeat_at is not None
            assert job.started_at < job.heartbeat_at <= job.finished_at
            time.sleep(5 * BEAT)
            assert row(engine, job_id).heartbeat_at == job.heartbeat_at
    finally:
        engine.dispose()


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_job_whose_server_died_is_failed_as_stale_by_a_running_server(
    live_server: LiveServer, short_beats: None
) -> None:
    """Claimed by a server that died before its first heartbeat, or after some: the
    running server's own runner fails both once their window has passed; `escrow pack`
    waiting for one exits 3."""
    from escrow.errors import EnvironmentProblem
    from escrow.ledger.store import make_engine
    from escrow.server.client import _job_failure

    engine = make_engine(live_server.settings.db_url)
    try:
        never_beat = dead_claim(engine)
        beat_then_died = dead_claim(engine, heartbeat_at=datetime.now(UTC))
        with live_server.client("auditor") as auditor:
            for job_id in (never_beat, beat_then_died):
                assert auditor.get(f"/v1/packs/{job_id}").json()["status"] == "running"
            for job_id in (never_beat, beat_then_died):
                job = finished(auditor, job_id)
                assert (job["status"], job["error"]) == ("failed", STALE_ERROR), job
                assert (job["error_kind"], job["error_exit_code"]) == ("unavailable", 3)
                error = _job_failure(job)
                assert isinstance(error, EnvironmentProblem) and error.exit_code == 3
    finally:
        engine.dispose()


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_the_heartbeat_outlives_a_database_that_fails_for_a_while(
    live_server: LiveServer,
    short_beats: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The job table gone for some beats (the heartbeat's UPDATE fails): one line in the
    server's log, the job goes on, and its heartbeat resumes once the table is back."""
    from sqlalchemy import text

    from escrow.ledger.store import make_engine

    caplog.set_level(logging.INFO, logger="escrow.server")
    one_build(live_server)
    engine = make_engine(live_server.settings.db_url)
    try:
        with held_tsa() as tsa, live_server.client("auditor") as auditor:
            monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)
            r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
            assert r.status_code == 202, r.text
            job_id = str(r.json()["id"])
            assert tsa.asked.wait(240), "the server's renderer never asked its TSA"

            writer = engine.execution_options(escrow_write=True)
            with writer.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE server_pack_job RENAME TO pack_job_away")
            time.sleep(8 * BEAT)
            with writer.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE pack_job_away RENAME TO server_pack_job")
            back = datetime.now(UTC)

            assert heartbeats_alive(job_id)
            wait_for(
                "a heartbeat after the outage",
                lambda: (row(engine, job_id).heartbeat_at or back) > back,
                timeout=10,
            )
            job = row(engine, job_id)
            assert job.status == "running"
            with engine.connect() as conn:  # the row is untouched but for its heartbeat
                assert (
                    conn.execute(
                        text("SELECT count(*) FROM server_pack_job WHERE id = :id"), {"id": job_id}
                    ).scalar_one()
                    == 1
                )

            tsa.release()
            failed = finished(auditor, job_id)
            assert failed["status"] == "failed" and "cannot be reached" in failed["error"]
    finally:
        engine.dispose()
    said = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len([m for m in said if "cannot record its heartbeat (retrying)" in m]) == 1, said
    assert len([m for m in said if "its heartbeat is recorded again" in m]) == 1, said
    assert not [r for r in caplog.records if r.exc_info], "a traceback in the server's log"


# -- on the real tables, SQLite and PostgreSQL ------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    with one_build_ledger(request, tmp_path, monkeypatch, PROJECT, pg_name="escrow_beat") as s:
        yield s


def test_a_heartbeat_touches_its_job_only_while_the_job_runs_under_its_claim(
    settings: Any,
) -> None:
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs

    engine = make_engine(settings.db_url)
    try:
        PackJobs.create_tables(engine)
        jobs = PackJobs(engine)
        job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
        assert jobs.beat(job_id, "no-claim") is False  # queued: nobody's
        first = jobs.claim()
        assert first == job_id
        assert jobs.beat(job_id, first.attempt) is True
        beaten = row(engine, job_id).heartbeat_at
        assert beaten is not None

        # stopped and claimed again (another server): the first claim's is over
        assert jobs.requeue(job_id, first.attempt) is True
        assert row(engine, job_id).heartbeat_at is None
        second = jobs.claim()
        assert second == job_id and second.attempt != first.attempt
        assert jobs.beat(job_id, first.attempt) is False
        assert jobs.requeue(job_id, first.attempt) is False  # not the first claim's to queue
        job = row(engine, job_id)
        assert (job.status, job.attempt, job.heartbeat_at) == ("running", second.attempt, None)
        assert jobs.beat(job_id, second.attempt) is True

        # finished: no claim's any more
        jobs.finish(job_id, error="The pack could not be rendered.", error_kind="internal")
        last = row(engine, job_id).heartbeat_at
        assert jobs.beat(job_id, second.attempt) is False
        assert row(engine, job_id).heartbeat_at == last
    finally:
        engine.dispose()


def test_stale_is_the_last_heartbeat_older_than_the_window_not_the_start(
    settings: Any,
) -> None:
    """With the real window: a job started long before it but beating is not stale; one
    whose heartbeat stopped is failed, or queued again when it kept its signed pack."""
    from sqlalchemy import update

    from escrow.ledger.store import make_engine
    from escrow.server.packs import STALE_AFTER_S, PackJob, PackJobs, PackRecord

    engine = make_engine(settings.db_url)
    try:
        PackJobs.create_tables(engine)
        jobs = PackJobs(engine)
        ids = [jobs.submit({"projects": [PROJECT]}, "test-auditor").id for _ in range(3)]
        claims = [jobs.claim() for _ in ids]
        assert claims == ids
        beating, stopped, kept = ids
        tbl = PackJob.__table__  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        long_ago = now - timedelta(seconds=STALE_AFTER_S * 10)
        lately = now - timedelta(seconds=STALE_AFTER_S / 2)
        before_the_window = now - timedelta(seconds=STALE_AFTER_S + 60)
        with engine.begin() as conn:
            conn.execute(update(tbl).values(started_at=long_ago))
            conn.execute(update(tbl).where(tbl.c.id == beating).values(heartbeat_at=lately))
            conn.execute(
                update(tbl).where(tbl.c.id != beating).values(heartbeat_at=before_the_window)
            )
            conn.execute(
                PackRecord.__table__.insert().values(  # type: ignore[attr-defined]
                    job_id=kept, pdf=b"%PDF", envelope=b"{}", leaf_hash="0" * 64, kept_at=now
                )
            )

        again = jobs.claim()  # the stale ones go first: the kept one is queued, and claimed
        assert again == kept and again.attempt != claims[2].attempt  # type: ignore[union-attr]
        assert row(engine, beating).status == "running"
        job = row(engine, stopped)
        assert (job.status, job.error, job.error_kind) == ("failed", STALE_ERROR, "unavailable")
    finally:
        engine.dispose()


#: ``server_pack_job`` as the previous release made it: with ``error_kind``, without the
#: heartbeat's columns.
OLD_TABLE = """CREATE TABLE server_pack_job (
    id VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    scope TEXT NOT NULL,
    requested_by VARCHAR(200) NOT NULL,
    requested_at {time} NOT NULL,
    started_at {time},
    finished_at {time},
    error TEXT,
    error_kind VARCHAR(16),
    pdf {blob},
    pdf_sha256 VARCHAR(64),
    pdf_size INTEGER,
    entry_index INTEGER,
    PRIMARY KEY (id)
)"""


def test_serve_adds_the_heartbeat_to_a_table_of_the_previous_release(
    settings: Any, tmp_path: Path
) -> None:
    """`escrow serve` adds ``attempt`` and ``heartbeat_at`` when it starts; a job the previous
    release left running long ago (its server gone) is failed as stale by its started_at."""
    from sqlalchemy import inspect, text

    from escrow.ledger.store import make_engine
    from escrow.server.packs import STALE_AFTER_S

    engine = make_engine(settings.db_url)
    pg = engine.dialect.name == "postgresql"
    ddl = OLD_TABLE.format(time="TIMESTAMP" if pg else "DATETIME", blob="BYTEA" if pg else "BLOB")
    old_job = uuid.uuid4().hex
    long_ago = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)
    try:
        with engine.begin() as conn:
            conn.execute(text(ddl))
            conn.execute(
                text(
                    "INSERT INTO server_pack_job (id, status, scope, requested_by, "
                    "requested_at, started_at) "
                    "VALUES (:id, 'running', :scope, 'test-auditor', :t, :t)"
                ),
                {"id": old_job, "scope": '{"projects": ["beating"]}', "t": long_ago},
            )
    finally:
        engine.dispose()
    tokens = make_tokens(settings)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(settings.home, settings.db_url, port=port, log=log)
    try:
        auth = {"Authorization": f"Bearer {tokens['auditor']}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as c:
            job = finished(c, old_job)
    finally:
        stop(proc)
    assert (job["status"], job["error"], job["error_kind"]) == (
        "failed",
        STALE_ERROR,
        "unavailable",
    )
    engine = make_engine(settings.db_url)
    try:
        have = {c["name"] for c in inspect(engine).get_columns("server_pack_job")}
    finally:
        engine.dispose()
    assert {"attempt", "heartbeat_at"} <= have
    for column in ("attempt", "heartbeat_at"):
        assert f"added the column {column} to the table server_pack_job" in log.read_text()
