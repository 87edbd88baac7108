"""Through a server, reads and appends wait out a short outage (503 with Retry-After: the
server's database restarting); requests that must not run twice (a pack job) are not tried
again, and a server that cannot be reached at all is reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from escrow.server import client as client_mod
from escrow.server.client import RemoteLedger, ServerUnavailable


def _ledger(tmp_path: Path, answers: list[Any], seen: list[str]) -> RemoteLedger:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0) if answers else 200
        if isinstance(answer, Exception):
            raise answer
        if answer == 503:
            return httpx.Response(
                503,
                json={"error": "unavailable", "message": "The ledger database is unavailable."},
                headers={"Retry-After": "0"},
            )
        return httpx.Response(200, json={"ok": True})

    return RemoteLedger(
        "http://escrow.test:8080", "tok", home=tmp_path, transport=httpx.MockTransport(handle)
    )


def test_a_read_waits_out_503s(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    lg = _ledger(tmp_path, [503, 503, 503, 200], seen)

    assert lg._request("GET", "/v1/checkpoint") == {"ok": True}

    assert seen == ["GET /v1/checkpoint"] * 4
    assert capsys.readouterr().err.count("is unavailable for now; trying again") == 1


def test_a_server_that_cannot_be_reached_is_reported_at_once(tmp_path: Path) -> None:
    seen: list[str] = []
    lg = _ledger(tmp_path, [httpx.ConnectError("connection refused"), 200], seen)

    with pytest.raises(ServerUnavailable, match="Cannot reach"):
        lg._request("GET", "/v1/checkpoint")
    assert seen == ["GET /v1/checkpoint"]


def test_an_append_is_tried_again_a_pack_request_is_not(tmp_path: Path) -> None:
    seen: list[str] = []
    lg = _ledger(tmp_path, [503, 200, 503], seen)
    lg._checkpoint = object()  # type: ignore[assignment] # trusted already: no checkpoint first

    assert lg._request("POST", "/v1/entries", json={}) == {"ok": True}
    with pytest.raises(ServerUnavailable, match="answered 503"):
        lg._request("POST", "/v1/packs", json={})

    assert seen == ["POST /v1/entries", "POST /v1/entries", "POST /v1/packs"]


def test_the_retries_stop_after_their_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "RETRY_FOR_S", 0.0)
    seen: list[str] = []
    lg = _ledger(tmp_path, [503] * 50, seen)

    with pytest.raises(ServerUnavailable, match="The ledger database is unavailable"):
        lg._request("GET", "/v1/checkpoint")
    assert seen == ["GET /v1/checkpoint"]
