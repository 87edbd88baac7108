"""What `escrow pack` says of a pack job that failed on the server.

A failed job whose document gives no ``error`` (none, or an empty one: a row another
server wrote) is named, with where to look, instead of "The server could not make the pack:
None".  A Time-Stamping Authority that fails the server's job is the server's (its
ESCROW_TSA_URL; `escrow pack --tsa` is refused through a server), so the hint relayed says
to check the server's setting, not the auditor's ``--tsa``.  Through a real server
(Uvicorn in this process, its renderer a real child process).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from server_helpers import LiveServer, manifest
from tsakit import closed_port_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]

PROJECT = "relayed"
SERVER_TSA_HINT = (
    "The server's operator should check the Time-Stamping Authority it is set to use "
    "(ESCROW_TSA_URL where `escrow serve` runs) and its network; nothing was written or "
    "recorded."
)


def failed_job(live_server: LiveServer, error: str | None, kind: str | None) -> str:
    """A job the server's table holds as failed with ``error`` and ``kind``; its ID."""
    from sqlmodel import Session

    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJob, PackJobs

    engine = make_engine(live_server.settings.db_url)
    job_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    try:
        PackJobs.create_tables(engine)
        with Session(engine.execution_options(escrow_write=True)) as s:
            s.add(
                PackJob(
                    id=job_id,
                    status="failed",
                    scope='{"projects": ["relayed"]}',
                    requested_by="test-auditor",
                    requested_at=now,
                    started_at=now,
                    finished_at=now,
                    error=error,
                    error_kind=kind,
                )
            )
            s.commit()
    finally:
        engine.dispose()
    return job_id


@pytest.mark.parametrize(
    ("error", "kind", "exit_code"),
    [(None, None, 2), ("", "unavailable", 3), ("  \n", "internal", 3)],
    ids=["none", "empty", "blank"],
)
def test_a_failed_job_that_gives_no_reason_is_named_not_none(
    live_server: LiveServer, tmp_path: Path, error: str | None, kind: str | None, exit_code: int
) -> None:
    from escrow.errors import EscrowError
    from escrow.server.client import RemoteLedger

    job_id = failed_job(live_server, error, kind)
    with live_server.client("auditor") as auditor:
        doc = auditor.get(f"/v1/packs/{job_id}").json()
    assert (doc["status"], doc["error"]) == ("failed", error)
    token = live_server.tokens["auditor"]
    with RemoteLedger(live_server.url, token, home=tmp_path / "auditor") as remote:
        with pytest.raises(EscrowError) as failed:
            remote.wait_pack(job_id)
    assert failed.value.exit_code == exit_code
    assert failed.value.message == (
        f"The server could not make the pack: the server gave no reason (pack job {job_id}; "
        "see the server's log)."
    )
    assert "None" not in failed.value.diagnostics()


@pytest.mark.parametrize("live_server", [1], indirect=True, ids=["one-pack-worker"])
def test_a_tsa_failure_relayed_by_the_server_names_the_servers_tsa_setting(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from escrow.signing.dsse import sign_statement

    with live_server.ledger() as ledger:
        ledger.append(sign_statement(manifest(PROJECT), live_server.build_key()))
    tsa = closed_port_url()
    monkeypatch.setenv("ESCROW_TSA_URL", tsa)  # the server's renderer's environment
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    out = tmp_path / "pack.pdf"

    r = cli(["pack", "--project", PROJECT, "-o", str(out)])

    assert r.exit_code == 3, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("escrow: error: ")]
    assert len(errors) == 1, r.stderr
    said = errors[0].removeprefix("escrow: error: ")
    assert re.fullmatch(
        re.escape(f"The server could not make the pack: The Time-Stamping Authority {tsa} ")
        + r"cannot be reached \([^)]+\)\. "
        + re.escape(SERVER_TSA_HINT),
        said,
    ), said
    assert "--tsa" not in said
    assert not out.exists()
    found = re.search(r"Pack job ([0-9a-f]+) queued", r.stderr)
    assert found is not None, r.stderr
    with live_server.client("auditor") as auditor:
        job = auditor.get(f"/v1/packs/{found.group(1)}").json()
    assert job["error"] == said.removeprefix("The server could not make the pack: ")
    assert (job["error_kind"], job["error_exit_code"]) == ("unavailable", 3)
