"""A server's 408 (the request did not reach it within its `--request-timeout`: a slow
network) is an environment problem for the CLI — exit 3, naming the server — as an
unreachable server is, not a usage error (exit 2)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from httpkit import loopback_server

from escrow.server.protocol import timeout_answer


class TimesOut(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        self.wfile.write(timeout_answer(60))
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


def test_a_408_is_exit_3_naming_the_server(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESCROW_TOKEN", "escrow_x")
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    with loopback_server(TimesOut) as address:
        monkeypatch.setenv("ESCROW_SERVER", f"http://{address}")
        r = cli(["log"])

    assert r.exit_code == 3, r.stderr
    assert (
        f"The escrow server http://{address} answered 408: The request did not arrive in "
        "whole within 60 s." in r.stderr
    )
