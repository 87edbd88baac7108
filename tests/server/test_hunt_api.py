"""What a misbehaving client meets at the API: a time given as a number or a compact date,
an index given as true or "5", a JSON body without a Content-Type, duplicate members in a
JSON object, a query string that is not UTF-8 — each a JSON 4xx naming the bad value, or
read as the CLI reads it, never silently something else."""

from __future__ import annotations

from typing import Any

import pytest
from server_helpers import LiveServer, manifest

JSON = {"Content-Type": "application/json"}


def _jobs(live_server: LiveServer) -> int:
    from sqlmodel import Session, select

    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJob

    engine = make_engine(live_server.settings.db_url)
    try:
        with Session(engine) as s:
            return len(s.exec(select(PackJob)).all())
    finally:
        engine.dispose()


def _one_build(live_server: LiveServer) -> int:
    with live_server.client("pipeline") as c:
        r = c.post("/v1/entries", json=live_server.envelope(manifest("alpha")))
        assert r.status_code == 201, r.text
        index: int = r.json()["entry"]["index"]
        return index


@pytest.mark.parametrize(
    ("member", "value", "words"),
    [
        ("since", 0, "not a number"),
        ("since", 1700000000, "not a number"),
        ("until", 1.5e9, "not a number"),
        ("since", True, "not true or false"),
        ("until", ["2024-01-01"], "not a list or an object"),
        ("since", "0", "is not a date or an RFC 3339 time"),
        ("until", "1700000000", "is not a date or an RFC 3339 time"),
    ],
)
def test_a_pack_time_is_never_read_as_seconds_since_1970(
    live_server: LiveServer, member: str, value: Any, words: str
) -> None:
    _one_build(live_server)
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", json={member: value})
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["pointer"] == f"/{member}"
    assert words in err["message"]
    assert "Value error" not in err["message"]
    assert _jobs(live_server) == 0


def test_a_compact_date_in_a_pack_request_means_that_day_as_in_escrow_pack(
    live_server: LiveServer,
) -> None:
    _one_build(live_server)
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", json={"since": "20240101", "until": "20991231"})
    assert r.status_code == 202, r.text
    scope = r.json()["scope"]
    assert scope["since"] == "2024-01-01T00:00:00Z"  # not 1970-08-23, 20240101 seconds in
    assert scope["until"] == "2100-01-01T00:00:00Z"  # the whole last day, as a bare date


def test_a_key_is_never_retired_as_of_a_number_of_seconds(live_server: LiveServer) -> None:
    with live_server.client("admin") as c:
        keyid = c.get("/v1/keys").json()["keys"][0]["keyid"]
        size = c.get("/v1/checkpoint").json()["size"]
        for value in (0, 1700000000, "0"):
            r = c.post(f"/v1/keys/{keyid}/retire", json={"effective_from": value})
            assert r.status_code == 422, r.text
            assert r.json()["pointer"] == "/effective_from"
        assert c.get("/v1/checkpoint").json()["size"] == size  # no key event appended
        assert c.get("/v1/keys").json()["keys"][0]["status"] == "active"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"entries": [True]}, "/entries/0"),
        ({"entries": ["1"]}, "/entries/0"),
        ({"entries": [1.0]}, "/entries/0"),
        ({"tree_size": True}, "/tree_size"),
        ({"tree_size": "2"}, "/tree_size"),
        ({"tree_size": 2.0}, "/tree_size"),
    ],
)
def test_a_pack_index_must_be_a_json_integer(
    live_server: LiveServer, body: dict[str, Any], pointer: str
) -> None:
    _one_build(live_server)
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["pointer"] == pointer
    assert "valid integer" in r.json()["message"]
    assert _jobs(live_server) == 0


def test_a_json_body_without_a_content_type_is_read_as_json_on_every_route(
    live_server: LiveServer,
) -> None:
    index = _one_build(live_server)
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", content=f'{{"entries": [{index}]}}'.encode())
        assert "content-type" not in r.request.headers
        assert r.status_code == 202, r.text
        assert r.json()["scope"]["entries"] == [index]
    with live_server.client("admin") as c:
        r = c.post("/v1/tokens", content=b'{"name": "no-content-type", "role": "auditor"}')
        assert r.status_code == 201, r.text
        # not JSON, and no Content-Type: the body is named as not JSON
        r = c.post("/v1/tokens", content=b"name=x&role=auditor")
        assert r.status_code == 422, r.text
        assert r.json()["message"].startswith("The request body is not valid JSON")


@pytest.mark.parametrize("media", ["text/json", "text/x+json"])
def test_json_under_another_main_type_is_refused_as_such(
    live_server: LiveServer, media: str
) -> None:
    with live_server.client("admin") as c:
        r = c.post(
            "/v1/tokens",
            content=b'{"name": "text-json", "role": "auditor"}',
            headers={"Content-Type": media},
        )
        assert r.status_code == 415, r.text
        assert r.json()["field"] == "Content-Type"
        assert media in r.json()["message"]
    with live_server.client("pipeline") as c:  # the hand-read route says the same
        r = c.post(
            "/v1/entries",
            json=live_server.envelope(),
            headers={"Content-Type": media},
        )
        assert r.status_code == 415, r.text


@pytest.mark.parametrize(
    ("role", "path", "body", "pointer"),
    [
        ("auditor", "/v1/packs", b'{"projects": ["alpha"], "projects": ["nope"]}', "/projects"),
        ("admin", "/v1/tokens", b'{"name": "twice", "role": "auditor", "role": "admin"}', "/role"),
        ("pipeline", "/v1/entries", b'{"envelopes": [{"payload": "a", "payload": "b"}]}', None),
        ("admin", "/v1/keys/abcd/retire", b'{"reason": "a", "x": {"k": 1, "k": 2}}', "/x/k"),
    ],
)
def test_a_json_body_giving_a_member_twice_is_refused_naming_it(
    live_server: LiveServer, role: str, path: str, body: bytes, pointer: str | None
) -> None:
    with live_server.client(role) as c:
        r = c.post(path, content=body, headers=JSON)
        assert r.status_code == 422, r.text
        err = r.json()
        expected = pointer or "/envelopes/0/payload"
        assert err["pointer"] == expected
        assert err["location"] == "body"
        assert err["message"] == (
            f"The request body gives the member {expected} more than once; give it once."
        )
        assert all(t["name"] != "twice" for t in c.get("/v1/tokens").json().get("tokens", []))
    assert _jobs(live_server) == 0


def test_a_duplicate_member_before_deep_nesting_is_named_as_nested_too_deeply(
    live_server: LiveServer,
) -> None:
    deep = b'{"a": 1, "a": 2, "b": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    for role, path in (("auditor", "/v1/packs"), ("pipeline", "/v1/entries")):
        with live_server.client(role) as c:
            r = c.post(path, content=deep, headers=JSON)
            assert r.status_code == 422, r.text
            assert r.json()["message"] == "The request body is nested too deeply."


def test_a_number_of_too_many_digits_is_named_without_python_advice(
    live_server: LiveServer,
) -> None:
    huge = b"1" + b"0" * 5000
    for role, path, body in (
        ("auditor", "/v1/packs", b'{"tree_size": ' + huge + b"}"),
        ("pipeline", "/v1/entries", b'{"payload": ' + huge + b"}"),
    ):
        with live_server.client(role) as c:
            r = c.post(path, content=body, headers=JSON)
            assert r.status_code == 422, r.text
            message = r.json()["message"]
            assert message.startswith("The request body has a number of more than ")
            assert "sys." not in message


@pytest.mark.parametrize("query", ["project=pr%F8jekt", "project=%FF%FE", "project=%ED%A0%80"])
def test_a_query_string_that_is_not_utf8_is_refused_not_matched_as_u_fffd(
    live_server: LiveServer, query: str
) -> None:
    with live_server.client("auditor") as c:
        r = c.get(f"/v1/entries?{query}")
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "project"
        assert "UTF-8" in r.json()["message"]
        # the same name as UTF-8 is fine
        r = c.get("/v1/entries?project=pr%C3%B8jekt")
        assert r.status_code == 200, r.text
        assert r.json()["entries"] == []


def test_a_utf8_project_name_in_a_query_matches_it(live_server: LiveServer) -> None:
    with live_server.client("pipeline") as c:
        r = c.post("/v1/entries", json=live_server.envelope(manifest("prøjekt-日本")))
        assert r.status_code == 201, r.text
        found = c.get("/v1/entries", params={"project": "prøjekt-日本"}).json()["entries"]
        assert [e["project"] for e in found] == ["prøjekt-日本"]


@pytest.mark.parametrize("note", ["", "garbage", "origin\n1\nroot\n\n— key AAAA\n"])
def test_a_since_checkpoint_that_is_no_checkpoint_note_is_refused_before_it_is_queued(
    live_server: LiveServer, note: str
) -> None:
    _one_build(live_server)
    with live_server.client("auditor") as c:
        r = c.post("/v1/packs", json={"since_checkpoint": note})
        assert r.status_code == 422, r.text
        err = r.json()
        assert err["pointer"] == "/since_checkpoint"
        assert err["message"].startswith("since_checkpoint is not a checkpoint note: ")
        # a checkpoint this server gave is taken
        note = c.get("/v1/checkpoint").json()["note"]
        r = c.post("/v1/packs", json={"since_checkpoint": note})
        assert r.status_code == 202, r.text
    assert _jobs(live_server) == 1
