"""HEAD works wherever GET does (RFC 9110 §9.3.2), and a 405's Allow names every method
the path takes, not only those of the first route at it."""

from __future__ import annotations

import pytest
from server_helpers import LiveServer


@pytest.mark.parametrize("path", ["/healthz", "/v1/entries?limit=1", "/v1/checkpoint"])
def test_head_answers_as_get_without_the_body(live_server: LiveServer, path: str) -> None:
    with live_server.client("pipeline") as c:
        get = c.get(path)
        head = c.head(path)
    assert get.status_code == 200, get.text
    assert head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == str(len(get.content))


def test_head_needs_the_same_token_as_get(live_server: LiveServer) -> None:
    with live_server.client() as c:
        r = c.head("/v1/entries")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/entries", "GET, HEAD, POST"),
        ("PUT", "/v1/keys", "GET, HEAD, POST"),
        ("DELETE", "/v1/entries/0", "GET, HEAD"),
        ("HEAD", "/v1/packs", "POST"),
    ],
)
def test_a_405_names_every_method_of_the_path(
    live_server: LiveServer, method: str, path: str, allow: str
) -> None:
    with live_server.client("admin") as c:
        r = c.request(method, path)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    if method != "HEAD":
        err = r.json()
        assert err["error"] == "method_not_allowed"
        assert err["message"] == f"{method} is not allowed on {path}; it takes {allow}."
