"""GET /v1/entries reads its filters as `escrow log` does: a signer's unique prefix, and a
422 naming the parameter (never a silently empty page) for a bad diff ID or signer, since
after until, a parameter given twice, or an offset whose + the query string made a space."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import LiveServer, manifest


def _post(server: LiveServer, project: str = "alpha") -> dict[str, Any]:
    with server.client("pipeline") as c:
        r = c.post("/v1/entries", json=server.envelope(manifest(project)))
        assert r.status_code == 201, r.text
        entry: dict[str, Any] = r.json()["entry"]
        return entry


def _invalid(r: httpx.Response, field: str) -> str:
    assert r.status_code == 422, r.text
    err = r.json()
    assert (err["error"], err["location"], err["field"]) == ("invalid", "query", field)
    message: str = err["message"]
    return message


def test_signer_takes_a_unique_prefix_as_escrow_log_does(live_server: LiveServer) -> None:
    entry = _post(live_server)
    keyid = entry["signer"]
    with live_server.client("auditor") as c:
        for given in (keyid, keyid[:16], keyid[:16].upper()):
            r = c.get("/v1/entries", params={"signer": given})
            assert r.status_code == 200, r.text
            assert [e["index"] for e in r.json()["entries"]] == [entry["index"]], given
        # the log key, which signs key events, by its prefix too
        log_keyid = c.get("/v1/entries/0").json()["signer"]
        r = c.get("/v1/entries", params={"signer": log_keyid[:16]})
        assert [e["index"] for e in r.json()["entries"]] == [0]


@pytest.mark.parametrize(
    ("signer", "says"),
    [("zz", "not a key ID"), ("0" * 65, "not a key ID"), ("ffffffffffff", "No key ID")],
)
def test_a_signer_that_names_no_key_is_a_422(
    live_server: LiveServer, signer: str, says: str
) -> None:
    _post(live_server)
    with live_server.client("auditor") as c:
        assert says in _invalid(c.get("/v1/entries", params={"signer": signer}), "signer")


def test_a_diff_id_that_is_not_one_is_a_422(live_server: LiveServer) -> None:
    _post(live_server)
    with live_server.client("auditor") as c:
        message = _invalid(c.get("/v1/entries", params={"diff_id": "layer1"}), "diff_id")
        assert "'layer1'" in message


def test_since_after_until_is_a_422(live_server: LiveServer) -> None:
    with live_server.client("auditor") as c:
        r = c.get("/v1/entries", params={"since": "2026-12-06", "until": "2026-12-01"})
        assert "is after until" in _invalid(r, "since")
        # the same day is a day, not an empty range
        r = c.get("/v1/entries", params={"since": "2026-12-01", "until": "2026-12-01"})
        assert r.status_code == 200, r.text


def test_a_parameter_given_twice_is_a_422(live_server: LiveServer) -> None:
    _post(live_server, "alpha")
    with live_server.client("auditor") as c:
        r = c.get("/v1/entries?project=alpha&project=beta")
        assert "more than once" in _invalid(r, "project")


def test_an_offset_whose_plus_became_a_space_says_so(live_server: LiveServer) -> None:
    with live_server.client("auditor") as c:
        r = c.get("/v1/entries?since=2026-12-05T11:48:27+01:00")  # + unencoded
        assert "%2B" in _invalid(r, "since")
        r = c.get("/v1/entries?since=2026-12-05T11:48:27%2B01:00")
        assert r.status_code == 200, r.text


def test_the_client_answers_an_empty_range_as_the_local_ledger_does(
    live_server: LiveServer, tmp_path: Path
) -> None:
    from escrow.server.client import RemoteLedger

    _post(live_server)
    since, until = datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    with live_server.ledger() as local:
        assert local.entries(since=since, until=until) == []
    token = live_server.tokens["auditor"]
    with RemoteLedger(live_server.url, token, home=tmp_path / "client") as remote:
        assert remote.entries(since=since, until=until) == []
