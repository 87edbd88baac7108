"""Pack jobs through a server: hints that fit the server, its own settings, and claims.

* A scope over the build limit fails its job with the sentence a local pack gives, but the
  hint relayed suggests what works through a server (one pack per project or per quarter,
  the server's limit), not ``--max-builds N``, which `escrow pack` refuses through a server.
* A malformed ESCROW_TSA_URL where `escrow serve` runs is the server's setting, not the
  auditor's input: its jobs fail as ``unavailable`` (`escrow pack` exits 3) with a hint for
  the server's operator, and the server says so in its log when it starts.
* A renderer keeps its signed pack and records its job's outcome only while the job runs
  under its own claim (``attempt``): a renderer whose job was taken for dead and claimed
  by another server records nothing, neither a pack nor a failure.
* The job document gives ``heartbeat_at``: when the server rendering it last said it is
  alive.

Through real servers (``escrow serve`` processes, or Uvicorn in this process) and on the
real tables, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    LiveServer,
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
from server_helpers import serving as uvicorn_serving
from tsakit import Tsa, make_tsa_files, openssl_tsa

from tests.pack.synth import manifest_variant

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "followed"
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
SERVER_TSA_URL_HINT = (
    "The server's operator should set ESCROW_TSA_URL where `escrow serve` runs to the RFC "
    "3161 URL its Time-Stamping Authority publishes (a / or @ in its password "
    "percent-encoded) and restart it; nothing was written or recorded."
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A fresh ledger holding one build of :data:`PROJECT`."""
    with one_build_ledger(request, tmp_path, monkeypatch, PROJECT, pg_name="escrow_follow") as s:
        yield s


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    log: Path
    proc: Any

    def client(self, role: str = "auditor") -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.tokens[role]}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=60)

    def said(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serving(settings: Any, tmp_path: Path, *extra: str) -> Iterator[Served]:
    """`escrow serve` of ``settings``' ledger, in this process's environment."""
    tokens = make_tokens(settings)
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    proc = start_serve(settings.home, settings.db_url, port=port, log=log, extra=list(extra))
    try:
        yield Served(f"http://127.0.0.1:{port}", tokens, log, proc)
    finally:
        stop(proc)


def said(stderr: str) -> str:
    """The one error a run printed, without ``escrow: error:``."""
    errors = [line for line in stderr.splitlines() if line.startswith("escrow: error: ")]
    assert len(errors) == 1, stderr
    return errors[0].removeprefix("escrow: error: ")


def queued_job(stderr: str) -> str:
    found = re.search(r"Pack job ([0-9a-f]+) queued", stderr)
    assert found is not None, stderr
    return found.group(1)


def at(text: str) -> datetime:
    """An RFC 3339 time of a job document."""
    assert re.fullmatch(RFC3339, text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pack_entries(settings: Any) -> list[int]:
    from escrow.documents.types import AUDIT_PACK
    from escrow.ledger.store import Ledger

    with Ledger.open(settings) as ledger:
        return [e.index for e in ledger.entries(predicate_type=AUDIT_PACK)]


# -- 1. a scope over the build limit ---------------------------------------------------


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_scope_over_the_limit_through_a_server_suggests_what_works_there(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack job holds as many builds as a local pack, 5,000 (the heartbeat keeps a long
    job alive; the server held jobs to 1,000 builds before it): a larger scope fails its job
    as bad input, in the sentence a local pack gives but with a hint without ``--max-builds``
    (refused through a server), and `escrow pack` through the server exits 2 with nothing
    written."""
    from escrow.ledger.store import Ledger
    from escrow.pack.collect import MAX_BUILDS
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    key = SigningKey.load(live_server.settings.key_path)
    with Ledger.open(live_server.settings) as ledger:
        appended = list(
            ledger.append_many(
                sign_statement(manifest_variant(n, project="huge"), key)
                for n in range(MAX_BUILDS + 1)
            )
        )
    assert not [a for a in appended if isinstance(a, Exception)]

    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    out = tmp_path / "huge.pdf"
    r = cli(["pack", "--project", "huge", "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    error = (
        "The scope of this pack holds 5,001 builds, more than the 5,000 a pack holds (each "
        "takes about two pages, and the pack needs some 0.25 MB of memory a page). Make one "
        "pack per project (--project) or per quarter (--since/--until): the server's limit is "
        "5,000 builds a pack."
    )
    assert said(r.stderr) == f"The server could not make the pack: {error}"
    assert "--max-builds" not in r.stderr
    assert not out.exists()
    with live_server.client("auditor") as auditor:
        job = auditor.get(f"/v1/packs/{queued_job(r.stderr)}").json()
    assert (job["status"], job["error"]) == ("failed", error)
    assert (job["error_kind"], job["error_exit_code"]) == ("input", 2)
    # the option the local hint names is refused through a server
    r = cli(["pack", "--project", "huge", "--max-builds", "6000", "-o", str(out)])
    assert r.exit_code == 2 and "--max-builds" in said(r.stderr), r.stderr


# -- 2. a malformed ESCROW_TSA_URL of the server ----------------------------------------


def test_a_malformed_tsa_url_of_the_server_fails_its_jobs_as_the_servers_environment(
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exit 3 (not 2, the auditor's input) with a hint for the server's operator; the
    server's log says so when it starts; its password is shown nowhere.  (A server in this
    process: `escrow pack` through a server reads no ESCROW_TSA_URL of its own.)"""
    from escrow.ledger.store import Ledger
    from escrow.server.app import ServerConfig, create_app

    caplog.set_level(logging.INFO, logger="escrow.server")
    with Ledger.open(settings) as ledger:
        size = ledger.size()
    tokens = make_tokens(settings)
    monkeypatch.setenv("ESCROW_TSA_URL", "ftp://ops:s3cret@tsa.example.com/tsr")  # the server's
    app = create_app(ServerConfig(settings, pack_workers=1))
    with uvicorn_serving(app) as url:
        monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "auditor-home"))
        monkeypatch.setenv("ESCROW_SERVER", url)
        monkeypatch.setenv("ESCROW_TOKEN", tokens["auditor"])
        monkeypatch.delenv("ESCROW_DB_URL", raising=False)
        out = tmp_path / "pack.pdf"
        r = cli(["pack", "--project", PROJECT, "-o", str(out)])
        auth = {"Authorization": f"Bearer {tokens['auditor']}"}
        job = httpx.get(f"{url}/v1/packs/{queued_job(r.stderr)}", headers=auth).json()
    log = "\n".join(record.getMessage() for record in caplog.records)

    error = (
        "The server's ESCROW_TSA_URL is not an http(s) URL of a Time-Stamping Authority: "
        f"'ftp://tsa.example.com/tsr'. {SERVER_TSA_URL_HINT}"
    )
    assert r.exit_code == 3, r.stderr
    assert said(r.stderr) == f"The server could not make the pack: {error}"
    assert not out.exists()
    assert (job["status"], job["error"]) == ("failed", error)
    assert (job["error_kind"], job["error_exit_code"]) == ("unavailable", 3)
    assert f"pack jobs will fail until this is fixed: {error}" in log
    assert "s3cret" not in log + r.stderr + str(job)
    with Ledger.open(settings) as ledger:
        assert ledger.size() == size  # nothing recorded


# -- 3. keep and finish only under the renderer's own claim ----------------------------


def test_keep_and_finish_act_only_while_the_job_runs_under_their_claim(settings: Any) -> None:
    """A claim taken for dead (its job queued again from its kept pack, and claimed by
    another server) can neither replace the kept pack nor finish the job, as a success or
    a failure; the claim that holds the job can, once."""
    from sqlalchemy import update

    from escrow.ledger.store import make_engine
    from escrow.server.packs import STALE_AFTER_S, JobNotRunning, PackJob, PackJobs

    engine = make_engine(settings.db_url)
    try:
        PackJobs.create_tables(engine)
        jobs = PackJobs(engine)
        job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
        first = jobs.claim()
        assert first == job_id and first is not None
        jobs.keep(job_id, b"%PDF-first", b'{"first": 1}', first.attempt)
        kept = jobs.kept(job_id)
        assert kept is not None

        # the first claim's heartbeat stops (a long database outage, say): another server
        # takes it for dead, queues the job again from its kept pack and claims it
        tbl = PackJob.__table__  # type: ignore[attr-defined]
        long_ago = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)
        with engine.begin() as conn:
            conn.execute(update(tbl).where(tbl.c.id == job_id).values(heartbeat_at=long_ago))
        second = jobs.claim()
        assert second == job_id and second is not None and second.attempt != first.attempt

        # the first claim's renderer comes back: it records nothing
        with pytest.raises(JobNotRunning):
            jobs.keep(job_id, b"%PDF-late", b'{"late": 1}', first.attempt)
        assert jobs.kept(job_id) == kept
        assert jobs.finish(job_id, pdf=b"%PDF-late", entry_index=7, attempt=first.attempt) is False
        failed = jobs.finish(job_id, error="The pack could not be rendered.", attempt=first.attempt)
        assert failed is False
        job = row(engine, job_id)
        assert (job.status, job.attempt, job.pdf, job.error) == (
            "running",
            second.attempt,
            None,
            None,
        )
        assert jobs.kept(job_id) == kept  # for the second claim to finish from

        # the second claim finishes it, once
        assert jobs.finish(job_id, pdf=kept.pdf, entry_index=3, attempt=second.attempt) is True
        done = row(engine, job_id)
        assert (done.status, done.pdf, done.entry_index) == ("succeeded", kept.pdf, 3)
        assert jobs.kept(job_id) is None
        assert jobs.finish(job_id, error="late", attempt=second.attempt) is False
        assert jobs.finish(job_id, error="late") is False  # finished: nobody's to finish
        with pytest.raises(JobNotRunning):
            jobs.keep(job_id, b"%PDF-late", b'{"late": 1}', second.attempt)
        again = row(engine, job_id)
        assert (again.status, again.error, again.finished_at) == (
            "succeeded",
            None,
            done.finished_at,
        )
        assert jobs.kept(job_id) is None
    finally:
        engine.dispose()


@contextmanager
def gated_tsa(folder: Path) -> Iterator[Tsa]:
    """A real Time-Stamping Authority (OpenSSL's) that holds each request until ``answer``
    (it then answers with a timestamp) or ``refuse`` (it closes the connection)."""
    with openssl_tsa(make_tsa_files(folder), hold_from=1) as tsa:
        yield tsa


@pytest.mark.parametrize("outcome", ["signed", "tsa-fails"])
def test_a_renderer_whose_job_was_claimed_again_records_nothing(
    settings: Any, outcome: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `escrow serve` renders a job; while its renderer waits for the timestamp,
    another server claims the job (the state a claim taken for dead leaves).  Whether the
    renderer then signs its pack or fails, it neither records the pack nor touches the job,
    which stays the other claim's."""
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJob

    engine = make_engine(settings.db_url)
    try:
        with gated_tsa(tmp_path / "tsa") as tsa:
            monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the server's environment
            with serving(settings, tmp_path) as served, served.client() as auditor:
                r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
                assert r.status_code == 202, r.text
                job_id = str(r.json()["id"])
                # its renderer has collected the builds and waits for the TSA's first answer
                assert tsa.held.wait(240), "the server's renderer never asked its TSA"
                mine = row(engine, job_id)
                assert mine.status == "running" and mine.attempt

                other = uuid.uuid4().hex  # another server's claim of the job
                tbl = PackJob.__table__  # type: ignore[attr-defined]
                with engine.execution_options(escrow_write=True).begin() as conn:
                    conn.execute(
                        tbl.update()
                        .where(tbl.c.id == job_id)
                        .values(attempt=other, heartbeat_at=datetime.now(UTC))
                    )
                if outcome == "signed":
                    tsa.answer()
                else:
                    tsa.refuse()
                wait_for(
                    "the renderer to end",
                    lambda: (
                        f"pack job {job_id}: done" in served.said()
                        or f"pack job {job_id} failed" in served.said()
                    ),
                )
                doc = auditor.get(f"/v1/packs/{job_id}").json()
    finally:
        engine.dispose()
    assert f"pack job {job_id}: done" in served.said(), served.said()[-3000:]
    assert bool(tsa.answered) == (outcome == "signed")  # timestamped and signed, not kept
    assert doc["status"] == "running", doc
    assert (doc["error"], doc["pdf_sha256"], doc["entry_index"]) == (None, None, None)
    engine = make_engine(settings.db_url)
    try:
        job = row(engine, job_id)
        from escrow.server.packs import PackJobs

        kept = PackJobs(engine).kept(job_id)
    finally:
        engine.dispose()
    assert (job.status, job.attempt, job.pdf) == ("running", other, None)
    assert kept is None
    assert pack_entries(settings) == []  # no pack recorded


# -- 4. heartbeat_at in the job document -----------------------------------------------


def test_the_job_document_gives_the_last_heartbeat(settings: Any, tmp_path: Path) -> None:
    """Null while queued and before the first beat; each beat's time, RFC 3339, while it
    runs; the last one once finished.  The OpenAPI document describes it."""
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs

    with serving(settings, tmp_path, "--no-packs") as served, served.client() as auditor:
        r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
        assert r.status_code == 202, r.text
        posted = r.json()
        job_id = str(posted["id"])
        assert "heartbeat_at" in posted and posted["heartbeat_at"] is None

        def doc() -> dict[str, Any]:
            got = auditor.get(f"/v1/packs/{job_id}")
            assert got.status_code == 200, got.text
            found: dict[str, Any] = got.json()
            return found

        engine = make_engine(settings.db_url)
        try:
            jobs = PackJobs(engine)  # the runner of another server, sharing the database
            claim = jobs.claim()
            assert claim == job_id and claim is not None
            running = doc()
            assert (running["status"], running["heartbeat_at"]) == ("running", None)
            seen = []
            for _ in range(2):
                assert jobs.beat(job_id, claim.attempt)
                beat = row(engine, job_id).heartbeat_at
                said = doc()["heartbeat_at"]
                assert at(said) == beat
                seen.append(said)
                time.sleep(0.05)
            assert at(seen[0]) < at(seen[1])
            assert jobs.finish(job_id, error="The pack could not be rendered.")
            assert doc()["heartbeat_at"] == seen[1]
        finally:
            engine.dispose()
        schema = auditor.get("/openapi.json").json()["components"]["schemas"]["PackJobOut"]
    prop = schema["properties"]["heartbeat_at"]
    assert {t.get("type") for t in prop["anyOf"]} == {"string", "null"}
    assert "heartbeat" in prop["description"]


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_rendering_jobs_heartbeat_advances_in_its_document(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the server's own renderer works on a job (held by its TSA), an operator sees
    its heartbeat go on in GET /v1/packs/{id}."""
    from escrow.server import packs
    from escrow.signing.dsse import sign_statement

    monkeypatch.setattr(packs, "HEARTBEAT_S", 0.2)
    with live_server.ledger() as ledger:
        ledger.append(sign_statement(manifest(PROJECT), live_server.build_key()))
    with gated_tsa(tmp_path / "tsa") as tsa, live_server.client("auditor") as auditor:
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the server's renderer's
        r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
        assert r.status_code == 202, r.text
        job_id = str(r.json()["id"])
        assert tsa.held.wait(240), "the server's renderer never asked its TSA"

        def beat() -> str | None:
            doc = auditor.get(f"/v1/packs/{job_id}").json()
            assert doc["status"] == "running", doc
            said: str | None = doc["heartbeat_at"]
            return said

        first = wait_for("a heartbeat", beat, timeout=10)
        later = wait_for("a later heartbeat", lambda: (b := beat()) != first and b, timeout=10)
        assert at(later) > at(first)
        started = auditor.get(f"/v1/packs/{job_id}").json()["started_at"]
        assert at(started) < at(first)
        tsa.answer()

        def finished() -> dict[str, Any] | None:
            doc: dict[str, Any] = auditor.get(f"/v1/packs/{job_id}").json()
            return doc if doc["status"] not in ("queued", "running") else None

        done = wait_for("the job", finished)
    assert done["status"] == "succeeded", done
    assert at(done["started_at"]) < at(done["heartbeat_at"]) <= at(done["finished_at"])
