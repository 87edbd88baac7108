"""Two `escrow serve` processes on one PostgreSQL ledger, 8 concurrent clients posting to both."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pgkit import fresh_pg_database
from server_helpers import free_port, make_tokens, manifest, start_serve, stop

from escrow.ledger import merkle
from escrow.ledger.checkpoint import verify_checkpoint
from tests.ledger.test_independent_reference import leaf_hash as ref_leaf_hash
from tests.ledger.test_independent_reference import mth as ref_mth
from tests.ledger.test_independent_reference import verify_inclusion as ref_verify_inclusion

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 8
PER_CLIENT = 20


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the test cluster (ESCROW_TEST_PG_URL)."""
    yield from fresh_pg_database("escrow_server")


def test_two_servers_on_one_postgres_ledger(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    home = tmp_path / "server-home"
    for var in ("ESCROW_HOME", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_KEY"):
        monkeypatch.delenv(var, raising=False)
    # a separate process: `escrow init` leaves its ledger connection to the garbage collector
    r = subprocess.run(
        [sys.executable, "-m", "escrow.cli.main", "--home", str(home), "--db-url", pg_url, "init"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")},
    )
    assert r.returncode == 0, r.stderr
    settings = load_settings(home=home, db_url=pg_url)
    tokens = make_tokens(settings)
    key = SigningKey.load(settings.key_path)
    work = [
        [sign_statement(manifest(f"p{c}"), key).to_dict() for _ in range(PER_CLIENT)]
        for c in range(CLIENTS)
    ]

    ports = [free_port(), free_port()]
    servers = [
        start_serve(home, pg_url, port=p, log=tmp_path / f"serve-{i}.log")
        for i, p in enumerate(ports)
    ]
    try:

        def client(c: int) -> list[tuple[str, int, dict[str, Any]]]:
            acked: list[tuple[str, int, dict[str, Any]]] = []
            clients = [
                httpx.Client(
                    base_url=f"http://127.0.0.1:{p}",
                    headers={"Authorization": f"Bearer {tokens['pipeline']}"},
                    timeout=120,
                )
                for p in ports
            ]
            try:
                for i, env in enumerate(work[c]):
                    r = clients[(c + i) % 2].post("/v1/entries", json=env)
                    assert r.status_code == 201, r.text
                    body = r.json()
                    acked.append((body["entry"]["leaf_hash"], body["entry"]["index"], body))
                # the same envelope again, to the other server: the existing entry
                again = clients[(c + 1) % 2].post("/v1/entries", json=work[c][0])
                assert again.status_code == 200, again.text
                assert again.json()["entry"]["index"] == acked[0][1]
            finally:
                for h in clients:
                    h.close()
            return acked

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [a for batch in pool.map(client, range(CLIENTS)) for a in batch]
    finally:
        for proc in servers:
            stop(proc)

    assert len(results) == CLIENTS * PER_CLIENT
    with Ledger.open(settings) as ledger:
        report = ledger.verify()
        assert report.ok, report.to_dict()
        size = ledger.size()
        stored = ledger.entries(limit=size + 10)
        verifier = ledger.verifier_key()
    assert [e.index for e in stored] == list(range(size))  # one tree, no gaps
    # the leaves, recomputed from the stored bytes by RFC 9162 reference code
    leaves = [ref_leaf_hash(e.envelope) for e in stored]
    assert [e.leaf_hash for e in stored] == [h.hex() for h in leaves]
    counts = Counter(e.leaf_hash for e in stored)
    by_hash = {e.leaf_hash: e.index for e in stored}
    for leaf_hash, index, body in results:
        assert counts[leaf_hash] == 1  # every acknowledged entry exactly once
        assert by_hash[leaf_hash] == index
        cp = verify_checkpoint(body["checkpoint"]["note"], verifier)
        proof = [bytes.fromhex(h) for h in body["inclusion_proof"]["hashes"]]
        assert merkle.verify_inclusion(bytes.fromhex(leaf_hash), index, cp.size, proof, cp.root)
        assert cp.root == ref_mth(leaves[: cp.size])
        assert ref_verify_inclusion(index, cp.size, leaves[index], proof, cp.root)
    # 1 key event from init + every posted envelope, nothing else
    assert size == 1 + CLIENTS * PER_CLIENT
    logs = "".join((tmp_path / f"serve-{i}.log").read_text() for i in range(2))
    assert "by 'test-pipeline' (pipeline" in logs
