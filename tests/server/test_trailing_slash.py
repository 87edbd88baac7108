"""A path with a trailing slash is not redirected: it gets the JSON 404 every unknown path
gets, naming the path to use.

A 307 (FastAPI's ``redirect_slashes``) has an empty body, so ``curl`` without ``-L``
printed nothing and exited 0; its ``Location`` is an absolute ``http://`` URL built from
the request, which behind a TLS proxy downgrades to plain HTTP (a client following it
sends the bearer token there), and a POST was sent back for the client to repeat.
"""

from __future__ import annotations

import pytest
from server_helpers import LiveServer


@pytest.mark.parametrize(
    ("method", "path", "use"),
    [
        ("GET", "/v1/entries/", "/v1/entries"),
        ("GET", "/v1/entries/0/", "/v1/entries/0"),
        ("GET", "/v1/checkpoint/?x=1", "/v1/checkpoint"),
        ("GET", "/healthz/", "/healthz"),
        ("HEAD", "/healthz/", "/healthz"),
        ("POST", "/v1/entries/", "/v1/entries"),
        ("DELETE", "/v1/tokens/abc/", "/v1/tokens/abc"),
    ],
)
def test_a_trailing_slash_gets_a_404_naming_the_path(
    live_server: LiveServer, method: str, path: str, use: str
) -> None:
    with live_server.client("admin") as c:
        r = c.request(method, path, json={} if method == "POST" else None)
    assert r.status_code == 404, (r.status_code, r.headers)
    assert "location" not in r.headers
    if method != "HEAD":
        body = r.json()
        assert body["error"] == "not_found"
        bare = path.split("?")[0]
        assert body["message"] == (
            f"There is no resource at {bare}; use {use}, without the trailing slash."
        )


def test_an_unknown_path_with_a_slash_gets_the_plain_404(live_server: LiveServer) -> None:
    with live_server.client("admin") as c:
        r = c.get("/v1/nope/")
    assert r.status_code == 404
    assert r.json()["message"] == "There is no resource at /v1/nope/."


def test_the_paths_without_the_slash_still_answer(live_server: LiveServer) -> None:
    with live_server.client("admin") as c:
        assert c.get("/v1/entries").status_code == 200
        assert c.get("/v1/checkpoint").status_code == 200
        assert c.get("/healthz").status_code == 200
