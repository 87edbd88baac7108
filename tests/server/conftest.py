"""Server fixtures: a real Uvicorn server on a loopback port, over a fresh ledger.

``live_server`` serves the ledger of the ``escrow_home`` fixture (SQLite) from a
thread of the test process, so its log lines reach ``caplog``; the
PostgreSQL tests start real ``escrow serve`` processes instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import SMALL_LIMIT, LiveServer, make_tokens, serving


@pytest.fixture
def live_server(escrow_home: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """``escrow_home``'s ledger served on 127.0.0.1 (body limit 256 KiB).

    No pack rendering unless parametrised indirectly with the number of pack workers.
    """
    from escrow.config import load_settings
    from escrow.server.app import ServerConfig, create_app

    settings = load_settings()
    pack_workers = int(getattr(request, "param", 0))
    app = create_app(ServerConfig(settings, max_body=SMALL_LIMIT, pack_workers=pack_workers))
    with serving(app) as url:
        yield LiveServer(url=url, home=escrow_home, settings=settings, tokens=make_tokens(settings))


@pytest.fixture
def client_env(live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A separate, empty ESCROW_HOME pointed at ``live_server``, with the pipeline's token
    and no pinned server key (the first answer pins it).  Tests that need another token
    or key set it over this one."""
    home = tmp_path / "client-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["pipeline"])
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    return home
