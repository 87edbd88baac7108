"""Every /v1 route refuses a query parameter it does not take, rather than ignoring it."""

from __future__ import annotations

from server_helpers import LiveServer


def test_a_post_with_an_unknown_query_parameter_appends_nothing(live_server: LiveServer) -> None:
    env = live_server.envelope()
    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        r = c.post("/v1/entries", params={"dry_run": "1"}, json=env)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "dry_run"
        assert r.json()["location"] == "query"
        assert "takes: no query parameters" in r.json()["message"]
        assert c.get("/v1/checkpoint").json()["size"] == size0
        # without it, the same envelope is appended
        assert c.post("/v1/entries", json=env).status_code == 201


def test_reads_refuse_parameters_they_would_ignore(live_server: LiveServer) -> None:
    with live_server.client("auditor") as c:
        # the latest checkpoint is not the one "at tree_size 1": say so, do not answer it
        r = c.get("/v1/checkpoint", params={"tree_size": "1"})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "tree_size"
        for path in ("/v1/entries/0", "/v1/keys", "/v1/packs/" + "0" * 32):
            r = c.get(path, params={"verbose": "1"})
            assert r.status_code == 422, (path, r.text)
            assert r.json()["field"] == "verbose"
        # declared parameters still work
        assert c.get("/v1/entries/0/proof", params={"tree_size": "1"}).status_code == 200
        assert c.get("/v1/entries", params={"limit": "1"}).status_code == 200
    with live_server.client("admin") as c:
        r = c.get("/v1/tokens", params={"active": "1"})
        assert r.status_code == 422, r.text
    with live_server.client() as c:  # no token: 401 first, as before
        assert c.get("/v1/checkpoint", params={"tree_size": "1"}).status_code == 401
