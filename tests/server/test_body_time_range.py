"""A time in a request body that UTC cannot hold (year 1 with a positive offset, year 9999
with a negative one) is a 422 naming the body member by its JSON Pointer, as every other
bad body member is, not a "query parameter" that the request does not have."""

from __future__ import annotations

import pytest
from server_helpers import LiveServer

EARLY = "0001-01-01T00:00:00+05:00"
LATE = "9999-12-31T23:59:59-05:00"


@pytest.mark.parametrize(
    ("body", "member"),
    [
        ({"since": EARLY}, "since"),
        ({"until": LATE}, "until"),
        ({"since": "2026-01-01", "until": LATE}, "until"),
    ],
)
def test_a_pack_time_out_of_range_names_the_body_member(
    live_server: LiveServer, body: dict[str, str], member: str
) -> None:
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["location"] == "body"
    assert err["pointer"] == f"/{member}"
    assert err["field"] is None
    assert err["message"] == (
        f"The request body is invalid at /{member}: the time is outside the years 1 to 9999 in UTC."
    )


def test_a_retire_time_out_of_range_names_the_body_member(live_server: LiveServer) -> None:
    keyid = live_server.build_key().public.keyid
    with live_server.client("admin") as c:
        r = c.post(f"/v1/keys/{keyid}/retire", json={"effective_from": LATE})
    assert r.status_code == 422, r.text
    err = r.json()
    assert (err["location"], err["pointer"], err["field"]) == ("body", "/effective_from", None)
    assert "outside the years 1 to 9999" in err["message"]
