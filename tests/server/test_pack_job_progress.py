"""A pack job says how far it has come, and `escrow pack` through a server shows it.

The server's renderer records the stage of the rendering it has come to in the job row's
``progress`` ("collecting the builds", "rendering 1 build: laying out the front matter",
"signing and timestamping with URL", "recording the pack in the ledger"): only while the
job runs under its claim, each phase and part as it begins but a part of builds at most
every ``PROGRESS_EVERY_S``, and never failing the job on a database error (logged once).
The job document gives it; `escrow pack` through a server shows it as a local pack shows
its own: plain lines when stderr is no terminal, the live display on one, nothing with -q.

Through real `escrow serve` processes (their renderers real child processes), a real
OpenSSL Time-Stamping Authority that holds the signature's request (so the job is seen
while it signs), real `escrow pack` processes, and the real tables on SQLite and
PostgreSQL; what the renderer wrote, and in which order, is kept by a trigger of the
database itself.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
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
    finished,
    free_port,
    make_tokens,
    one_build_ledger,
    start_serve,
    stop,
    wait_for,
)
from tsakit import Tsa, make_tsa_files, openssl_tsa

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "progressing"
COLLECT = "collecting the builds"
RECORD = "recording the pack in the ledger"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A fresh ledger holding one build of :data:`PROJECT`."""
    monkeypatch.delenv("ESCROW_TSA_URL", raising=False)
    with one_build_ledger(request, tmp_path, monkeypatch, PROJECT, pg_name="escrow_progress") as s:
        yield s


@pytest.fixture
def engine(settings: Any) -> Iterator[Any]:
    """An engine on the ledger's database, its job tables made."""
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs

    found = make_engine(settings.db_url)
    PackJobs.create_tables(found)
    try:
        yield found
    finally:
        found.dispose()


# -- the parts: a server, a TSA that holds the signature, `escrow pack` -----------------


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    log: Path
    verifier_key: str

    def client(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.tokens['auditor']}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=60)

    def said(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serving(settings: Any, tmp_path: Path) -> Iterator[Served]:
    """`escrow serve` of ``settings``' ledger, in this process's environment."""
    from escrow.ledger.store import Ledger

    with Ledger.open(settings) as ledger:
        key = ledger.verifier_key()
    tokens = make_tokens(settings)
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    proc = start_serve(settings.home, settings.db_url, port=port, log=log)
    try:
        yield Served(f"http://127.0.0.1:{port}", tokens, log, key)
    finally:
        stop(proc)


@contextmanager
def signing_held_tsa(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tsa]:
    """A real Time-Stamping Authority (OpenSSL's), set as the server's (ESCROW_TSA_URL in
    the environment `escrow serve` gets), that answers the request a renderer makes before
    rendering at once, and holds the signature's own (the second) until ``answer``:
    meanwhile the job is running, and signing."""
    with openssl_tsa(make_tsa_files(folder), hold_from=2) as tsa:
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)
        yield tsa


def signing_text(tsa: Tsa) -> str:
    """The job's progress while its signature waits for ``tsa``."""
    return f"signing and timestamping with {tsa.url}"


def client_env(served: Served, home: Path) -> dict[str, str]:
    """The environment of `escrow pack` on an auditor's machine: no ledger of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env.update(
        ESCROW_HOME=str(home),
        ESCROW_SERVER=served.url,
        ESCROW_TOKEN=served.tokens["auditor"],
        ESCROW_SERVER_KEY=served.verifier_key,  # no "pinned the key" line on stderr
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@dataclass
class PackRun:
    """`escrow pack` as a real process, its stderr read as it comes (a pipe, or a terminal)."""

    proc: subprocess.Popen[bytes]
    sent: bytearray = field(default_factory=bytearray)
    reader: threading.Thread | None = None

    def shown(self) -> str:
        """What stderr got so far, as text (a terminal's cursor movements left out)."""
        return _ANSI.sub("", bytes(self.sent).decode("utf-8", "replace"))

    def wait_for(self, text: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.shown():
            assert self.proc.poll() is None or text in self.shown(), self.shown()
            assert time.monotonic() < deadline, f"{text!r} never shown: {self.shown()}"
            time.sleep(0.05)

    def end(self) -> tuple[int, str, str]:
        """Its exit code, stdout and stderr (as :meth:`shown`)."""
        assert self.proc.stdout is not None
        with self.proc.stdout:
            stdout = self.proc.stdout.read().decode()
        code = self.proc.wait(timeout=240)
        if self.reader is not None:
            self.reader.join(timeout=30)
        return code, stdout, self.shown()


def run_pack(env: dict[str, str], *args: str, terminal: bool = False) -> PackRun:
    """``escrow pack --project PROJECT ARGS``, stdout a pipe, stderr a pipe or a terminal."""
    cmd = [sys.executable, "-m", "escrow.cli.main", "pack", "--project", PROJECT, *args]
    if not terminal:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        run = PackRun(proc)
        err = proc.stderr
        assert err is not None

        def read_pipe() -> None:
            with err:
                while chunk := err.read1(65536):
                    run.sent.extend(chunk)

        run.reader = threading.Thread(target=read_pipe, daemon=True)
        run.reader.start()
        return run
    main, tty = os.openpty()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=tty, env=env
    )
    os.close(tty)
    run = PackRun(proc)

    def read_terminal() -> None:
        try:
            while True:
                ready, _, _ = select.select([main], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(main, 65536)
                    except OSError:  # EIO: the terminal's last writer is gone
                        return
                    if not chunk:
                        return
                    run.sent.extend(chunk)
                elif proc.poll() is not None:
                    return
        finally:
            os.close(main)

    run.reader = threading.Thread(target=read_terminal, daemon=True)
    run.reader.start()
    return run


# -- the rows, and what was written to them ----------------------------------------------


def watch_progress(engine: Any) -> None:
    """Keep every write of a job's ``progress``, in order, in the table ``progress_seen``
    (a trigger of the database: it sees what the server's renderer writes, as it writes)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE TABLE progress_seen (n SERIAL PRIMARY KEY, job_id TEXT, progress TEXT)"
            )
            conn.exec_driver_sql(
                "CREATE FUNCTION progress_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "INSERT INTO progress_seen (job_id, progress) VALUES (NEW.id, NEW.progress); "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER progress_seen AFTER UPDATE OF progress ON server_pack_job "
                "FOR EACH ROW EXECUTE FUNCTION progress_seen()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TABLE progress_seen "
                "(n INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, progress TEXT)"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER progress_seen AFTER UPDATE OF progress ON server_pack_job "
                "BEGIN INSERT INTO progress_seen (job_id, progress) "
                "VALUES (NEW.id, NEW.progress); END"
            )


def seen(engine: Any, job_id: str) -> list[str | None]:
    """The job's ``progress`` as each write left it, in order."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT progress FROM progress_seen WHERE job_id = :id ORDER BY n"),
            {"id": job_id},
        )
        return [r[0] for r in rows]


def refuse_progress(engine: Any) -> None:
    """Make the database refuse every write of a progress (an error of the database itself,
    as a lost connection or a full disk would be); the rest of the row is written."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_progress() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.progress IS NOT NULL THEN "
                "RAISE EXCEPTION 'progress refused by the test'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_progress BEFORE UPDATE OF progress ON server_pack_job "
                "FOR EACH ROW EXECUTE FUNCTION refuse_progress()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_progress BEFORE UPDATE OF progress ON server_pack_job "
                "WHEN NEW.progress IS NOT NULL "
                "BEGIN SELECT RAISE(ABORT, 'progress refused by the test'); END"
            )


def job_row(engine: Any, job_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from escrow.server.packs import PackJob

    tbl = PackJob.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        found = conn.execute(select(tbl).where(tbl.c.id == job_id)).mappings().first()
    assert found is not None
    return dict(found)


def the_only_job(engine: Any) -> str | None:
    from sqlalchemy import select

    from escrow.server.packs import PackJob

    tbl = PackJob.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        ids = conn.execute(select(tbl.c.id)).scalars().all()
    assert len(ids) <= 1, ids
    return str(ids[0]) if ids else None


#: The phase of each progress text (as :func:`escrow.server.packs.progress_text` makes it).
PHASE_OF = (("collecting", 1), ("rendering", 2), ("signing", 3), ("recording", 4))


def phase(progress: str) -> int:
    return next(n for words, n in PHASE_OF if progress.startswith(words))


def rendering_one_build() -> list[str]:
    """The patterns of what the renderer says of a pack of one build, in order."""
    pages = r"\d+ pages"
    return [
        re.escape(COLLECT),
        re.escape("rendering 1 build: laying out the front matter"),
        r"rendering 1 build: laying out build 1 of 1 \(\d+ pages? so far\)",
        re.escape("rendering 1 build: laying out the back matter"),
        re.escape("rendering 1 build: drawing the cover"),
        rf"rendering 1 build: drawing the headers and page numbers of {pages}",
        rf"rendering 1 build: assembling the PDF of {pages}",
    ]


# -- 1. the row and the job document ----------------------------------------------------


def test_a_rendering_jobs_progress_advances_in_its_row_and_document(
    settings: Any, engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Null when queued; "signing and timestamping with URL" while its signature waits for
    the TSA (in the row and the document alike); "recording the pack in the ledger", the
    last stage, once it succeeded.  Every write, in order: the claim's reset to null, then
    the stages of the rendering, phase by phase, the signing and recording among them."""
    watch_progress(engine)
    with (
        signing_held_tsa(tmp_path / "tsa", monkeypatch) as tsa,
        serving(settings, tmp_path) as served,
        served.client() as auditor,
    ):
        r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
        assert r.status_code == 202, r.text
        posted = r.json()
        job_id = str(posted["id"])
        assert "progress" in posted and posted["progress"] is None

        assert tsa.held.wait(240), "the server's renderer never asked for its signature"
        signing = wait_for(
            "the row to say it signs",
            lambda: (row := job_row(engine, job_id))["progress"] == signing_text(tsa) and row,
        )
        assert signing["status"] == "running"
        doc = auditor.get(f"/v1/packs/{job_id}").json()
        assert (doc["status"], doc["progress"]) == ("running", signing_text(tsa))
        tsa.answer()
        done = finished(auditor, job_id)

    assert done["status"] == "succeeded", done
    assert done["progress"] == RECORD
    writes = seen(engine, job_id)
    assert writes[0] is None, writes  # the claim: nothing said yet
    said = [w for w in writes[1:] if w is not None]
    assert len(said) == len(writes) - 1, writes
    assert said[-2:] == [signing_text(tsa), RECORD], said
    # each a stage of the rendering, in order (one the renderer had already left when
    # its thread came to write it is not written: the row says what is being done now)
    asking = re.escape(f"{COLLECT}: asking the Time-Stamping Authority {tsa.url}")
    expected = [
        *rendering_one_build()[:1],
        asking,  # when the renderer says it asks its TSA, once the builds are collected
        *rendering_one_build()[1:],
        re.escape(signing_text(tsa)),
        re.escape(RECORD),
    ]
    at = 0
    for text in said:
        while at < len(expected) and not re.fullmatch(expected[at], text):
            at += 1
        assert at < len(expected), (text, said)
        at += 1
    assert [phase(t) for t in said] == sorted(phase(t) for t in said)
    assert {phase(t) for t in said} >= {3, 4}


def test_the_openapi_document_describes_progress(settings: Any, tmp_path: Path) -> None:
    with serving(settings, tmp_path) as served, served.client() as auditor:
        schema = auditor.get("/openapi.json").json()["components"]["schemas"]["PackJobOut"]
    prop = schema["properties"]["progress"]
    assert {t.get("type") for t in prop["anyOf"]} == {"string", "null"}
    assert "signing" in prop["description"] and "200 characters" in prop["description"]


# -- 2. `escrow pack` through the server shows it -----------------------------------------


# each output form once, each database once (not all four pairs: the suite's time counts)
@pytest.mark.parametrize(
    ("settings", "as_json"),
    [("sqlite", False), pytest.param("postgres", True, marks=pytest.mark.postgres)],
    ids=["sqlite-text", "postgres-json"],
    indirect=["settings"],
)
def test_escrow_pack_says_the_jobs_phases_in_plain_lines(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    """stderr a pipe: the line saying the job is queued (the title), then a line per step
    as the job is seen to begin it — its signing (held by the TSA until `escrow pack` has
    said it) and its recording at least — each ended "ok", and how long the pack took;
    stdout unchanged: the path, or with --json its one document."""
    out = tmp_path / "pack.pdf"
    with (
        signing_held_tsa(tmp_path / "tsa", monkeypatch) as tsa,
        serving(settings, tmp_path) as served,
    ):
        run = run_pack(
            client_env(served, tmp_path / "auditor"), "-o", str(out), *(["--json"] * as_json)
        )
        run.wait_for(f"step 3/4: {signing_text(tsa)}\n")
        with served.client() as auditor:
            job_id = re.findall(r"Pack job ([0-9a-f]+) queued", run.shown())[0]
            doc = auditor.get(f"/v1/packs/{job_id}").json()
        assert (doc["status"], doc["progress"]) == ("running", signing_text(tsa))
        tsa.answer()
        code, stdout, stderr = run.end()

    assert code == 0, stderr
    lines = stderr.splitlines()
    assert lines[0] == f"Pack job {job_id} queued on {served.url}; waiting for it.", lines
    steps = [re.sub(r" in \d+\.\d\ds$", "", ln) for ln in lines if ln.startswith("step ")]
    every = [
        f"step 1/4: {COLLECT}",
        "step 1 ok",
        "step 2/4: rendering 1 build",
        "step 2 ok",
        f"step 3/4: {signing_text(tsa)}",
        "step 3 ok",
        f"step 4/4: {RECORD}",
        "step 4 ok",
    ]
    # those the job was seen in (its collecting and rendering are quick), in order, each
    # begun and ended; its signing, and its recording (the last it said), always
    assert steps[-4:] == every[-4:], steps
    assert steps == [s for s in every if s in steps], steps
    assert all(every[every.index(s) + 1] in steps for s in steps if ":" in s), steps
    # under a step, what more the job said of it: its TSA asked, the part laid out
    parts = [ln for ln in lines if ln.startswith("  | ")]
    assert all(re.fullmatch(r"  \| (asking|laying out|drawing|assembling) .+", p) for p in parts)
    took = next(i for i, ln in enumerate(lines) if ln.startswith("escrow: the pack took "))
    assert re.fullmatch(r"escrow: the pack took .+ m?s\.", lines[took]), lines
    assert lines[took - 1].startswith("step 4 ok in "), lines
    if as_json:
        result = json.loads(stdout)  # the whole of stdout: one document
        assert (result["job"], result["path"]) == (job_id, str(out))
        assert lines[took + 1 :] == [], lines
    else:
        assert stdout == f"{out}\n"
        assert lines[took + 1 :] == [
            f"SHA-256 {result_sha(out)}; check it with `escrow pack verify {out}`."
        ], lines
    assert out.is_file()


def result_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # the display's, not the database's
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_escrow_pack_q_says_no_progress(
    settings: Any, engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    """-q: no queued line, no step, no time; the result alone (with --json, nothing on
    stderr) — though `escrow pack` asked for the job while it was signing (held longer
    than the client's longest pause between two questions)."""
    from escrow.server.client import PACK_POLL_MAX_S

    out = tmp_path / "pack.pdf"
    with (
        signing_held_tsa(tmp_path / "tsa", monkeypatch) as tsa,
        serving(settings, tmp_path) as served,
    ):
        run = run_pack(
            client_env(served, tmp_path / "auditor"),
            "-q",
            "-o",
            str(out),
            *(["--json"] * as_json),
        )
        assert tsa.held.wait(240), "the server's renderer never asked for its signature"
        job_id = wait_for("the job", lambda: the_only_job(engine))
        wait_for(
            "the row to say it signs",
            lambda: job_row(engine, job_id)["progress"] == signing_text(tsa),
        )
        time.sleep(PACK_POLL_MAX_S + 1)
        assert job_row(engine, job_id)["progress"] == signing_text(tsa)
        tsa.answer()
        code, stdout, stderr = run.end()

    assert code == 0, stderr
    if as_json:
        assert stderr == ""
        assert json.loads(stdout)["job"] == job_id
    else:
        assert stdout == f"{out}\n"
        assert stderr.splitlines() == [
            f"SHA-256 {result_sha(out)}; check it with `escrow pack verify {out}`."
        ]


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # the display's, not the database's
def test_a_terminal_gets_the_live_display_of_the_job(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stderr a terminal: the title, then the step the job is in redrawn in place (cursor
    movement), ticked once done; no plain lines; stdout the path alone."""
    out = tmp_path / "pack.pdf"
    with (
        signing_held_tsa(tmp_path / "tsa", monkeypatch) as tsa,
        serving(settings, tmp_path) as served,
    ):
        env = client_env(served, tmp_path / "auditor")
        for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(name, None)
        env.update(TERM="xterm-256color", COLUMNS="120", LANG="C.UTF-8", PYTHONIOENCODING="utf-8")
        run = run_pack(env, "-o", str(out), terminal=True)
        run.wait_for(f"⠿ step 3/4 {signing_text(tsa)}")
        tsa.answer()
        code, stdout, shown = run.end()

    assert code == 0, shown
    assert stdout == f"{out}\n"
    assert "\x1b[" in bytes(run.sent).decode("utf-8", "replace")  # drawn in place
    assert re.search(r"Pack job [0-9a-f]+ queued on .+; waiting for it\.", shown), shown
    assert f"✔ step 3/4 {signing_text(tsa)} " in shown, shown
    assert f"✔ step 4/4 {RECORD} " in shown, shown
    assert "step 3/4:" not in shown  # no plain lines
    assert re.search(r"escrow: the pack took .+ m?s\.", shown), shown


# -- 3. only under the claim; never failing the job ---------------------------------------


def test_a_dead_claim_cannot_write_progress(settings: Any, engine: Any) -> None:
    """A claim taken for dead (its job queued again from its kept pack and claimed by
    another server) writes no progress, directly or through its renderer's writer; the
    claim that holds the job does, until the job is finished, whose last progress stays.
    Nothing is written to a job nobody claimed; a long text is cut to 200 characters."""
    from sqlalchemy import update

    from escrow.pack.render import Stage
    from escrow.server.packs import PROGRESS_MAX, STALE_AFTER_S, JobProgress, PackJob, PackJobs

    jobs = PackJobs(engine)
    job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
    assert jobs.set_progress(job_id, COLLECT) is False  # queued: nobody's to say
    assert job_row(engine, job_id)["progress"] is None
    first = jobs.claim()
    assert first == job_id and first is not None
    assert jobs.set_progress(job_id, COLLECT, first.attempt) is True
    assert job_row(engine, job_id)["progress"] == COLLECT
    assert jobs.get(job_id).to_dict()["progress"] == COLLECT  # type: ignore[union-attr]
    assert jobs.set_progress(job_id, "rendering 1 build: " + "x" * 500, first.attempt)
    long = job_row(engine, job_id)["progress"]
    assert len(long) == PROGRESS_MAX and long.endswith("…")

    # the first claim's heartbeat stops; another server queues it again from its kept
    # pack (which says nothing of how far it came) and claims it
    jobs.keep(job_id, b"%PDF-first", b'{"first": 1}', first.attempt)
    tbl = PackJob.__table__  # type: ignore[attr-defined]
    long_ago = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)
    with engine.execution_options(escrow_write=True).begin() as conn:
        conn.execute(update(tbl).where(tbl.c.id == job_id).values(heartbeat_at=long_ago))
    second = jobs.claim()
    assert second == job_id and second is not None and second.attempt != first.attempt
    assert job_row(engine, job_id)["progress"] is None

    # the first claim's renderer goes on: it writes nothing, directly or through its writer
    assert jobs.set_progress(job_id, "signing", first.attempt) is False
    with JobProgress(jobs, job_id, first.attempt) as late:
        late(Stage("sign", "signing"))
        late(Stage("record", RECORD))
    assert job_row(engine, job_id)["progress"] is None

    # the second claim's does, until it finishes the job
    with JobProgress(jobs, job_id, second.attempt) as progress:
        progress(Stage("collect", COLLECT))
    assert job_row(engine, job_id)["progress"] == COLLECT
    assert jobs.finish(job_id, error="The pack could not be rendered.", attempt=second.attempt)
    assert jobs.set_progress(job_id, "signing", second.attempt) is False
    assert jobs.set_progress(job_id, "signing") is False  # finished: nobody's to say
    row = job_row(engine, job_id)
    assert (row["status"], row["progress"]) == ("failed", COLLECT)  # where it ended
    assert jobs.get(job_id).to_dict()["progress"] == COLLECT  # type: ignore[union-attr]


def test_a_renderer_whose_job_was_claimed_again_writes_no_progress(
    settings: Any, engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `escrow serve` renders a job; while its signature waits for the TSA, another
    server claims the job and says its own progress.  The renderer then signs and comes to
    its recording: that progress is not written (nor its pack), the other claim's stays;
    what the renderer logged reaches the server's log."""
    from escrow.server.packs import PackJob

    with (
        signing_held_tsa(tmp_path / "tsa", monkeypatch) as tsa,
        serving(settings, tmp_path) as served,
        served.client() as auditor,
    ):
        r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
        assert r.status_code == 202, r.text
        job_id = str(r.json()["id"])
        assert tsa.held.wait(240), "the server's renderer never asked for its signature"
        wait_for(
            "the row to say it signs",
            lambda: job_row(engine, job_id)["progress"] == signing_text(tsa),
        )

        other = uuid.uuid4().hex  # another server's claim of the job, and what it says
        tbl = PackJob.__table__  # type: ignore[attr-defined]
        with engine.execution_options(escrow_write=True).begin() as conn:
            conn.execute(
                tbl.update()
                .where(tbl.c.id == job_id)
                .values(attempt=other, heartbeat_at=datetime.now(UTC), progress=COLLECT)
            )
        tsa.answer()
        wait_for("the renderer to end", lambda: f"pack job {job_id}: done" in served.said())
        doc = auditor.get(f"/v1/packs/{job_id}").json()

    row = job_row(engine, job_id)
    assert (row["status"], row["attempt"], row["progress"]) == ("running", other, COLLECT)
    assert (doc["status"], doc["progress"]) == ("running", COLLECT)
    assert f"pack job {job_id}: The pack job {job_id} was claimed again" in served.said()


def test_a_database_error_writing_progress_is_logged_once_and_the_job_succeeds(
    settings: Any, engine: Any, tmp_path: Path
) -> None:
    """The database refuses every progress the renderer writes: the job renders, signs,
    records and succeeds all the same, its progress null; the server's log says so once,
    with the database's reason."""
    refuse_progress(engine)
    with serving(settings, tmp_path) as served, served.client() as auditor:
        r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
        assert r.status_code == 202, r.text
        job_id = str(r.json()["id"])
        done = finished(auditor, job_id)
        wait_for("the runner to end", lambda: f"pack job {job_id}: done" in served.said())
        log = served.said()

    assert done["status"] == "succeeded", done
    assert done["progress"] is None
    said = [ln for ln in log.splitlines() if "cannot record its progress" in ln]
    assert len(said) == 1, log[-3000:]
    assert f"pack job {job_id}: cannot record its progress (it renders on): " in said[0]
    assert "progress refused by the test" in said[0]


# -- 4. the words, how often; the table of an earlier release


def _stage(phase: str, text: str, part: str = "", builds: int = 0) -> Any:
    from escrow.pack.render import Stage

    return Stage(phase, text, part, builds)


@pytest.mark.parametrize(
    ("told", "heading", "progress", "shown"),
    [
        (("collect", COLLECT), COLLECT, COLLECT, [("collect", COLLECT, "", 0)]),
        (
            ("collect", "asking the Time-Stamping Authority https://tsa.example:8443/tsr"),
            COLLECT,
            f"{COLLECT}: asking the Time-Stamping Authority https://tsa.example:8443/tsr",
            [
                ("collect", COLLECT, "", 0),
                (
                    "collect",
                    "asking the Time-Stamping Authority https://tsa.example:8443/tsr",
                    "",
                    0,
                ),
            ],
        ),
        (
            ("render", "laying out the front matter", "front", 1),
            "",
            "rendering 1 build: laying out the front matter",
            [("render", "laying out the front matter", "", 1)],
        ),
        (
            (
                "render",
                "laying out builds 1,217–1,232 of 5,000 (2,430 pages so far)",
                "builds",
                5000,
            ),
            "",
            "rendering 5000 builds: laying out builds 1,217–1,232 of 5,000 (2,430 pages so far)",
            [
                (
                    "render",
                    "laying out builds 1,217–1,232 of 5,000 (2,430 pages so far)",
                    "builds",
                    5000,
                )
            ],
        ),
        (
            ("sign", "signing and timestamping with http://127.0.0.1:8080/tsa"),
            "signing and timestamping with http://127.0.0.1:8080/tsa",
            "signing and timestamping with http://127.0.0.1:8080/tsa",
            [("sign", "signing and timestamping with http://127.0.0.1:8080/tsa", "", 0)],
        ),
        (("record", RECORD), RECORD, RECORD, [("record", RECORD, "", 0)]),
    ],
    ids=["collect", "collect-tsa", "render-front", "render-builds", "sign", "record"],
)
def test_the_client_reads_the_stage_the_server_wrote(
    told: tuple[Any, ...], heading: str, progress: str, shown: list[tuple[Any, ...]]
) -> None:
    """What the renderer writes of a stage (under its phase's heading), and the stages
    `escrow pack` makes of it for its display: the heading as the step, the rest under it."""
    from escrow.server.client import progress_stages
    from escrow.server.packs import progress_text

    assert progress_text(_stage(*told), heading) == progress
    stages = progress_stages(progress)
    assert [(s.phase, s.text, s.part, s.builds) for s in stages] == shown


@pytest.mark.parametrize(
    "progress",
    [None, "", 42, "thinking hard", "rendering many builds: laying out", "rendering 3 builds"],
)
def test_a_progress_the_client_does_not_know_shows_nothing(progress: object) -> None:
    """No progress, or one of another release (a phase it does not know): no stage."""
    from escrow.server.client import progress_stages

    assert progress_stages(progress) == []


def test_the_servers_words_are_shown_as_text_and_cut() -> None:
    """A control character in a server's progress is escaped; a longer one is cut."""
    from escrow.server.client import progress_stages
    from escrow.server.packs import PROGRESS_MAX, progress_text

    (stage,) = progress_stages("recording \x1b]0;owned\x07 the pack")
    assert stage.text == "recording \\x1b]0;owned\\x07 the pack"
    long = progress_text(_stage("render", "laying out " + "x" * 500, "front", 2))
    assert len(long) == PROGRESS_MAX and long.endswith("…")
    (cut,) = progress_stages(long + "y" * 1000)
    assert cut.text == long.partition(": ")[2]


# -- 5. how often; the table of an earlier release ----------------------------------------


@pytest.mark.parametrize("every", [3600.0, 0.0], ids=["throttled", "every-part"])
def test_parts_of_builds_are_written_at_most_every_so_often(
    settings: Any, engine: Any, every: float
) -> None:
    """Each stage but a part of builds is written as it begins (one after the first of its
    phase under that one's words); a part of builds when it is the first, or ``every``
    seconds or more after the last text."""
    from escrow.pack.render import Stage
    from escrow.server.packs import JobProgress, PackJobs

    watch_progress(engine)
    jobs = PackJobs(engine)
    job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
    claim = jobs.claim()
    assert claim is not None

    def part(part: str, text: str, first: int = 0, last: int = 0) -> Stage:
        return Stage("render", text, part, 40, 0, first, last)

    stages = [
        Stage("collect", COLLECT),
        Stage("collect", "asking the Time-Stamping Authority https://tsa.example/"),
        part("front", "laying out the front matter"),
        part("builds", "laying out builds 1–16 of 40 (3 pages so far)", 1, 16),
        part("builds", "laying out builds 17–32 of 40 (35 pages so far)", 17, 32),
        part("builds", "laying out builds 33–40 of 40 (67 pages so far)", 33, 40),
        part("back", "laying out the back matter"),
        part("furniture", "drawing the headers and page numbers of 90 pages"),
        Stage("sign", "signing"),
        Stage("record", RECORD),
    ]
    with JobProgress(jobs, job_id, claim.attempt, every=every) as progress:
        for stage in stages:
            progress(stage)
            time.sleep(0.3)  # written by then, unless left out
    written = seen(engine, job_id)[1:]  # after the claim's reset
    expected = [
        COLLECT,
        f"{COLLECT}: asking the Time-Stamping Authority https://tsa.example/",
        "rendering 40 builds: laying out the front matter",
        "rendering 40 builds: laying out builds 1–16 of 40 (3 pages so far)",
        *(
            []
            if every
            else [
                "rendering 40 builds: laying out builds 17–32 of 40 (35 pages so far)",
                "rendering 40 builds: laying out builds 33–40 of 40 (67 pages so far)",
            ]
        ),
        "rendering 40 builds: laying out the back matter",
        "rendering 40 builds: drawing the headers and page numbers of 90 pages",
        "signing",
        RECORD,
    ]
    assert written == expected


#: ``server_pack_job`` as the previous release created it: no ``progress``.
PREVIOUS_TABLE = """CREATE TABLE server_pack_job (
    id VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    scope TEXT NOT NULL,
    requested_by VARCHAR(200) NOT NULL,
    requested_at {time} NOT NULL,
    started_at {time},
    finished_at {time},
    error TEXT,
    error_kind VARCHAR(16),
    attempt VARCHAR(32),
    heartbeat_at {time},
    pdf {blob},
    pdf_sha256 VARCHAR(64),
    pdf_size INTEGER,
    entry_index INTEGER,
    PRIMARY KEY (id)
)"""


def test_serve_adds_progress_to_the_previous_releases_table(settings: Any, tmp_path: Path) -> None:
    """`escrow serve` adds the column when it starts, on SQLite and PostgreSQL: the job the
    previous release finished says no progress; a job rendered now says its last."""
    from sqlalchemy import inspect, text

    from escrow.ledger.store import make_engine

    engine = make_engine(settings.db_url)
    try:
        pg = engine.dialect.name == "postgresql"
        old_job = uuid.uuid4().hex
        with engine.begin() as conn:
            conn.execute(
                text(
                    PREVIOUS_TABLE.format(
                        time="TIMESTAMP WITH TIME ZONE" if pg else "DATETIME",
                        blob="BYTEA" if pg else "BLOB",
                    )
                )
            )
            conn.execute(
                text(
                    "INSERT INTO server_pack_job (id, status, scope, requested_by, "
                    "requested_at, started_at, finished_at, error, error_kind) VALUES (:id, "
                    "'failed', :scope, 'test-auditor', :t, :t, :t, 'It failed.', 'input')"
                ),
                {"id": old_job, "scope": '{"projects": ["x"]}', "t": datetime.now(UTC)},
            )
        assert "progress" not in {c["name"] for c in inspect(engine).get_columns("server_pack_job")}
        with serving(settings, tmp_path) as served, served.client() as auditor:
            old = auditor.get(f"/v1/packs/{old_job}").json()
            r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
            assert r.status_code == 202, r.text
            done = finished(auditor, str(r.json()["id"]))
            log = served.said()
        assert "progress" in {c["name"] for c in inspect(engine).get_columns("server_pack_job")}
    finally:
        engine.dispose()
    assert (old["status"], old["progress"]) == ("failed", None)
    assert (done["status"], done["progress"]) == ("succeeded", RECORD)
    assert "added the column progress to the table server_pack_job" in log
