"""Pack jobs: requested over HTTP, rendered outside the request path.

A job is a row of ``server_pack_job`` in the ledger's database, so every
server sharing the database sees every job, and the finished PDF is stored in
the row.  Each server process runs one :class:`PackRunner` thread that claims
queued jobs (``UPDATE … WHERE status = 'queued'``: exactly one runner wins a
job) and renders each one in a separate Python process
(``python -m escrow.server.packs JOB_ID``), so WeasyPrint's CPU work never
holds the server's interpreter lock and never blocks posting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from escrow.errors import DatabaseUnavailable, EscrowError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from escrow.config import Settings

log = logging.getLogger("escrow.server")

#: A job still "running" after this long is taken to belong to a dead runner and is failed.
STALE_AFTER_S = 1800


class PackJob(SQLModel, table=True):
    __tablename__ = "server_pack_job"

    id: str = Field(primary_key=True, max_length=32)
    status: str = Field(index=True, max_length=16)
    scope: str = Field(sa_column=Column(Text, nullable=False))
    requested_by: str = Field(max_length=200)
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    pdf_sha256: str | None = Field(default=None, max_length=64)
    pdf_size: int | None = None
    entry_index: int | None = None


@dataclass(frozen=True)
class JobInfo:
    id: str
    status: str
    scope: dict[str, Any]
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    pdf_sha256: str | None
    pdf_size: int | None
    entry_index: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "scope": self.scope,
            "requested_by": self.requested_by,
            "requested_at": _rfc3339(self.requested_at),
            "started_at": _rfc3339(self.started_at),
            "finished_at": _rfc3339(self.finished_at),
            "error": self.error,
            "pdf_sha256": self.pdf_sha256,
            "pdf_size": self.pdf_size,
            "entry_index": self.entry_index,
            "pdf_url": f"/v1/packs/{self.id}/pdf" if self.status == "succeeded" else None,
        }


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _rfc3339(t: datetime | None) -> str | None:
    u = _utc(t)
    return u.isoformat().replace("+00:00", "Z") if u else None


def _info(row: PackJob) -> JobInfo:
    return JobInfo(
        id=row.id,
        status=row.status,
        scope=json.loads(row.scope),
        requested_by=row.requested_by,
        requested_at=_utc(row.requested_at) or datetime.now(UTC),
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        error=row.error,
        pdf_sha256=row.pdf_sha256,
        pdf_size=row.pdf_size,
        entry_index=row.entry_index,
    )


class PackJobs:
    """The job table: submit, look up, claim, finish."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def create_tables(cls, engine: Engine) -> None:
        from escrow.ledger.store import create_missing_tables

        create_missing_tables(engine, PackJob.__table__)  # type: ignore[attr-defined]

    def _session(self, *, write: bool = False) -> Any:
        from sqlmodel import Session

        # BEGIN IMMEDIATE on SQLite for writes (see escrow.ledger.store.make_engine)
        return Session(self.engine.execution_options(escrow_write=True) if write else self.engine)

    def submit(self, scope: dict[str, Any], requested_by: str) -> JobInfo:
        from sqlalchemy.exc import SQLAlchemyError

        row = PackJob(
            id=uuid.uuid4().hex,
            status="queued",
            scope=json.dumps(scope, sort_keys=True),
            requested_by=requested_by,
            requested_at=datetime.now(UTC),
        )
        try:
            with self._session(write=True) as s:
                s.add(row)
                s.commit()
                s.refresh(row)
                return _info(row)
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot queue the pack job: {e.__class__.__name__}.") from e

    def get(self, job_id: str) -> JobInfo | None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._session() as s:
                row = s.get(PackJob, job_id)
                return _info(row) if row is not None else None
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot read the pack job: {e.__class__.__name__}.") from e

    def pdf(self, job_id: str) -> bytes | None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._session() as s:
                row = s.get(PackJob, job_id)
                return row.pdf if row is not None else None
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot read the pack: {e.__class__.__name__}.") from e

    def claim(self) -> str | None:
        """Mark the oldest queued job as running and return its ID; ``None`` when none waits."""
        from sqlalchemy import update
        from sqlmodel import select

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        with self._session() as s:  # a cheap read first: most polls find nothing
            waiting = s.exec(
                select(PackJob.id).where(PackJob.status.in_(("queued", "running")))  # type: ignore[attr-defined]
            ).first()
        if waiting is None:
            return None
        with self._session(write=True) as s:
            self._fail_stale(s)
            candidates = s.exec(
                select(PackJob.id)
                .where(PackJob.status == "queued")
                .order_by(PackJob.requested_at)  # type: ignore[arg-type]
                .limit(5)
            ).all()
            for job_id in candidates:
                res = s.execute(
                    update(tbl)
                    .where(tbl.c.id == job_id, tbl.c.status == "queued")
                    .values(status="running", started_at=datetime.now(UTC))
                )
                s.commit()
                if res.rowcount == 1:
                    return str(job_id)
        return None

    def _fail_stale(self, s: Any) -> None:
        from datetime import timedelta

        from sqlalchemy import update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        cutoff = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S)
        s.execute(
            update(tbl)
            .where(tbl.c.status == "running", tbl.c.started_at < cutoff)
            .values(
                status="failed",
                finished_at=datetime.now(UTC),
                error="The server rendering this pack stopped; request it again.",
            )
        )
        s.commit()

    def requeue(self, job_id: str) -> bool:
        """Put a running job back in the queue (its renderer was stopped); whether it was."""
        from sqlalchemy import update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        with self._session(write=True) as s:
            res = s.execute(
                update(tbl)
                .where(tbl.c.id == job_id, tbl.c.status == "running")
                .values(status="queued", started_at=None)
            )
            s.commit()
            return bool(res.rowcount == 1)

    def finish(
        self,
        job_id: str,
        *,
        pdf: bytes | None = None,
        entry_index: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._session(write=True) as s:
            row = s.get(PackJob, job_id)
            if row is None:
                return
            row.finished_at = datetime.now(UTC)
            if pdf is not None:
                row.status = "succeeded"
                row.pdf = pdf
                row.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
                row.pdf_size = len(pdf)
                row.entry_index = entry_index
            else:
                row.status = "failed"
                row.error = error or "The pack could not be rendered."
            s.add(row)
            s.commit()


class PackRunner:
    """A thread that renders queued jobs one at a time, each in a child process."""

    def __init__(self, jobs: PackJobs, settings: Settings, poll_s: float = 2.0) -> None:
        self.jobs = jobs
        self.settings = settings
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="escrow-pack-runner", daemon=True)
        self._child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.jobs.claim()
            except Exception:  # noqa: BLE001 - database hiccup: log, wait, retry
                log.exception("pack runner: cannot claim a job")
                job_id = None
            if job_id is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._render(job_id)

    def _render(self, job_id: str) -> None:
        env = dict(os.environ)
        env["ESCROW_HOME"] = str(self.settings.home)
        env["ESCROW_DB_URL"] = self.settings.db_url
        log.info("pack job %s: rendering", job_id)
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "escrow.server.packs", job_id],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # not in the server's process group: a Ctrl-C meant for the server must not
                # kill the renderer before stop() can queue its job again
                start_new_session=True,
            )
            _, err = self._child.communicate()
            code = self._child.returncode
        except OSError as e:
            code, err = -1, str(e).encode()
        finally:
            self._child = None
        if code != 0 and self._stop.is_set():
            # stopped with the server (a restart, a deploy): queue it again for the next
            # server to render, rather than fail the auditor's request
            if self.jobs.requeue(job_id):
                log.info("pack job %s: queued again (the server is stopping)", job_id)
            return
        if code != 0:
            message = err.decode("utf-8", "replace").strip().splitlines()
            text = message[-1] if message else f"the renderer exited with code {code}"
            log.error("pack job %s failed: %s", job_id, text)
            job = self.jobs.get(job_id)
            if job is not None and job.status == "running":
                self.jobs.finish(job_id, error=text[:2000])
        else:
            log.info("pack job %s: done", job_id)


def render_job(settings: Settings, job_id: str) -> None:
    """Render one claimed job with the pack code and store the PDF in its row."""
    from escrow.ledger.store import Ledger, make_engine

    ledger = Ledger.open(settings, create=False)
    jobs = PackJobs(make_engine(settings.db_url))
    job = jobs.get(job_id)
    if job is None:
        raise EscrowError(f"There is no pack job {job_id}.")
    try:
        pdf, entry_index = _issue_pack(ledger, settings, job)
    except EscrowError as e:
        jobs.finish(job_id, error=e.diagnostics())
        return
    jobs.finish(job_id, pdf=pdf, entry_index=entry_index)


def _issue_pack(ledger: Any, settings: Settings, job: JobInfo) -> tuple[bytes, int | None]:
    """Render, sign and record the pack with :func:`escrow.pack.render.render_pack`."""
    import tempfile
    from pathlib import Path

    from escrow.pack.collect import PackRequest
    from escrow.pack.render import render_pack

    scope = job.scope

    def when(key: str) -> datetime | None:
        text = scope.get(key)
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None

    entries = tuple(int(i) for i in scope.get("entries") or ())
    request = PackRequest(
        generated_at=datetime.now(UTC).replace(microsecond=0),
        projects=tuple(dict.fromkeys(str(p) for p in scope.get("projects") or ())),
        since=when("since"),
        until=when("until"),
        entries=entries,
        entries_text=",".join(map(str, entries)),
        requester=job.requested_by,
        since_checkpoint=scope.get("since_checkpoint"),
        tree_size=int(scope["tree_size"]) if scope.get("tree_size") else None,
    )
    with tempfile.TemporaryDirectory(prefix="escrow-pack-") as tmp:
        out = Path(tmp) / f"pack-{job.id}.pdf"
        result = render_pack(settings, ledger, request, out)
        return out.read_bytes(), result.index


def main(argv: list[str] | None = None) -> int:
    from escrow.config import load_settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m escrow.server.packs JOB_ID", file=sys.stderr)
        return 2
    try:
        render_job(load_settings(), args[0])
    except EscrowError as e:
        print(f"escrow: error: {e.diagnostics()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
