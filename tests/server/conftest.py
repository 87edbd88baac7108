"""Server fixtures: a real Uvicorn server on a loopback port, over a fresh ledger.

``live_server`` serves the ledger of the ``escrow_home`` fixture (SQLite) from a
thread of the test process, so its log lines reach ``caplog``; the
PostgreSQL tests start real ``escrow serve`` processes instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import SMALL_LIMIT, LiveServer, free_socket, make_tokens


@pytest.fixture
def live_server(escrow_home: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """``escrow_home``'s ledger served on 127.0.0.1 (body limit 256 KiB).

    No pack rendering unless parametrised indirectly with the number of pack workers.
    """
    import uvicorn

    from escrow.config import load_settings
    from escrow.server.app import ServerConfig, create_app

    settings = load_settings()
    pack_workers = int(getattr(request, "param", 0))
    app = create_app(ServerConfig(settings, max_body=SMALL_LIMIT, pack_workers=pack_workers))
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("The test server did not start.")
        time.sleep(0.02)
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{port}",
            home=escrow_home,
            settings=settings,
            tokens=make_tokens(settings),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
