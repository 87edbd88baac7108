"""JSON nested deeper than Python's parser recurses is bad input (422), not a server crash."""

from __future__ import annotations

import base64
import json

from server_helpers import LiveServer

DEEP = "[" * 50_000 + "]" * 50_000  # within the test server's body limit


def test_a_deeply_nested_body_or_payload_is_a_422(live_server: LiveServer) -> None:
    envelope = {
        "payload": base64.b64encode(DEEP.encode()).decode(),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"keyid": "ab", "sig": "YWJj"}],
    }
    with live_server.client("pipeline") as c:
        r = c.post("/v1/entries", content=DEEP, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["message"] == "The request body is nested too deeply."
        r = c.post("/v1/entries", content=json.dumps(envelope))
        assert r.status_code == 422, r.text
        assert r.json()["message"] == "The envelope's payload is not JSON."
        assert c.get("/healthz").status_code == 200
