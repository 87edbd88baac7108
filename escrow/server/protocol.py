"""Uvicorn's HTTP protocol with a deadline for receiving each request.

Uvicorn has no timeout for a request on its way in: its keep-alive timer runs only
between requests and stops at the first byte of the next one, so a client that sends
its headers or its body a byte now and then holds its connection — one of the
``--max-connections`` a worker serves — for as long as it likes, and ASGI middleware
cannot help, since the application sees a request only once its headers are in.
:class:`DeadlineHTTPProtocol` (``escrow serve`` hands it to Uvicorn) gives every
request ``ESCROW_SERVER_REQUEST_TIMEOUT`` seconds from its first byte (or from the
connection, for the first request) until its body is in whole; a request still
arriving then gets a JSON 408 and its connection is closed.  Answers, however long
they take (a pack's PDF), are not limited.

The connection is closed in stages, as RFC 9112 §9.6 asks of a server that closes
while a client may still be sending: the 408 is written and the sending side shut,
and what the client sends after it is read and dropped for up to :data:`LINGER_S`
seconds (or until the client closes).  Closed at once, the server's kernel answers
the client's next byte with a reset, and a reset makes the client's kernel drop the
408 it has received but not yet read: the client saw only "connection reset".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger("escrow.server")

DEFAULT_REQUEST_TIMEOUT = 60.0
#: how long a timed-out connection is kept half-open, its input dropped, after the 408
LINGER_S = 2.0


def request_timeout() -> float:
    """The seconds a request may take to arrive (``ESCROW_SERVER_REQUEST_TIMEOUT``)."""
    try:
        value = float(os.environ.get("ESCROW_SERVER_REQUEST_TIMEOUT") or DEFAULT_REQUEST_TIMEOUT)
    except ValueError:
        return DEFAULT_REQUEST_TIMEOUT
    return value if value > 0 else DEFAULT_REQUEST_TIMEOUT


def timeout_answer(seconds: float) -> bytes:
    """The whole HTTP/1.1 408 answer, with escrow's JSON error body."""
    body = json.dumps(
        {
            "error": "request_timeout",
            "message": f"The request did not arrive in whole within {seconds:g} s.",
            "location": None,
            "pointer": None,
            "field": None,
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class DeadlineHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """Uvicorn's HTTP/1.1 protocol, closing a connection whose request does not arrive in
    whole within :func:`request_timeout` seconds (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeout = request_timeout()
        self._deadline: asyncio.TimerHandle | None = None
        self._before: Any = None  # the request cycle that was current when the deadline began
        self._closing: asyncio.TimerHandle | None = None  # set once the 408 is out

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._closing is not None:
            return  # timed out: the 408 is out, what follows is dropped
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on this connection
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle is not self._before and not cycle.more_body:
            self._disarm()  # this request is in, body and all

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._closing is not None:
            self._closing.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._before = self.cycle
        self._deadline = self.loop.call_later(self._timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle is not self._before and cycle.response_started
        where = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "closed the connection of %s: its request did not arrive within %g s",
            where,
            self._timeout,
        )
        if answering or not self.transport.can_write_eof():
            self.transport.close()  # an answer begun is cut short: no 408 to protect
            return
        self.transport.write(timeout_answer(self._timeout))  # say why it is closed
        self.transport.write_eof()
        self._closing = self.loop.call_later(LINGER_S, self.transport.close)
