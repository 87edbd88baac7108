"""A PostgreSQL outage while `escrow serve` renders a pack job.

The renderer cannot keep or record its pack while the database is down, and exits; the
server could not record that outcome either ("cannot record its outcome"), so the job
stayed "running", with no heartbeat, until a server took it for dead five minutes later
and failed it ("The server rendering this pack stopped; request it again.") — although
the server never stopped and the database was back within seconds.  Now the server
queues the job again as soon as the database answers, and renders it: the auditor's
`escrow pack` gets its pack, and the ledger records exactly one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port, make_tokens, manifest, start_serve, stop, wait_for
from test_db_outage import Cluster, _init, _pg_bin
from tsakit import make_tsa_files, openssl_tsa

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test's own, which it stops and starts."""
    _pg_bin()
    c = Cluster()
    try:
        yield c
    finally:
        c.remove()


def test_a_job_whose_database_went_away_mid_render_is_rendered_once_it_is_back(
    own_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    for var in ("ESCROW_HOME", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_KEY"):
        monkeypatch.delenv(var, raising=False)
    settings = _init(tmp_path / "home", own_cluster.url)
    with Ledger.open(settings, create=False) as ledger:
        ledger.append(sign_statement(manifest("outage"), SigningKey.load(settings.key_path)))
        size = ledger.size()
    tokens = make_tokens(settings)
    port = free_port()
    log = tmp_path / "serve.log"
    auth = {"Authorization": f"Bearer {tokens['auditor']}"}
    with openssl_tsa(make_tsa_files(tmp_path / "tsa"), hold_from=1) as tsa:
        monkeypatch.setenv("ESCROW_TSA_URL", tsa.url)
        server = start_serve(settings.home, own_cluster.url, port=port, log=log)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60
            ) as auditor:
                r = auditor.post("/v1/packs", json={"projects": ["outage"]})
                assert r.status_code == 202, r.text
                job_id = str(r.json()["id"])
                assert tsa.held.wait(120), "the renderer never asked its TSA"

                own_cluster.stop()
                tsa.answer()  # the renderer signs, and cannot keep or record its pack
                wait_for(
                    "the renderer to fail while the database is down",
                    lambda: f"pack job {job_id}: cannot record its outcome" in log.read_text(),
                    timeout=60,
                )
                own_cluster.start()

                def ended() -> dict[str, object] | None:
                    r = auditor.get(f"/v1/packs/{job_id}")
                    if r.status_code != 200:  # 503 while the server reconnects
                        return None
                    doc: dict[str, object] = r.json()
                    return doc if doc["status"] not in ("queued", "running") else None

                # well before a server would take the job for dead (five minutes)
                doc = wait_for(f"the job {job_id} to end", ended, timeout=120)
        finally:
            stop(server)
    said = log.read_text()
    assert doc["status"] == "succeeded", (doc, said[-3000:])
    assert f"pack job {job_id}: queued again (the database was unavailable)" in said
    assert "Traceback" not in said, said[-3000:]
    with Ledger.open(settings, create=False) as ledger:
        assert ledger.size() == size + 1  # one pack recorded
        assert doc["entry_index"] == size
        assert ledger.verify().ok
