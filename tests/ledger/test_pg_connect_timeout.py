"""A PostgreSQL host that never answers is a clear error after libpq's connect_timeout,
not a request (or an `escrow serve` worker) held for the system's TCP timeout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from escrow.config import load_settings
from escrow.errors import DatabaseUnavailable
from escrow.ledger import store


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port whose connections complete and then hear nothing, ever."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


def test_a_silent_postgresql_host_is_unavailable_after_the_connect_timeout(
    silent_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "PG_CONNECT_S", 1)
    url = f"postgresql+psycopg://escrow@127.0.0.1:{silent_server}/ledger"
    settings = load_settings(home=tmp_path / "home")._replace(db_url=url)
    outcome: list[BaseException | None] = []

    def open_it() -> None:
        try:
            store.Ledger.open(settings, create=False).close()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    t = threading.Thread(target=open_it, daemon=True)
    t.start()
    t.join(60)  # a guard against hanging forever, not a measure of speed
    assert not t.is_alive(), "opening the ledger still waits on the silent host"
    (error,) = outcome
    assert isinstance(error, DatabaseUnavailable), error
