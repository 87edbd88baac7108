"""`escrow serve` as a process: several workers on one SQLite ledger, the body limit option."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import free_port, make_tokens, manifest, start_serve, stop

pytestmark = pytest.mark.slow


def test_serve_with_workers_and_a_body_limit(escrow_home: Path, tmp_path: Path) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    tokens = make_tokens(settings)
    key = SigningKey.load(settings.key_path)
    envs = [sign_statement(manifest(), key).to_dict() for _ in range(24)]
    port = free_port()
    proc = start_serve(
        escrow_home,
        settings.db_url,
        port=port,
        log=tmp_path / "serve.log",
        extra=["--workers", "2", "--max-body", "20000", "--no-packs"],
    )
    try:
        headers = {"Authorization": f"Bearer {tokens['pipeline']}"}

        def post(env: dict[str, Any]) -> int:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/entries", json=env, headers=headers)
            assert r.status_code == 201, r.text
            return int(r.json()["entry"]["index"])

        with ThreadPoolExecutor(6) as pool:
            indexes = sorted(pool.map(post, envs))
        too_big = httpx.post(
            f"http://127.0.0.1:{port}/v1/entries", content=b"x" * 20001, headers=headers
        )
        assert too_big.status_code == 413
    finally:
        stop(proc)
    assert indexes == list(range(1, 25))
    with Ledger.open(settings) as ledger:
        assert ledger.verify().ok
        assert ledger.size() == 25
    log = (tmp_path / "serve.log").read_text()
    assert "log verifier key: escrow.local/ledger" in log  # the origin may have a suffix


def test_connections_beyond_the_limit_get_503(escrow_home: Path, tmp_path: Path) -> None:
    """No limit on concurrent connections: clients holding bodies open (each up to the body
    limit) could make one server hold unbounded memory. `--max-connections` caps them."""
    import socket
    import time

    from escrow.config import load_settings

    settings = load_settings()
    tokens = make_tokens(settings)
    port = free_port()
    proc = start_serve(
        escrow_home,
        settings.db_url,
        port=port,
        log=tmp_path / "serve.log",
        extra=["--max-connections", "4", "--no-packs"],
    )
    held: list[socket.socket] = []
    try:
        head = (
            f"POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {tokens['pipeline']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        ).encode()
        # slow clients, one after another (a body begun, never finished): once four are
        # held, the server is full and answers 503 (it counts its own connections, so a
        # held client may be refused too when others are closing)
        statuses: list[int] = []
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(head)
            held.append(sock)
            time.sleep(0.2)
            statuses.append(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code)
            if statuses[-1] == 503:
                break
        assert statuses[-1] == 503, statuses
    finally:
        for sock in held:
            sock.close()
        stop(proc)
