"""A pack job whose build key `escrow keys rotate` retires while it renders.

A pack job keeps its signed PDF and the signed envelope of its pack statement before
appending that envelope (so that a job claimed again finishes from those very bytes).
When `escrow keys rotate` retired the build key while the job rendered (an operator's
rotation during a long pack), the ledger refused that envelope and the job failed, its
rendering lost; a job claimed again after its renderer died with such a kept envelope
rendered the whole pack again.  `escrow pack` on a local ledger signs the statement again
with the key the rotation put in place, and so does a job now: it keeps the envelope signed
again (under its claim) before appending it, so the pack is still recorded once, however
its renderer is stopped and the job claimed again.

The rotation happens in the middle of the rendering (the renderer's ``render_pdf``, held
by a stub that runs `escrow keys rotate` first), in this process (``render_job`` as the
server's child process runs it), and in a real `escrow serve` whose renderer waits for its
Time-Stamping Authority; on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import finished, job_row, one_build_ledger
from test_pack_job_followups import gated_tsa, serving
from test_pack_job_once import Crash, _check_served_pack, _pack_entries

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "rotated"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Settings of a fresh, initialised ledger with one build of :data:`PROJECT`."""
    with one_build_ledger(request, tmp_path, monkeypatch, PROJECT, pg_name="escrow_keyrot") as s:
        yield s


@pytest.fixture
def jobs(settings: Any) -> Iterator[Any]:
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs

    engine = make_engine(settings.db_url)
    PackJobs.create_tables(engine)
    try:
        yield PackJobs(engine)
    finally:
        engine.dispose()


def _rotate_while_rendering(monkeypatch: pytest.MonkeyPatch, cli: Any) -> list[str]:
    """Make the next renderings run `escrow keys rotate` as they begin to lay the pack out
    (after the renderer checked its key, before it signs anything); the new key IDs."""
    from escrow.pack import render

    real = render.render_pdf
    new_keys: list[str] = []

    def rendering(*args: Any, **kwargs: Any) -> Any:
        r = cli(["keys", "rotate", "--json"])
        assert r.exit_code == 0, r.stderr
        new_keys.append(r.json()["new"]["keyid"])
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "render_pdf", rendering)
    return new_keys


def _pack_envelope(envelope: Any) -> Any:
    """The envelope an append was given, when it records a pack (not a key event of the
    rotation); else ``None``."""
    from escrow.documents.types import AUDIT_PACK
    from escrow.signing.dsse import Envelope

    env = envelope if isinstance(envelope, Envelope) else Envelope.from_bytes(envelope)
    return env if env.statement()["predicateType"] == AUDIT_PACK else None


def _never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    from escrow.pack import render

    def rendering(*_: Any, **__: Any) -> Any:
        raise AssertionError("the job rendered its pack again instead of finishing its kept one")

    monkeypatch.setattr(render, "render_pdf", rendering)


def _signer(settings: Any) -> str:
    packs = _pack_entries(settings)
    assert len(packs) == 1, [e.index for e in packs]
    return str(packs[0].signer)


def _verified(settings: Any, cli: Any, index: int) -> None:
    """`escrow verify` of the entry, and `escrow ledger verify` of the whole log, pass."""
    r = cli(["verify", str(index), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    r = cli(["ledger", "verify"])
    assert r.exit_code == 0, r.stdout + r.stderr


def test_a_key_rotated_while_a_job_renders_signs_its_pack_with_the_new_key(
    settings: Any, jobs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    from escrow.server.packs import render_job

    job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
    claimed = jobs.claim()
    assert claimed == job_id
    new_keys = _rotate_while_rendering(monkeypatch, cli)
    render_job(settings, job_id, claimed.attempt)
    assert len(new_keys) == 1  # rendered once
    _check_served_pack(settings, jobs, job_id, tmp_path)
    assert _signer(settings) == new_keys[0]
    assert jobs.kept(job_id) is None
    job = jobs.get(job_id)
    assert job is not None and job.entry_index is not None
    _verified(settings, cli, job.entry_index)


@pytest.mark.parametrize("point", ["before-append", "after-append"])
def test_a_job_that_died_appending_its_pack_signed_again_records_it_once(
    settings: Any,
    jobs: Any,
    point: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
) -> None:
    """The renderer signed the statement again with the new key, kept it, and died just
    before, or just after, appending it; the job claimed again finishes from that kept
    envelope, never rendering nor recording a second pack."""
    from escrow.ledger.store import Ledger
    from escrow.server.packs import render_job

    job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
    claimed = jobs.claim()
    assert claimed == job_id
    new_keys = _rotate_while_rendering(monkeypatch, cli)
    real = Ledger.append
    tried: list[str] = []

    def append(self: Any, envelope: Any) -> Any:
        env = _pack_envelope(envelope)
        if env is None:
            return real(self, envelope)
        tried.append(env.signatures[0].keyid)
        if env.signatures[0].keyid != new_keys[0]:
            return real(self, envelope)  # the first, signed by the retired key: refused
        if point == "after-append":
            real(self, envelope)
        raise Crash

    monkeypatch.setattr(Ledger, "append", append)
    with pytest.raises(Crash):
        render_job(settings, job_id, claimed.attempt)
    assert tried[-1] == new_keys[0] and len(tried) == 2, tried
    monkeypatch.setattr(Ledger, "append", real)
    kept = jobs.kept(job_id)
    assert kept is not None  # the envelope signed again, kept before its append
    assert len(_pack_entries(settings)) == (1 if point == "after-append" else 0)

    # the server stopping queues the job again; the next claim finishes it from that pack
    _never_rendered(monkeypatch)
    assert jobs.requeue(job_id, claimed.attempt)
    again = jobs.claim()
    assert again == job_id
    render_job(settings, job_id, again.attempt)
    _check_served_pack(settings, jobs, job_id, tmp_path)
    assert _pack_entries(settings)[0].leaf_hash == kept.leaf_hash
    assert jobs.pdf(job_id) == kept.pdf
    assert _signer(settings) == new_keys[0]


def test_a_kept_pack_signed_by_a_key_rotated_since_is_signed_again_not_rendered_again(
    settings: Any, jobs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """The renderer died just before its append; the key was rotated before the job was
    claimed again: its kept pack is signed again with the new key and recorded (the pack
    rendered already, perhaps for an hour, is not rendered again)."""
    from escrow.ledger.store import Ledger
    from escrow.server.packs import render_job

    job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
    claimed = jobs.claim()
    assert claimed == job_id
    real = Ledger.append

    def dying(self: Any, envelope: Any) -> Any:
        raise Crash

    monkeypatch.setattr(Ledger, "append", dying)
    with pytest.raises(Crash):
        render_job(settings, job_id, claimed.attempt)
    monkeypatch.setattr(Ledger, "append", real)
    kept = jobs.kept(job_id)
    assert kept is not None
    r = cli(["keys", "rotate", "--json"])
    assert r.exit_code == 0, r.stderr
    new_key = r.json()["new"]["keyid"]

    _never_rendered(monkeypatch)
    assert jobs.requeue(job_id, claimed.attempt)
    again = jobs.claim()
    assert again == job_id
    render_job(settings, job_id, again.attempt)
    _check_served_pack(settings, jobs, job_id, tmp_path)
    assert jobs.pdf(job_id) == kept.pdf  # the very PDF rendered before
    assert _pack_entries(settings)[0].leaf_hash != kept.leaf_hash  # its envelope signed again
    assert _signer(settings) == new_key
    assert jobs.kept(job_id) is None


def test_a_renderer_that_lost_its_claim_does_not_sign_its_pack_again(
    settings: Any, jobs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """Another server claimed the job (taking this one for dead) while the ledger refused
    this renderer's envelope: the renderer keeps and records nothing signed again, and the
    claim holding the job finishes it from the pack kept first, signed again there."""
    from escrow.ledger.store import Ledger
    from escrow.server.packs import PackJob, render_job

    job_id = jobs.submit({"projects": [PROJECT]}, "test-auditor").id
    claimed = jobs.claim()
    assert claimed == job_id
    new_keys = _rotate_while_rendering(monkeypatch, cli)
    real = Ledger.append
    other = uuid.uuid4().hex  # another server's claim of the job
    tried: list[bytes] = []

    def append(self: Any, envelope: Any) -> Any:
        env = _pack_envelope(envelope)
        if env is None:
            return real(self, envelope)
        tried.append(env.to_bytes())
        if len(tried) == 1:
            tbl = PackJob.__table__  # type: ignore[attr-defined]
            with jobs.engine.execution_options(escrow_write=True).begin() as conn:
                conn.execute(tbl.update().where(tbl.c.id == job_id).values(attempt=other))
        return real(self, envelope)

    monkeypatch.setattr(Ledger, "append", append)
    render_job(settings, job_id, claimed.attempt)  # says so in its log, and returns
    assert len(tried) == 1, "the renderer appended a pack after losing its claim"
    assert _pack_entries(settings) == []
    row = job_row(jobs.engine, job_id)
    assert (row.status, row.attempt, row.pdf) == ("running", other, None)
    kept = jobs.kept(job_id)
    assert kept is not None
    assert kept.envelope == tried[0]  # the pack kept first, signed by the retired key

    monkeypatch.setattr(Ledger, "append", real)
    _never_rendered(monkeypatch)
    render_job(settings, job_id, other)  # the claim that holds the job
    _check_served_pack(settings, jobs, job_id, tmp_path)
    assert jobs.pdf(job_id) == kept.pdf
    assert _signer(settings) == new_keys[0]


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # the same code on both
def test_escrow_serve_records_a_pack_whose_key_was_rotated_while_it_rendered(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """A real `escrow serve`: its renderer process, past its key check, waits for its
    Time-Stamping Authority's answer while `escrow keys rotate` runs; the job then succeeds,
    its pack recorded once and signed with the new key (it failed: "The envelope is signed
    only by keys that may not sign now")."""
    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJobs

    with gated_tsa(tmp_path / "tsa") as tsa:
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)  # the server's environment
        with serving(settings, tmp_path) as served, served.client() as auditor:
            r = auditor.post("/v1/packs", json={"projects": [PROJECT]})
            assert r.status_code == 202, r.text
            job_id = str(r.json()["id"])
            assert tsa.held.wait(240), "the server's renderer never asked its TSA"
            rotated = cli(["keys", "rotate", "--json"])
            assert rotated.exit_code == 0, rotated.stderr
            tsa.answer()
            doc = finished(auditor, job_id)
    assert doc["status"] == "succeeded", (doc, served.said()[-3000:])
    assert _signer(settings) == rotated.json()["new"]["keyid"]
    engine = make_engine(settings.db_url)
    try:
        jobs = PackJobs(engine)
        _check_served_pack(settings, jobs, job_id, tmp_path)
    finally:
        engine.dispose()
    _verified(settings, cli, int(doc["entry_index"]))
