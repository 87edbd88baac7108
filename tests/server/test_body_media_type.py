"""A JSON body sent as a form (`curl -d`) or no body at all gets an error that says so."""

from __future__ import annotations

import json

from server_helpers import LiveServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_json_body_sent_as_a_form_is_named_as_such(live_server: LiveServer) -> None:
    body = json.dumps({"name": "ci-form", "role": "pipeline"})
    with live_server.client("admin") as c:
        r = c.post("/v1/tokens", content=body, headers=FORM)
        assert r.status_code == 415, r.text
        err = r.json()
        assert err["error"] == "unsupported_media_type"
        assert err["field"] == "Content-Type"
        assert "application/x-www-form-urlencoded" in err["message"]
        assert "Content-Type: application/json" in err["message"]
        assert all(t["name"] != "ci-form" for t in c.get("/v1/tokens").json()["tokens"])
        # the same body as JSON is accepted (with a charset too)
        ok = c.post(
            "/v1/tokens",
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert ok.status_code == 201, ok.text
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", content="{}", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415, r.text
        assert "text/plain" in r.json()["message"]


def test_a_missing_body_is_named_as_such(live_server: LiveServer) -> None:
    with live_server.client("admin") as c:
        r = c.post("/v1/tokens", headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["message"] == "POST /v1/tokens needs a JSON object as its request body."
        assert r.json()["pointer"] == ""
        # a field missing inside a body is still named by its pointer
        r = c.post("/v1/tokens", json={"name": "x"})
        assert r.status_code == 422, r.text
        assert r.json()["pointer"] == "/role"
