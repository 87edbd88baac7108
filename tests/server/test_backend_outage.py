"""A worker whose database is down (a silent host: each connection attempt waits for the
connect timeout) must answer 503 at once to the requests that queue behind an attempt,
not try again for each one in turn: with ``connect_timeout`` 10 s, the tenth request
waiting on the lock would otherwise be answered after 100 s, and the thread pool fill up.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from escrow.errors import DatabaseUnavailable
from escrow.server import app as appmod


def test_requests_during_an_outage_share_one_connection_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from escrow.ledger import store

    attempts: list[float] = []

    def slow_failure(settings: Any, create: bool = True) -> Any:
        attempts.append(time.monotonic())
        time.sleep(0.5)  # the connect timeout of a host that drops packets
        raise DatabaseUnavailable("Cannot connect to the ledger database.")

    monkeypatch.setattr(
        store.Ledger, "open", classmethod(lambda cls, s, create=True: slow_failure(s, create))
    )
    fake_app = SimpleNamespace(state=SimpleNamespace())
    cfg = SimpleNamespace(settings=SimpleNamespace(db_url="postgresql://x/y"), pack_workers=0)
    backend = appmod._Backend(fake_app, cfg)  # type: ignore[arg-type]

    errors: list[BaseException] = []

    def request() -> None:
        try:
            backend.ready()
        except DatabaseUnavailable as e:
            errors.append(e)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 6
    assert len(attempts) == 1, f"{len(attempts)} connection attempts, one after another"
    # right after a failure, a request is answered without a new attempt too
    with pytest.raises(DatabaseUnavailable):
        backend.ready()
    assert len(attempts) == 1


@pytest.mark.parametrize("where", ["not-connected", "token-lookup"])
def test_a_change_request_during_an_outage_is_refused_before_its_body(where: str) -> None:
    """A worker that could not connect has no token store: the guard let the request in,
    and the route read the whole body before answering 503."""
    import anyio

    from escrow.server.http import GuardMiddleware

    def down(*_: Any) -> None:
        raise DatabaseUnavailable("Cannot connect to the ledger database at postgresql://x/y.")

    state = SimpleNamespace(
        backend=SimpleNamespace(ready=down),
        tokens=None if where == "not-connected" else SimpleNamespace(resolve=down),
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/entries",
        "headers": [(b"authorization", b"Bearer esc_some-token")],
        "app": SimpleNamespace(state=state),
    }

    refused = anyio.run(GuardMiddleware._refused_token, scope, {})

    assert refused is not None and refused.status == 503
    assert "postgresql://" not in refused.message
    assert refused.headers == {"Retry-After": "5"}
