"""The audit line of a changing request is logged before its answer leaves the server.

It used to be logged once the whole answer had been sent, so a client (or a test reading
the log right after its request) could see the answer before the line existed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from escrow.server.http import GuardMiddleware

#: a bearer token (the middleware refuses a change without one before the app runs)
_TOKEN = [(b"authorization", b"Bearer esc_test")]


def _run(status: int, audit: str, caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    """Drive the middleware over a tiny app; record, per message sent, how many audit
    lines had been logged by then."""
    seen: list[tuple[str, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["audit"] = audit
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        lines = [r for r in caplog.records if r.name == "escrow.server"]
        seen.append((message["type"], len(lines)))

    scope = {"type": "http", "method": "POST", "path": "/v1/entries", "headers": _TOKEN}
    asyncio.run(GuardMiddleware(app, max_body=1 << 20)(scope, receive, send))
    return seen


def test_the_line_is_logged_before_the_answer_starts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="escrow.server")
    seen = _run(201, "appended 7", caplog)
    assert seen == [("http.response.start", 1), ("http.response.body", 1)]
    lines = [r.getMessage() for r in caplog.records if r.name == "escrow.server"]
    assert lines == ["POST /v1/entries -> 201 by no valid token: appended 7"]


def test_an_app_that_fails_before_answering_is_logged_once_as_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="escrow.server")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent")

    scope = {"type": "http", "method": "DELETE", "path": "/v1/tokens/x", "headers": _TOKEN}
    with pytest.raises(RuntimeError):
        asyncio.run(GuardMiddleware(app, max_body=1 << 20)(scope, receive, send))
    lines = [r.getMessage() for r in caplog.records if r.name == "escrow.server"]
    assert lines == ["DELETE /v1/tokens/x -> 500 by no valid token"]
