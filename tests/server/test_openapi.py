"""The OpenAPI document names the statuses the routes really answer: 503 (the database
unavailable) on every /v1 route, 415 on POST /v1/entries, and no 404 on POST /v1/keys."""

from __future__ import annotations

from server_helpers import LiveServer


def test_the_documented_statuses_are_the_real_ones(live_server: LiveServer) -> None:
    with live_server.client() as c:
        doc = c.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert "503" in op["responses"], (method, path)
    assert "415" in doc["paths"]["/v1/entries"]["post"]["responses"]
    assert "404" not in doc["paths"]["/v1/keys"]["post"]["responses"]
    assert "404" in doc["paths"]["/v1/keys/{keyid}/revoke"]["post"]["responses"]
