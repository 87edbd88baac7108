"""Pack jobs: requested over HTTP, rendered outside the request path.

A job is a row of ``server_pack_job`` in the ledger's database, so every
server sharing the database sees every job, and the finished PDF is stored in
the row.  Each server process runs one :class:`PackRunner` thread that claims
queued jobs (``UPDATE … WHERE status = 'queued'``: exactly one runner wins a
job) and renders each one in a separate Python process
(``python -m escrow.server.packs JOB_ID``), so WeasyPrint's CPU work never
holds the server's interpreter lock and never blocks posting.

A pack records itself in the ledger, and a job must record at most one pack
however its renderer is stopped (a restart queues the job again).  Signing is
not reproducible, so a second rendering would be a second pack: instead the
renderer keeps the signed PDF and the signed envelope of its pack statement in
``server_pack_record`` (one commit) *before* it appends that envelope, and a job
that has such a record is finished from it, never rendered again — its envelope
is found in the log by its leaf hash, or appended then (appends are idempotent),
and the job serves those very PDF bytes, the ones the entry names.  The record
goes when the job row is finished, in the same transaction.  An envelope the ledger
refuses because `escrow keys rotate` retired the build key meanwhile (it can never be
appended then) is signed again with the key the rotation put in its place, and kept in
its place before that is appended, as `escrow pack` does on a local ledger: the
rendering is not lost, nor the kept pack of a job claimed again rendered anew.

While its renderer runs, the runner that claimed a job sets the row's
``heartbeat_at`` every :data:`HEARTBEAT_S` (a thread of its own, so a slow or
briefly unavailable database holds neither the renderer nor the runner).  A job
still "running" whose last heartbeat (or, before the first, its ``started_at``)
is older than :data:`STALE_AFTER_S` belongs to a server that died: the next
claim by any server queues it again when it kept a signed pack, else fails it.
A job renders for at most the server's time limit (``escrow serve
--pack-time-limit``, :data:`DEFAULT_TIME_LIMIT_S`: a pack of 5,000 builds takes most
of an hour), after which its renderer is killed and the job fails saying so (a renderer
that hangs while its server lives would otherwise beat for ever), and the job of a dead
server is found within minutes.  Each claim has its own
token (``attempt``, handed to its renderer process), and the heartbeat, the kept
pack and the outcome of a claim touch its job only while the job is running
under that claim: never a job finished, queued again or claimed since (by
another server that took this one for dead).

The renderer also says what it is doing in the row's ``progress`` (the stage of
:func:`escrow.pack.render.render_pack` it has come to, in words: :func:`progress_text`),
which the job document gives and `escrow pack` through a server shows as a local
pack shows its own.  A thread of the renderer writes it (:class:`JobProgress`), under
the claim too, each phase and part as it begins but a part of builds at most every
:data:`PROGRESS_EVERY_S`; a database error there is logged once and the rendering goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from escrow.errors import CheckFailed, DatabaseUnavailable, EnvironmentProblem, EscrowError
from escrow.server.auth import db_reason
from escrow.text import count

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from escrow.config import Settings
    from escrow.pack.render import Stage

log = logging.getLogger("escrow.server")

#: How often the runner rendering a job sets its ``heartbeat_at``, in seconds.
HEARTBEAT_S = 60.0
#: A job still "running" whose last heartbeat (or ``started_at``, before the first) is older
#: than this belongs to a dead server: it is queued again (it kept a signed pack) or failed.
#: Five heartbeats: a beat late by a busy database, or a few lost to a short outage, are
#: not a dead server.
STALE_AFTER_S = 300
#: How long a job's renderer may run before it is killed and its job fails, in seconds,
#: unless ``escrow serve --pack-time-limit`` says otherwise: twice the time a pack of the
#: 5,000-build limit takes on a slow machine, and less than the 3 h `escrow pack` waits.
DEFAULT_TIME_LIMIT_S = 2 * 3600.0

#: What made a failed job fail (``error_kind`` of the job document), and the exit code
#: ``escrow pack`` has for it, through a server as on a local ledger: ``check`` (a check
#: failed, :class:`CheckFailed`), ``input`` (the request or a document in it is wrong, and
#: every other :class:`EscrowError`), ``unavailable`` (something outside escrow: a
#: Time-Stamping Authority, the database, a key, or the server's renderer process killed
#: or gone stale, :class:`EnvironmentProblem`) and ``internal`` (the renderer failed with
#: an error escrow did not foresee, a bug: for the client, the server failed).
ERROR_EXIT_CODES = {"check": 1, "input": 2, "unavailable": 3, "internal": 3}
#: The line a renderer process writes to stderr before its error, naming its kind.
KIND_LINE = "escrow: error-kind: "

#: The longest ``progress`` of a job, in characters (a longer text is cut, ending in "…").
PROGRESS_MAX = 200
#: How often, at most, a job's ``progress`` follows the parts of builds being laid out, in
#: seconds (some 300 parts for 5,000 builds); each phase and every other part is written
#: as it begins (the last parts of a large pack take minutes: they must not go unsaid).
PROGRESS_EVERY_S = 5.0
#: How long the end of a rendering waits for its last ``progress`` to be written.
PROGRESS_FLUSH_S = 5.0


def error_kind(e: BaseException) -> str:
    """The kind (:data:`ERROR_EXIT_CODES`) of the error that made a job fail."""
    if isinstance(e, CheckFailed):
        return "check"
    if isinstance(e, EnvironmentProblem):
        return "unavailable"
    if isinstance(e, EscrowError):
        return "input"
    return "internal"


class JobNotRunning(EscrowError):
    """The job is no longer running under the renderer's claim (failed as stale, or claimed
    again by another server, say): its renderer records nothing."""


class ServerMisconfigured(EnvironmentProblem):
    """A setting of the server (its environment where `escrow serve` runs), not the request,
    is wrong: for the client, the server's environment (exit 3), for its operator to fix."""


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
    #: added after the table's first release: :func:`escrow.ledger.store.create_missing_tables`
    #: adds it to a table made before
    error_kind: str | None = Field(default=None, max_length=16)
    #: added after the table's first release, as ``error_kind``: the token of the claim now
    #: rendering the job (a new one at each claim), and that claim's last heartbeat
    attempt: str | None = Field(default=None, max_length=32)
    heartbeat_at: datetime | None = None
    #: added after the table's first release, as ``error_kind``: what the renderer of the
    #: claim is doing (:func:`progress_text`), null until it says; kept once finished
    progress: str | None = Field(default=None, max_length=PROGRESS_MAX)
    pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    pdf_sha256: str | None = Field(default=None, max_length=64)
    pdf_size: int | None = None
    entry_index: int | None = None


class PackRecord(SQLModel, table=True):
    """A running job's signed pack and the envelope that records it, kept before the append."""

    __tablename__ = "server_pack_record"

    job_id: str = Field(primary_key=True, max_length=32)
    pdf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: str = Field(max_length=64)
    kept_at: datetime


class ClaimedJob(str):
    """The ID of a job :meth:`PackJobs.claim` marked running, carrying the token of that
    claim (``attempt``), which its heartbeat names (:meth:`PackJobs.beat`)."""

    attempt: str

    def __new__(cls, job_id: str, attempt: str) -> ClaimedJob:
        claimed = super().__new__(cls, job_id)
        claimed.attempt = attempt
        return claimed


@dataclass(frozen=True)
class KeptPack:
    pdf: bytes
    envelope: bytes
    leaf_hash: str


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
    error_kind: str | None = None
    heartbeat_at: datetime | None = None
    progress: str | None = None

    def to_dict(self, root_path: str = "") -> dict[str, Any]:
        """The job document; its ``pdf_url`` begins with ``root_path``, the path prefix a
        proxy publishes the server under (``escrow serve --root-path``)."""
        return {
            "id": self.id,
            "status": self.status,
            "scope": self.scope,
            "requested_by": self.requested_by,
            "requested_at": _rfc3339(self.requested_at),
            "started_at": _rfc3339(self.started_at),
            "finished_at": _rfc3339(self.finished_at),
            "heartbeat_at": _rfc3339(self.heartbeat_at),
            "progress": self.progress,
            "error": self.error,
            "error_kind": self.error_kind,
            "error_exit_code": ERROR_EXIT_CODES.get(self.error_kind or ""),
            "pdf_sha256": self.pdf_sha256,
            "pdf_size": self.pdf_size,
            "entry_index": self.entry_index,
            "pdf_url": f"{root_path}/v1/packs/{self.id}/pdf"
            if self.status == "succeeded"
            else None,
        }


def _now() -> datetime:
    return datetime.now(UTC)


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
        heartbeat_at=_utc(row.heartbeat_at),
        progress=row.progress,
        error=row.error,
        pdf_sha256=row.pdf_sha256,
        pdf_size=row.pdf_size,
        entry_index=row.entry_index,
        error_kind=row.error_kind,
    )


class PackJobs:
    """The job table: submit, look up, claim, finish."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def create_tables(cls, engine: Engine) -> None:
        from escrow.ledger.store import create_missing_tables

        create_missing_tables(
            engine,
            PackJob.__table__,  # type: ignore[attr-defined]
            PackRecord.__table__,  # type: ignore[attr-defined]
        )

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
            raise DatabaseUnavailable(f"Cannot queue the pack job: {db_reason(e)}.") from e

    def get(self, job_id: str) -> JobInfo | None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._session() as s:
                row = s.get(PackJob, job_id)
                return _info(row) if row is not None else None
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot read the pack job: {db_reason(e)}.") from e

    def pdf(self, job_id: str) -> bytes | None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._session() as s:
                row = s.get(PackJob, job_id)
                return row.pdf if row is not None else None
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot read the pack: {db_reason(e)}.") from e

    def claim(self) -> ClaimedJob | None:
        """Mark the oldest queued job as running and return its ID, with the token of this
        claim; ``None`` when none waits."""
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
                attempt = uuid.uuid4().hex
                res = s.execute(
                    update(tbl)
                    .where(tbl.c.id == job_id, tbl.c.status == "queued")
                    .values(
                        status="running",
                        started_at=datetime.now(UTC),
                        attempt=attempt,
                        heartbeat_at=None,
                        progress=None,
                    )
                )
                s.commit()
                if res.rowcount == 1:
                    return ClaimedJob(str(job_id), attempt)
        return None

    def _fail_stale(self, s: Any) -> None:
        """Queue again, or fail, the running jobs whose last heartbeat (or start, before the
        first) is older than :data:`STALE_AFTER_S`: their server died."""
        from datetime import timedelta

        from sqlalchemy import func, select, update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        kept = PackRecord.__table__  # type: ignore[attr-defined]
        cutoff = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S)
        last_sign_of_life = func.coalesce(tbl.c.heartbeat_at, tbl.c.started_at)
        # A stale job that kept its signed pack died in the record step, perhaps after the
        # append: queue it again, to be finished from that pack (not rendered again).
        s.execute(
            update(tbl)
            .where(
                tbl.c.status == "running",
                last_sign_of_life < cutoff,
                tbl.c.id.in_(select(kept.c.job_id)),
            )
            .values(
                status="queued", started_at=None, attempt=None, heartbeat_at=None, progress=None
            )
        )
        s.execute(
            update(tbl)
            .where(tbl.c.status == "running", last_sign_of_life < cutoff)
            .values(
                status="failed",
                finished_at=datetime.now(UTC),
                error="The server rendering this pack stopped; request it again.",
                error_kind="unavailable",
            )
        )
        s.commit()

    def requeue(self, job_id: str, attempt: str | None = None) -> bool:
        """Put a running job back in the queue (its renderer was stopped); whether it was.
        With ``attempt``, only while it runs under that claim."""
        from sqlalchemy import update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        mine = [tbl.c.id == job_id, tbl.c.status == "running"]
        if attempt is not None:
            mine.append(tbl.c.attempt == attempt)
        with self._session(write=True) as s:
            res = s.execute(
                update(tbl)
                .where(*mine)
                .values(
                    status="queued", started_at=None, attempt=None, heartbeat_at=None, progress=None
                )
            )
            s.commit()
            return bool(res.rowcount == 1)

    def beat(self, job_id: str, attempt: str) -> bool:
        """Set the job's ``heartbeat_at`` to now, if it is still running under the claim
        ``attempt``; whether it was (``False``: the job is no longer this claim's)."""
        from sqlalchemy import update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        with self._session(write=True) as s:
            res = s.execute(
                update(tbl)
                .where(tbl.c.id == job_id, tbl.c.status == "running", tbl.c.attempt == attempt)
                .values(heartbeat_at=datetime.now(UTC))
            )
            s.commit()
            return bool(res.rowcount == 1)

    def set_progress(self, job_id: str, text: str, attempt: str | None = None) -> bool:
        """Set the job's ``progress`` to ``text`` (cut to :data:`PROGRESS_MAX` characters),
        if it is still running (with ``attempt``, under that claim); whether it was
        (``False``: the job is no longer this claim's, and was left as it is)."""
        from sqlalchemy import update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        mine = [tbl.c.id == job_id, tbl.c.status == "running"]
        if attempt is not None:
            mine.append(tbl.c.attempt == attempt)
        with self._session(write=True) as s:
            res = s.execute(update(tbl).where(*mine).values(progress=_bounded(text)))
            s.commit()
            return bool(res.rowcount == 1)

    def keep(self, job_id: str, pdf: bytes, envelope: bytes, attempt: str | None = None) -> None:
        """Keep a running job's signed pack and its envelope, before the envelope is appended.
        With ``attempt``, only while the job runs under that claim.

        :class:`JobNotRunning` when the job is no longer running (under that claim): then
        the pack must not be recorded.
        """
        from sqlalchemy.exc import SQLAlchemyError

        from escrow.ledger import merkle

        leaf = merkle.leaf_hash(envelope).hex()
        try:
            with self._session(write=True) as s:
                row = s.get(PackJob, job_id, with_for_update=True)
                if row is None or row.status != "running":
                    raise JobNotRunning(
                        f"The pack job {job_id} is no longer running; its pack is not recorded."
                    )
                if attempt is not None and row.attempt != attempt:
                    raise JobNotRunning(
                        f"The pack job {job_id} was claimed again by another server; this "
                        "renderer's pack is not recorded."
                    )
                record = s.get(PackRecord, job_id)
                if record is None:
                    record = PackRecord(
                        job_id=job_id, pdf=pdf, envelope=envelope, leaf_hash=leaf, kept_at=_now()
                    )
                else:  # one discarded by render_job, or one the ledger refused (its key
                    # retired by a rotation, so never appended) signed again: replace it
                    record.pdf, record.envelope, record.leaf_hash = pdf, envelope, leaf
                    record.kept_at = _now()
                s.add(record)
                s.commit()
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(
                f"Cannot keep the signed pack of job {job_id}: {db_reason(e)}."
            ) from e

    def kept(self, job_id: str) -> KeptPack | None:
        """The pack :meth:`keep` kept for the job, if its row is not finished yet."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._session() as s:
                record = s.get(PackRecord, job_id)
                if record is None:
                    return None
                return KeptPack(bytes(record.pdf), bytes(record.envelope), record.leaf_hash)
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(
                f"Cannot read the kept pack of job {job_id}: {db_reason(e)}."
            ) from e

    def discard(self, job_id: str) -> None:
        """Forget the kept pack of a job whose envelope the ledger refused (never recorded)."""
        with self._session(write=True) as s:
            record = s.get(PackRecord, job_id)
            if record is not None:
                s.delete(record)
                s.commit()

    def finish(
        self,
        job_id: str,
        *,
        pdf: bytes | None = None,
        entry_index: int | None = None,
        error: str | None = None,
        error_kind: str = "internal",
        attempt: str | None = None,
    ) -> bool:
        """Record the job's outcome: its PDF, or its ``error`` and the kind of that error
        (:data:`ERROR_EXIT_CODES`), while the job is running (with ``attempt``, under that
        claim); whether it was recorded (``False``: the job was finished, queued again or
        claimed since, and is left as it is, its kept pack too)."""
        with self._session(write=True) as s:
            row = s.get(PackJob, job_id, with_for_update=True)
            if row is None or row.status != "running":
                return False
            if attempt is not None and row.attempt != attempt:
                return False
            record = s.get(PackRecord, job_id)
            if record is not None:  # in the same transaction as the job's outcome
                s.delete(record)
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
                row.error_kind = error_kind if error_kind in ERROR_EXIT_CODES else "internal"
            s.add(row)
            s.commit()
            return True


class Heartbeat:
    """A thread that sets a claimed job's ``heartbeat_at`` every ``every`` seconds while
    its renderer runs (``with Heartbeat(...):``), and stops when the block ends, however
    it ends.  A database error does not stop it (one log line while beats fail, one when
    they succeed again), nor reaches the job; it stops by itself once the job is no
    longer running under its claim."""

    def __init__(self, jobs: PackJobs, job_id: str, attempt: str, every: float) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.attempt = attempt
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"escrow-pack-heartbeat-{job_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        # a beat waiting on the database is not waited for: it names this claim, which the
        # job's outcome ends, so it can no longer touch the row
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        failing = False
        while not self._stop.wait(self.every):
            try:
                mine = self.jobs.beat(self.job_id, self.attempt)
            except (SQLAlchemyError, EscrowError) as e:  # the database: retry at the next beat
                if not failing:
                    log.error(
                        "pack job %s: cannot record its heartbeat (retrying): %s",
                        self.job_id,
                        db_reason(e),
                    )
                failing = True
                continue
            except Exception:  # noqa: BLE001 - a bug: its traceback; the job goes on
                log.exception("pack job %s: cannot record its heartbeat", self.job_id)
                continue
            if failing:
                log.info("pack job %s: its heartbeat is recorded again", self.job_id)
            failing = False
            if not mine:  # finished, queued again or claimed since: nothing left to keep alive
                return


def progress_text(stage: Stage, heading: str = "") -> str:
    """What a job's ``progress`` says of a stage of its rendering: the heading of its phase
    — the words of the phase's first stage (``heading``: "collecting the builds", "signing
    and timestamping with https://tsa.example/"), in the phase "render" its number of
    builds ("rendering 364 builds") — and, for any other stage of the phase, its own words
    after a colon ("rendering 364 builds: laying out builds 17–32 of 364 (39 pages so
    far)").  `escrow pack` through a server shows the heading as its step, as a local
    pack does, and the rest under it (:func:`escrow.server.client.progress_stages`)."""
    if stage.phase == "render":
        heading = f"rendering {count(stage.builds, 'build')}"
    text = f"{heading}: {stage.text}" if heading and stage.text != heading else stage.text
    return _bounded(text)


def _bounded(text: str) -> str:
    """``text`` on one line, of :data:`PROGRESS_MAX` characters at most."""
    text = " ".join(text.split())
    return text if len(text) <= PROGRESS_MAX else text[: PROGRESS_MAX - 1] + "…"


class JobProgress:
    """Records in a job's ``progress`` what its renderer is doing: called with each
    :class:`~escrow.pack.render.Stage` of :func:`~escrow.pack.render.render_pack`
    (``with JobProgress(...) as progress:``), it hands the stage's text
    (:func:`progress_text`) to a thread of its own that writes it, so a slow or locked
    database never holds the rendering.  Each stage is written as it begins (a phase, a
    part of the rendering), but a part of builds only when it is the first, or begins
    ``every`` seconds or more after the last text handed over; a text not yet written
    when a newer one comes is replaced by it (the row says what is being done now).

    Only while the job runs under the claim ``attempt`` (without one, while it runs): once
    a write finds the job finished, queued again or claimed since, nothing more is written.
    A database error is logged once, and never reaches the rendering.  The block's end
    waits (up to :data:`PROGRESS_FLUSH_S`) for the last text to be written, so that it is
    in the row before the job's outcome."""

    def __init__(
        self, jobs: PackJobs, job_id: str, attempt: str | None, every: float = PROGRESS_EVERY_S
    ) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.attempt = attempt
        self.every = every
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: str | None = None
        self._stopping = False
        self._phase = ""
        self._heading = ""  # the words of the current phase's first stage
        self._builds_told = False
        self._told_at = 0.0  # when the last text was handed to the thread (monotonic)
        self._mine = True
        self._failed = False
        self._thread = threading.Thread(
            target=self._run, name=f"escrow-pack-progress-{job_id}", daemon=True
        )

    def __enter__(self) -> JobProgress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout=PROGRESS_FLUSH_S)

    def __call__(self, stage: Stage) -> None:
        now = time.monotonic()
        if stage.phase == self._phase and stage.part == "builds":
            if self._builds_told and now - self._told_at < self.every:
                return
            self._builds_told = True
        if stage.phase != self._phase:
            self._phase, self._heading = stage.phase, stage.text
        self._told_at = now
        with self._lock:
            self._pending = progress_text(stage, self._heading)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                text, self._pending = self._pending, None
                stopping = self._stopping
            if text is not None and self._mine:
                self._write(text)
            if stopping or not self._mine:
                return

    def _write(self, text: str) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._mine = self.jobs.set_progress(self.job_id, text, self.attempt)
        except (SQLAlchemyError, EscrowError) as e:  # the database: the rendering goes on
            if not self._failed:
                log.warning(
                    "pack job %s: cannot record its progress (it renders on): %s",
                    self.job_id,
                    db_reason(e),
                )
            self._failed = True


class PackRunner:
    """A thread that renders queued jobs one at a time, each in a child process, keeping
    each job alive with a :class:`Heartbeat` while its child runs."""

    def __init__(
        self,
        jobs: PackJobs,
        settings: Settings,
        poll_s: float = 2.0,
        time_limit: float = DEFAULT_TIME_LIMIT_S,
    ) -> None:
        self.jobs = jobs
        self.settings = settings
        self.poll_s = poll_s
        self.time_limit = time_limit
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="escrow-pack-runner", daemon=True)
        self._child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        problem = server_tsa_problem()
        if problem is not None:  # said now, in the server's log, not only job by job
            log.error("pack jobs will fail until this is fixed: %s", problem.diagnostics())
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
        from sqlalchemy.exc import SQLAlchemyError

        failing = False  # one line when the database goes away, one when it is back
        while not self._stop.is_set():
            try:
                job_id = self.jobs.claim()
            except (SQLAlchemyError, EscrowError) as e:  # database down: say so once, retry
                if not failing:
                    log.error("pack runner: cannot claim a job (retrying): %s", db_reason(e))
                failing = True
                job_id = None
            except Exception:  # noqa: BLE001 - a bug: its traceback, then retry
                log.exception("pack runner: cannot claim a job")
                job_id = None
            else:
                if failing:
                    log.info("pack runner: the database answers again")
                failing = False
            if job_id is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:
                self._render(job_id)
            except (SQLAlchemyError, EscrowError) as e:
                # the database went away while the job's outcome was read or written: the
                # job stays running, and is queued again or failed once stale
                log.error("pack job %s: cannot record its outcome: %s", job_id, db_reason(e))
            except Exception:  # noqa: BLE001 - a bug: its traceback; the runner goes on
                log.exception("pack job %s: the runner failed", job_id)

    def _render(self, job_id: str) -> None:
        from contextlib import AbstractContextManager, nullcontext

        from sqlalchemy.exc import SQLAlchemyError

        attempt = job_id.attempt if isinstance(job_id, ClaimedJob) else None
        job_id = str(job_id)
        alive: AbstractContextManager[object] = (
            Heartbeat(self.jobs, job_id, attempt, HEARTBEAT_S) if attempt else nullcontext()
        )
        env = dict(os.environ)
        env["ESCROW_HOME"] = str(self.settings.home)
        env["ESCROW_DB_URL"] = self.settings.db_url
        log.info("pack job %s: rendering", job_id)
        timed_out = False
        try:
            with alive:  # until the child has exited, however
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "escrow.server.packs", job_id]
                    + ([attempt] if attempt else []),  # the renderer records under this claim
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    # not in the server's process group: a Ctrl-C meant for the server must
                    # not kill the renderer before stop() can queue its job again
                    start_new_session=True,
                )
                try:
                    _, err = self._child.communicate(timeout=self.time_limit)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill_group(self._child)
                    _, err = self._child.communicate()
                code = self._child.returncode
        except OSError as e:  # the machine's: no process to be had
            why = f"The pack renderer could not be started: {e}."
            code, err = -1, f"{KIND_LINE}unavailable\n{why}".encode()
        finally:
            self._child = None
        said = err.decode("utf-8", "replace")
        for line in said.splitlines():  # the renderer's own log lines, in the server's log
            if line.startswith(f"pack job {job_id}: "):
                log.warning("%s", line.strip())
        if code == 0:
            log.info("pack job %s: done", job_id)
            return
        try:
            self._settle(job_id, attempt, code, said, timed_out)
        except (SQLAlchemyError, EscrowError) as e:
            # The database is down (most likely why the renderer failed): the job would
            # stay running, without a heartbeat, until another server took it for dead
            # minutes later and failed it. Queue it again as soon as the database is back.
            log.error(
                "pack job %s: cannot record its outcome (%s); it is queued again once the "
                "database answers",
                job_id,
                db_reason(e),
            )
            self._requeue_when_back(job_id, attempt)

    def _requeue_when_back(self, job_id: str, attempt: str | None) -> None:
        """Queue the job again (under its claim) once the database answers, trying every
        ``poll_s`` (and once more when the server stops)."""
        from sqlalchemy.exc import SQLAlchemyError

        while True:
            try:
                if self.jobs.requeue(job_id, attempt):
                    log.info("pack job %s: queued again (the database was unavailable)", job_id)
                return
            except (SQLAlchemyError, EscrowError):
                if self._stop.is_set():
                    return  # still running: failed or queued again once stale
            self._stop.wait(self.poll_s)

    def _settle(
        self, job_id: str, attempt: str | None, code: int, said: str, timed_out: bool
    ) -> None:
        """Record the outcome of a renderer that exited with ``code`` (not 0)."""
        if self._stop.is_set():
            # stopped with the server (a restart, a deploy): queue it again for the next
            # server to render, rather than fail the auditor's request
            if self.jobs.requeue(job_id, attempt):
                log.info("pack job %s: queued again (the server is stopping)", job_id)
            return
        if timed_out:
            text, kind = time_limit_error(self.time_limit), "unavailable"
        else:
            text, kind = _renderer_error(said, code)
        job = self.jobs.get(job_id)  # the database down: queued again once it is back
        log.error("pack job %s failed: %s", job_id, text)
        if job is not None and job.status == "running":
            done = self._recorded_anyway(job_id)
            if done is not None:  # died after its pack was recorded: serve that pack
                log.warning(
                    "pack job %s: its pack is recorded as ledger entry %d; serving it",
                    job_id,
                    done[1],
                )
                if not self.jobs.finish(job_id, pdf=done[0], entry_index=done[1], attempt=attempt):
                    _not_recorded(job_id)
                return
            if not self.jobs.finish(job_id, error=text[:2000], error_kind=kind, attempt=attempt):
                _not_recorded(job_id)

    def _recorded_anyway(self, job_id: str) -> tuple[bytes, int] | None:
        """The kept pack and its entry, when the job's failed renderer had recorded it
        (failing the job would delete the only copy of a PDF the ledger names)."""
        if self.jobs.kept(job_id) is None:
            return None
        from escrow.ledger.store import Ledger

        try:
            ledger = Ledger.open(self.settings, create=False)
            try:
                return _from_kept(ledger, self.jobs, job_id, append=False)
            finally:
                ledger.close()
        except EscrowError as e:
            log.warning("pack job %s: cannot look for its kept pack in the ledger: %s", job_id, e)
            return None


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """Kill a renderer and whatever it started (its own session: its process group)."""
    import signal

    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # gone meanwhile
        pass


def duration_text(seconds: float) -> str:
    """``seconds`` in words for a message: "2 h", "1 h 30 min", "45 min", "90 s"."""
    if seconds < 60 or (seconds < 600 and round(seconds) % 60):
        return f"{seconds:g} s" if seconds < 10 else f"{round(seconds)} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def time_limit_error(limit: float) -> str:
    """The error of a job whose renderer ran longer than the server's ``limit``."""
    return (
        f"The pack took longer than this server's limit of {duration_text(limit)} "
        "(escrow serve --pack-time-limit) and was stopped; nothing was recorded. Ask for "
        "a smaller scope (one project, or one quarter), or ask the server's operator to "
        "raise the limit."
    )


def _not_recorded(job_id: str) -> None:
    log.warning(
        "pack job %s: finished or claimed again by another server meanwhile; this renderer's "
        "outcome is not recorded",
        job_id,
    )


def _renderer_error(stderr: str, code: int) -> tuple[str, str]:
    """The error text and its kind (:data:`ERROR_EXIT_CODES`) of a renderer process that
    exited with ``code``: the kind its :func:`main` named, else ``unavailable`` for a
    process killed by a signal (the server's machine: memory, an operator) or that could
    not be started, and ``internal`` for one that died of an error escrow did not foresee
    (its traceback)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    named = [line[len(KIND_LINE) :] for line in lines if line.startswith(KIND_LINE)]
    text = lines[-1] if lines else ""
    if named and named[-1] in ERROR_EXIT_CODES:
        return text.removeprefix("escrow: error: "), named[-1]
    if code < 0:
        return (
            f"The process rendering this pack was killed (signal {-code}); request it again.",
            "unavailable",
        )
    return text or f"The pack renderer exited with code {code}.", "internal"


def render_job(settings: Settings, job_id: str, attempt: str | None = None) -> None:
    """Render one claimed job with the pack code and store the PDF in its row; with
    ``attempt`` (the token of the claim), only while the job runs under that claim.

    A job that kept a signed pack (its renderer was stopped in the record step) is
    finished from that pack instead: at most one ledger entry per job.
    """
    from escrow.ledger.store import Ledger, make_engine

    ledger = Ledger.open(settings, create=False)
    engine = make_engine(settings.db_url)
    try:
        _render_job(ledger, PackJobs(engine), settings, job_id, attempt)
    finally:
        ledger.close()
        engine.dispose()


def _render_job(
    ledger: Any, jobs: PackJobs, settings: Settings, job_id: str, attempt: str | None = None
) -> None:
    job = jobs.get(job_id)
    if job is None:
        raise EscrowError(f"There is no pack job {job_id}.")

    def keep(pdf: bytes, envelope: bytes) -> None:
        if attempt is None:  # no claim named (a renderer run by hand): while it runs
            jobs.keep(job_id, pdf, envelope)
        else:
            jobs.keep(job_id, pdf, envelope, attempt)

    try:
        with JobProgress(jobs, job_id, attempt) as progress:
            done = _from_kept(ledger, jobs, job_id, append=True, settings=settings, keep=keep)
            if done is None:
                done = _issue_pack(ledger, settings, job, keep=keep, progress=progress)
    except JobNotRunning as e:
        log.warning("pack job %s: %s", job_id, e)
        return
    except EscrowError as e:
        try:  # the append may have committed before failing (a lost connection)
            done = _from_kept(ledger, jobs, job_id, append=False)
        except EscrowError:
            done = None
        if done is None:
            if not jobs.finish(
                job_id, error=_job_error(e), error_kind=error_kind(e), attempt=attempt
            ):
                _not_recorded(job_id)
            return
    pdf, entry_index = done
    if not jobs.finish(job_id, pdf=pdf, entry_index=entry_index, attempt=attempt):
        # its entry is in the ledger, and its kept pack in the table: the claim that holds
        # the job now finishes it from that pack
        _not_recorded(job_id)


#: What to check when the server's Time-Stamping Authority gives no timestamp: the hint a
#: local `escrow pack` gives names its own ``--tsa`` and ESCROW_TSA_URL, which through a
#: server are the server's (`escrow pack --tsa` is refused through a server).
SERVER_TSA_HINT = (
    "The server's operator should check the Time-Stamping Authority it is set to use "
    "(ESCROW_TSA_URL where `escrow serve` runs) and its network; nothing was written or "
    "recorded."
)


#: The hint of a scope over the build limit: a local `escrow pack` suggests ``--max-builds N``,
#: which `escrow pack` refuses through a server (the server holds its packs to the limit).
SERVER_LIMIT_HINT = (
    "Make one pack per project (--project) or per quarter (--since/--until): the server's "
    "limit is {limit:,} builds a pack."
)

#: What to do about a malformed ESCROW_TSA_URL of the server: the server's setting, which
#: its operator fixes, not the auditor (a local `escrow pack` says to give another URL).
SERVER_TSA_URL_HINT = (
    "The server's operator should set ESCROW_TSA_URL where `escrow serve` runs to the RFC "
    "3161 URL its Time-Stamping Authority publishes (a / or @ in its password "
    "percent-encoded) and restart it; nothing was written or recorded."
)


def server_tsa_problem() -> ServerMisconfigured | None:
    """What is wrong with the server's ESCROW_TSA_URL, as the error a pack job fails with
    (``unavailable``: the server's setting, not the request); ``None`` when it is well
    formed or unset."""
    from escrow.errors import InputError
    from escrow.pack.sign import TSA_URL_ENV, tsa_url

    try:
        tsa_url()
    except InputError as e:
        said = e.message
        if said.startswith(TSA_URL_ENV):
            said = "The server's " + said
        return ServerMisconfigured(said, hint=SERVER_TSA_URL_HINT)
    return None


def _job_error(e: EscrowError) -> str:
    """The failed job's ``error``: what `escrow pack` would say on the server's own ledger,
    with hints that fit a server: a Time-Stamping Authority failure is about the server's
    setting, and a scope over the build limit cannot be raised with ``--max-builds``."""
    from escrow.errors import InputError
    from escrow.pack.collect import MAX_BUILDS
    from escrow.pack.sign import TimestampUnavailable

    if isinstance(e, TimestampUnavailable):
        return TimestampUnavailable(e.message, hint=SERVER_TSA_HINT).diagnostics()
    if isinstance(e, InputError) and "--max-builds" in (e.hint or ""):
        return InputError(e.message, hint=SERVER_LIMIT_HINT.format(limit=MAX_BUILDS)).diagnostics()
    return e.diagnostics()


def _from_kept(
    ledger: Any,
    jobs: PackJobs,
    job_id: str,
    *,
    append: bool,
    settings: Settings | None = None,
    keep: Callable[[bytes, bytes], None] | None = None,
) -> tuple[bytes, int] | None:
    """The job's kept pack and the index of the entry recording it; ``None`` when it has none.

    Its envelope is looked up by leaf hash (the first renderer appended it) and, with
    ``append``, appended when missing (the renderer stopped just before; appends are
    idempotent, so a race with another renderer still makes one entry).  An envelope
    signed by a key `escrow keys rotate` retired since is signed again with the new key
    (``settings``' key file), as a pack rendering during a rotation is, and kept in its
    place (``keep(pdf, envelope)``, under the job's claim) before it is appended: the
    pack is not rendered again.  An envelope the ledger refuses otherwise was never
    recorded: the kept pack is discarded and ``None`` says to render afresh.
    """
    from escrow.errors import CheckFailed, InputError, SignatureError

    kept = jobs.kept(job_id)
    if kept is None:
        return None
    try:
        entry = ledger.get_by_leaf_hash(kept.leaf_hash)
    except InputError:
        if not append:
            return None
        try:
            entry = _append_kept(ledger, kept, settings, keep)
        except (SignatureError, InputError) as e:  # refused: nothing was appended
            log.warning(
                "pack job %s: the kept pack is not recorded (%s); rendering it again", job_id, e
            )
            jobs.discard(job_id)
            return None
        kept = KeptPack(kept.pdf, entry.envelope, entry.leaf_hash)  # perhaps signed again
    digest = hashlib.sha256(kept.pdf).hexdigest()
    subjects = entry.statement().get("subject") or []
    if entry.leaf_hash != kept.leaf_hash or digest not in {
        str((x.get("digest") or {}).get("sha256")) for x in subjects
    }:
        raise CheckFailed(
            f"Ledger entry {entry.index} does not record the pack kept for job {job_id}."
        )
    log.info("pack job %s: finished from its kept pack, ledger entry %d", job_id, entry.index)
    return kept.pdf, int(entry.index)


def _append_kept(
    ledger: Any,
    kept: KeptPack,
    settings: Settings | None,
    keep: Callable[[bytes, bytes], None] | None,
) -> Any:
    """Append the kept envelope (:func:`escrow.pack.render._append_signed`: signed again,
    and kept again first, when a rotation retired its key since); its entry."""
    from escrow.pack.render import _append_signed
    from escrow.signing.dsse import Envelope

    if settings is None:
        entry, _ = ledger.append(kept.envelope)
        return entry
    envelope = Envelope.from_bytes(kept.envelope)
    signer = _KeyId(envelope.signatures[0].keyid if envelope.signatures else "")

    def keep_again(again: Any) -> None:
        if keep is not None:
            keep(kept.pdf, again.to_bytes())

    return _append_signed(settings, ledger, envelope.statement(), kept.envelope, signer, keep_again)


@dataclass(frozen=True)
class _KeyId:
    """The key that signed a kept envelope, as :func:`escrow.capture.publish._rotated`
    compares it with the key file's (by key ID)."""

    keyid: str


def _issue_pack(
    ledger: Any,
    settings: Settings,
    job: JobInfo,
    *,
    keep: Callable[[bytes, bytes], None],
    progress: Callable[[Stage], object] | None = None,
) -> tuple[bytes, int]:
    """Render, sign and record the pack with :func:`escrow.pack.render.render_pack`;
    ``keep(pdf, envelope)`` is called with the signed PDF and its envelope before the
    envelope is appended, and ``progress`` with each stage of the rendering."""
    import tempfile
    from pathlib import Path

    from escrow.pack.collect import MAX_BUILDS, PackRequest
    from escrow.pack.render import render_pack

    problem = server_tsa_problem()  # the server's setting: before anything is rendered
    if problem is not None:
        raise problem
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
        max_builds=MAX_BUILDS,  # as a local pack: the heartbeat keeps a long job alive
    )
    signed: list[bytes] = []

    def before_record(pdf: bytes, envelope: Any) -> None:
        # called again, with the same PDF, for the statement signed again after a rotation
        keep(pdf, envelope.to_bytes())
        signed[:] = [pdf]

    with tempfile.TemporaryDirectory(prefix="escrow-pack-") as tmp:
        out = Path(tmp) / f"pack-{job.id}.pdf"
        result = render_pack(
            settings, ledger, request, out, before_record=before_record, progress=progress
        )
    if result.index is None or len(signed) != 1:
        raise EscrowError(f"The pack of job {job.id} was not recorded.")
    return signed[0], result.index


def main(argv: list[str] | None = None) -> int:
    from escrow.config import load_settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m escrow.server.packs JOB_ID [ATTEMPT]", file=sys.stderr)
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    try:
        try:
            render_job(load_settings(), args[0], args[1] if len(args) == 2 else None)
        except SQLAlchemyError as e:  # the job table, read or written outside a wrapper
            raise DatabaseUnavailable(
                f"The ledger database became unavailable while the pack was rendered "
                f"({db_reason(e)}).",
                hint="Request the pack again.",
            ) from e
    except EscrowError as e:
        print(f"{KIND_LINE}{error_kind(e)}", file=sys.stderr)
        print(f"escrow: error: {_job_error(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
