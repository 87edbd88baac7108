"""A pack job records at most one ledger entry, however its renderer dies and is re-run.

A pack records itself in the ledger (its statement names the SHA-256 of the signed PDF).
When the renderer of a job is stopped after that append but before the job row holds
the PDF, the job is queued again and rendered once more; that second rendering must not
record a second pack, and the PDF the job then serves must be the one its entry names
(``escrow pack`` through a server refuses any other).

The renderer's death is simulated here at each point of the record step, in this process
(``render_job`` as the child process runs it, interrupted by an exception nothing catches),
on SQLite and on PostgreSQL; the last test stops a real ``escrow serve`` while its renderer
waits just after the append (a ``sitecustomize`` on its PYTHONPATH holds it there).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import one_build_ledger

pytestmark = pytest.mark.slow


class Crash(BaseException):
    """The renderer process dies here (nothing may catch it, as nothing catches SIGKILL)."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Settings of a fresh, initialised ledger with one build of project ``once``."""
    with one_build_ledger(request, tmp_path, monkeypatch, "once", pg_name="escrow_review9") as s:
        yield s


def _pack_entries(settings: Any) -> list[Any]:
    from escrow.documents.types import AUDIT_PACK
    from escrow.ledger.store import Ledger

    ledger = Ledger.open(settings)
    try:
        return list(ledger.entries(predicate_type=AUDIT_PACK))
    finally:
        ledger.close()


class _Remote:
    """What `escrow pack`'s check reads of the server: the entry at an index."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def get(self, index: int) -> Any:
        from escrow.ledger.store import Ledger

        ledger = Ledger.open(self.settings)
        try:
            return ledger.get(index)
        finally:
            ledger.close()


def _check_served_pack(settings: Any, jobs: Any, job_id: str, tmp_path: Path) -> None:
    """Exactly one pack entry, and the job serves the PDF that entry names."""
    from escrow.cli.pack_cmd import _recorded_pack
    from escrow.pack.verify import verify_pack

    packs = _pack_entries(settings)
    assert len(packs) == 1, [e.index for e in packs]
    job = jobs.get(job_id)
    assert job is not None
    assert job.status == "succeeded", job.error
    pdf = jobs.pdf(job_id)
    assert pdf is not None
    digest = hashlib.sha256(pdf).hexdigest()
    assert job.pdf_sha256 == digest
    assert job.entry_index == packs[0].index
    entry, _ = _recorded_pack(_Remote(settings), job.to_dict(), digest)  # what `escrow pack` does
    assert entry.leaf_hash == packs[0].leaf_hash
    path = tmp_path / "served.pdf"
    path.write_bytes(pdf)
    report = verify_pack(path)
    assert report.ok, report.first_failure


@pytest.mark.parametrize("point", ["before-append", "after-append"])
def test_a_re_rendered_pack_job_records_one_entry(
    settings: Any, point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.ledger.store import Ledger, make_engine
    from escrow.server.packs import PackJobs, render_job

    engine = make_engine(settings.db_url)
    PackJobs.create_tables(engine)
    jobs = PackJobs(engine)
    try:
        job_id = jobs.submit({"projects": ["once"]}, "test-auditor").id
        assert jobs.claim() == job_id

        original = Ledger.append
        crashed: list[bool] = []

        def append(self: Any, envelope: Any) -> Any:
            if crashed:
                return original(self, envelope)
            crashed.append(True)
            if point == "before-append":
                raise Crash
            original(self, envelope)
            raise Crash  # the entry is committed; the job row never hears of it

        monkeypatch.setattr(Ledger, "append", append)
        with pytest.raises(Crash):
            render_job(settings, job_id)
        assert crashed
        assert len(_pack_entries(settings)) == (1 if point == "after-append" else 0)
        status = jobs.get(job_id)
        assert status is not None and status.status == "running"

        # the server stopping queues it again; the next server claims and renders it
        assert jobs.requeue(job_id)
        assert jobs.claim() == job_id
        render_job(settings, job_id)
        _check_served_pack(settings, jobs, job_id, tmp_path)
    finally:
        engine.dispose()


def _crashed_after(
    settings: Any, jobs: Any, monkeypatch: pytest.MonkeyPatch, *, append: bool
) -> str:
    """A claimed job whose renderer died just before (``append=False``) or just after its
    pack's append; the job is still ``running``."""
    from escrow.ledger.store import Ledger
    from escrow.server.packs import render_job

    job_id: str = jobs.submit({"projects": ["once"]}, "test-auditor").id
    assert jobs.claim() == job_id
    original = Ledger.append

    def dying(self: Any, envelope: Any) -> Any:
        if append:
            original(self, envelope)
        raise Crash

    monkeypatch.setattr(Ledger, "append", dying)
    with pytest.raises(Crash):
        render_job(settings, job_id)
    monkeypatch.setattr(Ledger, "append", original)
    return job_id


def test_a_kept_pack_the_ledger_now_refuses_is_signed_again_with_the_new_key(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """Died before the append, then the build key was rotated: the kept envelope, signed by
    a retired key, was never recorded and cannot be; the job signs the pack it kept again
    with the new key and records that (another envelope, one pack)."""
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs, render_job

    engine = make_engine(settings.db_url)
    PackJobs.create_tables(engine)
    jobs = PackJobs(engine)
    try:
        job_id = _crashed_after(settings, jobs, monkeypatch, append=False)
        kept = jobs.kept(job_id)
        assert kept is not None
        r = cli(["keys", "rotate"])
        assert r.exit_code == 0, r.stderr
        assert jobs.requeue(job_id) and jobs.claim() == job_id
        render_job(settings, job_id)
        _check_served_pack(settings, jobs, job_id, tmp_path)
        assert _pack_entries(settings)[0].leaf_hash != kept.leaf_hash
        assert jobs.kept(job_id) is None
    finally:
        engine.dispose()


def test_a_job_no_longer_running_records_no_pack(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renderer whose job was failed meanwhile (as stale) keeps nothing and appends nothing."""
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs, render_job

    engine = make_engine(settings.db_url)
    PackJobs.create_tables(engine)
    jobs = PackJobs(engine)
    try:
        job_id = jobs.submit({"projects": ["once"]}, "test-auditor").id
        assert jobs.claim() == job_id
        keep = PackJobs.keep

        def failed_meanwhile(self: Any, jid: str, pdf: bytes, envelope: bytes) -> None:
            self.finish(jid, error="The server rendering this pack stopped; request it again.")
            keep(self, jid, pdf, envelope)

        monkeypatch.setattr(PackJobs, "keep", failed_meanwhile)
        render_job(settings, job_id)
        assert _pack_entries(settings) == []
        job = jobs.get(job_id)
        assert job is not None and job.status == "failed"
        assert jobs.kept(job_id) is None
    finally:
        engine.dispose()


def test_a_stale_job_with_a_kept_pack_is_finished_from_it(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server killed outright (no requeue) after the append: when the job goes stale it is
    queued again, not failed, and finished with the pack its entry names."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from escrow.ledger.store import make_engine
    from escrow.server.packs import STALE_AFTER_S, PackJob, PackJobs, render_job

    engine = make_engine(settings.db_url)
    PackJobs.create_tables(engine)
    jobs = PackJobs(engine)
    try:
        job_id = _crashed_after(settings, jobs, monkeypatch, append=True)
        stale = jobs.submit({"projects": ["once"]}, "test-auditor").id  # died in rendering
        assert jobs.claim() == stale
        tbl = PackJob.__table__  # type: ignore[attr-defined]
        long_ago = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)
        with engine.begin() as conn:
            conn.execute(update(tbl).where(tbl.c.status == "running").values(started_at=long_ago))
        assert jobs.claim() == job_id
        failed = jobs.get(stale)
        assert failed is not None and failed.status == "failed"
        render_job(settings, job_id)
        _check_served_pack(settings, jobs, job_id, tmp_path)
    finally:
        engine.dispose()


# Loaded by every Python process of the first server (PYTHONPATH): in the renderer, the
# pack's append commits, then the process says so and waits to be stopped with the server.
SITECUSTOMIZE = """
import os

if os.environ.get("ESCROW_REVIEW9_PAUSE_MARK"):
    import time
    from pathlib import Path

    from escrow.documents.types import AUDIT_PACK
    from escrow.ledger import store

    _append = store.Ledger.append

    def append(self, envelope):
        result = _append(self, envelope)
        if result[0].predicate_type == AUDIT_PACK:
            Path(os.environ["ESCROW_REVIEW9_PAUSE_MARK"]).write_text(str(result[0].index))
            time.sleep(600)
        return result

    store.Ledger.append = append
"""


def test_a_server_stopped_after_the_pack_entry_was_appended_serves_that_pack(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst moment for a real `escrow serve`: its renderer has appended the pack's
    entry, and the job row does not know yet.  After the restart the job serves the PDF
    that entry names, `escrow pack`'s check accepts it, and the log holds one pack."""
    import time

    import httpx
    from server_helpers import free_port, make_tokens, start_serve, stop

    from escrow.cli.pack_cmd import _recorded_pack
    from escrow.ledger.store import Ledger
    from escrow.server.client import RemoteLedger

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    mark = tmp_path / "appended"
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("ESCROW_REVIEW9_PAUSE_MARK", str(mark))
    tokens = make_tokens(settings)
    ledger = Ledger.open(settings)
    try:
        verifier = ledger.verifier_key()
    finally:
        ledger.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}

    def packs(c: httpx.Client) -> list[int]:
        r = c.get("/v1/entries", params={"predicate_type": "audit-pack"})
        assert r.status_code == 200, r.text
        return [e["index"] for e in r.json()["entries"]]

    def status(c: httpx.Client, job_id: str) -> dict[str, Any]:
        r = c.get(f"/v1/packs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    with httpx.Client(base_url=url, headers=auth, timeout=60) as auditor:
        proc = start_serve(settings.home, settings.db_url, port=port, log=tmp_path / "first.log")
        try:
            r = auditor.post("/v1/packs", json={"projects": ["once"]})
            assert r.status_code == 202, r.text
            job_id = str(r.json()["id"])
            deadline = time.monotonic() + 180
            while not mark.exists():
                assert proc.poll() is None and time.monotonic() < deadline, status(auditor, job_id)
                time.sleep(0.1)
            recorded = packs(auditor)
            assert recorded == [int(mark.read_text())]
            assert status(auditor, job_id)["status"] == "running"
        finally:
            stop(proc)  # SIGTERM: the server stops its renderer and queues the job again
        assert f"pack job {job_id}: queued again" in (tmp_path / "first.log").read_text()

        monkeypatch.delenv("ESCROW_REVIEW9_PAUSE_MARK")
        proc = start_serve(settings.home, settings.db_url, port=port, log=tmp_path / "second.log")
        try:
            job = status(auditor, job_id)
            deadline = time.monotonic() + 240
            while job["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.25)
                job = status(auditor, job_id)
            assert job["status"] == "succeeded", job
            assert packs(auditor) == recorded  # no second pack entry
            assert job["entry_index"] == recorded[0]
            pdf = auditor.get(f"/v1/packs/{job_id}/pdf")
            assert pdf.status_code == 200
            digest = hashlib.sha256(pdf.content).hexdigest()
            assert job["pdf_sha256"] == digest
            remote = RemoteLedger(
                url, tokens["auditor"], home=tmp_path / "client", verifier_key=verifier
            )
            try:  # what `escrow pack` through a server checks before it writes the file
                entry, _ = _recorded_pack(remote, job, digest)
            finally:
                remote.close()
            assert entry.index == recorded[0]
        finally:
            stop(proc)


@pytest.mark.parametrize("recorded", [True, False])
def test_a_renderer_that_fails_after_recording_its_pack_still_serves_it(
    settings: Any, recorded: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renderer process exits non-zero after its pack's append (its last write to the
    job row failed, say) while the server runs on: failing the job would delete the kept
    PDF, the only copy of the file the ledger entry names. Before the append, the job fails
    and nothing is recorded."""
    from escrow.ledger.store import make_engine
    from escrow.server import packs
    from escrow.server.packs import PackJobs, PackRunner

    engine = make_engine(settings.db_url)
    PackJobs.create_tables(engine)
    jobs = PackJobs(engine)
    try:
        job_id = _crashed_after(settings, jobs, monkeypatch, append=recorded)
        real_popen = subprocess.Popen

        def failing_child(*_: Any, **kw: Any) -> Any:  # the renderer exits with code 1
            return real_popen([sys.executable, "-c", "import sys; sys.exit(1)"], **kw)

        monkeypatch.setattr(packs.subprocess, "Popen", failing_child)
        PackRunner(jobs, settings)._render(job_id)
        monkeypatch.setattr(packs.subprocess, "Popen", real_popen)  # pdftotext runs below

        job = jobs.get(job_id)
        assert job is not None
        if recorded:
            _check_served_pack(settings, jobs, job_id, tmp_path)
        else:
            assert job.status == "failed"
            assert _pack_entries(settings) == []
            assert jobs.kept(job_id) is None
    finally:
        engine.dispose()
