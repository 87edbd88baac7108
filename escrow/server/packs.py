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
goes when the job row is finished, in the same transaction.
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from escrow.errors import CheckFailed, DatabaseUnavailable, EnvironmentProblem, EscrowError
from escrow.server.auth import db_reason

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from escrow.config import Settings

log = logging.getLogger("escrow.server")

#: A job still "running" after this long is taken to belong to a dead runner and is failed.
STALE_AFTER_S = 1800

#: The most builds a pack job renders (a local ``escrow pack`` takes up to
#: :data:`escrow.pack.collect.MAX_BUILDS`): 1,000 builds render in some 5.5 minutes on a
#: 2-core machine (bench/pack_memory.py), well within :data:`STALE_AFTER_S`, after which
#: a job still running is taken for a dead one; the 5,000 a local pack may hold would not be.
SERVER_MAX_BUILDS = 1000

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
    """The job is no longer running (failed as stale, say): its renderer records nothing."""


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

        from sqlalchemy import select, update

        tbl = PackJob.__table__  # type: ignore[attr-defined]
        kept = PackRecord.__table__  # type: ignore[attr-defined]
        cutoff = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S)
        # A stale job that kept its signed pack died in the record step, perhaps after the
        # append: queue it again, to be finished from that pack (not rendered again).
        s.execute(
            update(tbl)
            .where(
                tbl.c.status == "running",
                tbl.c.started_at < cutoff,
                tbl.c.id.in_(select(kept.c.job_id)),
            )
            .values(status="queued", started_at=None)
        )
        s.execute(
            update(tbl)
            .where(tbl.c.status == "running", tbl.c.started_at < cutoff)
            .values(
                status="failed",
                finished_at=datetime.now(UTC),
                error="The server rendering this pack stopped; request it again.",
                error_kind="unavailable",
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

    def keep(self, job_id: str, pdf: bytes, envelope: bytes) -> None:
        """Keep a running job's signed pack and its envelope, before the envelope is appended.

        :class:`JobNotRunning` when the job is no longer running: then the pack must not be
        recorded.
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
                record = s.get(PackRecord, job_id)
                if record is None:
                    record = PackRecord(
                        job_id=job_id, pdf=pdf, envelope=envelope, leaf_hash=leaf, kept_at=_now()
                    )
                else:  # one discarded by render_job (never appended); replace it
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
    ) -> None:
        """Record the job's outcome: its PDF, or its ``error`` and the kind of that error
        (:data:`ERROR_EXIT_CODES`)."""
        with self._session(write=True) as s:
            row = s.get(PackJob, job_id)
            if row is None:
                return
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
        except OSError as e:  # the machine's: no process to be had
            why = f"The pack renderer could not be started: {e}."
            code, err = -1, f"{KIND_LINE}unavailable\n{why}".encode()
        finally:
            self._child = None
        if code != 0 and self._stop.is_set():
            # stopped with the server (a restart, a deploy): queue it again for the next
            # server to render, rather than fail the auditor's request
            if self.jobs.requeue(job_id):
                log.info("pack job %s: queued again (the server is stopping)", job_id)
            return
        if code != 0:
            text, kind = _renderer_error(err.decode("utf-8", "replace"), code)
            log.error("pack job %s failed: %s", job_id, text)
            job = self.jobs.get(job_id)
            if job is not None and job.status == "running":
                done = self._recorded_anyway(job_id)
                if done is not None:  # died after its pack was recorded: serve that pack
                    log.warning(
                        "pack job %s: its pack is recorded as ledger entry %d; serving it",
                        job_id,
                        done[1],
                    )
                    self.jobs.finish(job_id, pdf=done[0], entry_index=done[1])
                    return
                self.jobs.finish(job_id, error=text[:2000], error_kind=kind)
        else:
            log.info("pack job %s: done", job_id)

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


def render_job(settings: Settings, job_id: str) -> None:
    """Render one claimed job with the pack code and store the PDF in its row.

    A job that kept a signed pack (its renderer was stopped in the record step) is
    finished from that pack instead: at most one ledger entry per job.
    """
    from escrow.ledger.store import Ledger, make_engine

    ledger = Ledger.open(settings, create=False)
    engine = make_engine(settings.db_url)
    try:
        _render_job(ledger, PackJobs(engine), settings, job_id)
    finally:
        ledger.close()
        engine.dispose()


def _render_job(ledger: Any, jobs: PackJobs, settings: Settings, job_id: str) -> None:
    job = jobs.get(job_id)
    if job is None:
        raise EscrowError(f"There is no pack job {job_id}.")
    try:
        done = _from_kept(ledger, jobs, job_id, append=True)
        if done is None:
            done = _issue_pack(
                ledger, settings, job, keep=lambda pdf, env: jobs.keep(job_id, pdf, env)
            )
    except JobNotRunning as e:
        log.warning("pack job %s: %s", job_id, e)
        return
    except EscrowError as e:
        try:  # the append may have committed before failing (a lost connection)
            done = _from_kept(ledger, jobs, job_id, append=False)
        except EscrowError:
            done = None
        if done is None:
            jobs.finish(job_id, error=e.diagnostics(), error_kind=error_kind(e))
            return
    pdf, entry_index = done
    jobs.finish(job_id, pdf=pdf, entry_index=entry_index)


def _from_kept(
    ledger: Any, jobs: PackJobs, job_id: str, *, append: bool
) -> tuple[bytes, int] | None:
    """The job's kept pack and the index of the entry recording it; ``None`` when it has none.

    Its envelope is looked up by leaf hash (the first renderer appended it) and, with
    ``append``, appended when missing (the renderer stopped just before; appends are
    idempotent, so a race with another renderer still makes one entry).  An envelope the
    ledger now refuses was never recorded: the kept pack is discarded and ``None`` says
    to render afresh.
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
            entry, _ = ledger.append(kept.envelope)
        except (SignatureError, InputError) as e:  # refused: nothing was appended
            log.warning(
                "pack job %s: the kept pack is not recorded (%s); rendering it again", job_id, e
            )
            jobs.discard(job_id)
            return None
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


def _issue_pack(
    ledger: Any, settings: Settings, job: JobInfo, *, keep: Callable[[bytes, bytes], None]
) -> tuple[bytes, int]:
    """Render, sign and record the pack with :func:`escrow.pack.render.render_pack`;
    ``keep(pdf, envelope)`` is called with the signed PDF and its envelope before the
    envelope is appended."""
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
        max_builds=SERVER_MAX_BUILDS,
    )
    signed: list[bytes] = []

    def before_record(pdf: bytes, envelope: Any) -> None:
        keep(pdf, envelope.to_bytes())
        signed.append(pdf)

    with tempfile.TemporaryDirectory(prefix="escrow-pack-") as tmp:
        out = Path(tmp) / f"pack-{job.id}.pdf"
        result = render_pack(settings, ledger, request, out, before_record=before_record)
    if result.index is None or len(signed) != 1:
        raise EscrowError(f"The pack of job {job.id} was not recorded.")
    return signed[0], result.index


def main(argv: list[str] | None = None) -> int:
    from escrow.config import load_settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m escrow.server.packs JOB_ID", file=sys.stderr)
        return 2
    try:
        render_job(load_settings(), args[0])
    except EscrowError as e:
        print(f"{KIND_LINE}{error_kind(e)}", file=sys.stderr)
        print(f"escrow: error: {e.diagnostics()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
