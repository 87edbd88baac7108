"""POST /v1/entries refuses a body sent as another media type with the 415 the other
POST routes give, and names a missing body as they do; nothing is appended."""

from __future__ import annotations

import json

import pytest
from server_helpers import LiveServer


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/x-ndjson"]
)
def test_an_envelope_sent_as_another_media_type_is_a_415(
    live_server: LiveServer, content_type: str
) -> None:
    body = json.dumps(live_server.envelope())
    with live_server.client("pipeline") as c:
        size = c.get("/healthz").json()["size"]
        r = c.post("/v1/entries", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 415, r.text
        err = r.json()
        assert (err["error"], err["location"], err["field"]) == (
            "unsupported_media_type",
            "header",
            "Content-Type",
        )
        assert content_type in err["message"]
        assert c.get("/healthz").json()["size"] == size
        # as JSON (here a +json type) it is appended
        ok = c.post(
            "/v1/entries",
            content=body,
            headers={"Content-Type": "application/vnd.in-toto+json; charset=utf-8"},
        )
        assert ok.status_code == 201, ok.text


def test_a_missing_body_is_named_as_on_the_other_routes(live_server: LiveServer) -> None:
    with live_server.client("pipeline") as c:
        r = c.post("/v1/entries", headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["message"] == "POST /v1/entries needs a JSON object as its request body."
    assert r.json()["pointer"] == ""
