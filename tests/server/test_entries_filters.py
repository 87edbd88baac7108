"""GET /v1/entries takes the same filters as `escrow log`, and refuses the ones it does not know.

Unknown query parameters, short predicate names, image IDs with or without ``sha256:``,
and bare dates in ``since``/``until`` (``until`` includes the whole day, as with
``escrow log --until``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from server_helpers import LiveServer, manifest

BUILD_MANIFEST = "https://escrow.dev/build-manifest/v1"
IMAGE_ID = manifest()["predicate"]["image"]["id"]
DIFF_ID = manifest()["predicate"]["layers"][0]["diffId"]


def _post_builds(server: LiveServer, *projects: str) -> list[dict[str, Any]]:
    """Post one build manifest per project; the entries the server returned."""
    out = []
    with server.client("pipeline") as c:
        for project in projects:
            r = c.post("/v1/entries", json=server.envelope(manifest(project)))
            assert r.status_code == 201, r.text
            out.append(r.json()["entry"])
    return out


def _indexes(c: httpx.Client, **params: Any) -> list[int]:
    r = c.get("/v1/entries", params=params)
    assert r.status_code == 200, r.text
    return [e["index"] for e in r.json()["entries"]]


def _invalid(r: httpx.Response, field: str) -> dict[str, Any]:
    """The 422 JSON error body of ``r``, which must name the query parameter ``field``."""
    assert r.status_code == 422, r.text
    err: dict[str, Any] = r.json()
    assert err["error"] == "invalid"
    assert err["location"] == "query"
    assert err["field"] == field
    assert field in err["message"]
    return err


# -- unknown query parameters ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "unknown"),
    [
        ("/v1/entries", {"kind": "rebuild-verification"}, "kind"),
        ("/v1/entries", {"image": "3543c6a72824"}, "image"),
        ("/v1/entries", {"project": "alpha", "Project": "beta"}, "Project"),
        ("/v1/entries/0/proof", {"treesize": "1"}, "treesize"),
        ("/v1/consistency", {"old": "1", "newer": "1"}, "newer"),
    ],
)
def test_an_unknown_query_parameter_is_a_422_naming_it(
    live_server: LiveServer, path: str, params: dict[str, str], unknown: str
) -> None:
    _post_builds(live_server, "alpha")
    with live_server.client("auditor") as c:
        err = _invalid(c.get(path, params=params), unknown)
    if path == "/v1/entries":  # the message says what the endpoint does take
        assert "predicate_type" in err["message"]


@pytest.mark.parametrize(
    ("params", "meant"),
    [
        ({"kind": "key-event"}, "predicate_type"),
        ({"image": IMAGE_ID}, "image_id"),
        ({"projet": "a"}, "project"),
    ],
)
def test_an_unknown_query_parameter_suggests_the_one_meant(
    live_server: LiveServer, params: dict[str, str], meant: str
) -> None:
    with live_server.client("auditor") as c:
        err = _invalid(c.get("/v1/entries", params=params), next(iter(params)))
    assert f"Did you mean {meant!r}?" in err["message"]


def test_unknown_query_parameters_are_checked_after_the_token(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as anon:
        assert anon.get("/v1/entries", params={"kind": "build-manifest"}).status_code == 401
    with live_server.client("auditor") as c:
        assert c.get("/v1/entries", params={"limit": "5", "after": "0"}).status_code == 200


# -- predicate_type --------------------------------------------------------------


def test_predicate_type_takes_the_short_names_of_escrow_log_kind(live_server: LiveServer) -> None:
    builds = [e["index"] for e in _post_builds(live_server, "alpha", "beta")]
    with live_server.client("auditor") as c:
        everything = _indexes(c)
        key_events = [i for i in everything if i not in builds]
        assert key_events  # `escrow init` registered the build key
        assert _indexes(c, predicate_type="build-manifest") == builds
        assert _indexes(c, predicate_type=BUILD_MANIFEST) == builds
        assert _indexes(c, predicate_type="key-event") == key_events
        assert _indexes(c, predicate_type="rebuild-verification") == []
        assert _indexes(c, predicate_type="build-manifest", project="beta") == builds[1:]


@pytest.mark.parametrize("value", ["build", "https://escrow.dev/nothing/v1", "BUILD-MANIFEST"])
def test_an_unknown_predicate_type_is_a_422_listing_the_known_ones(
    live_server: LiveServer, value: str
) -> None:
    with live_server.client("auditor") as c:
        err = _invalid(c.get("/v1/entries", params={"predicate_type": value}), "predicate_type")
    assert "rebuild-verification" in err["message"]


# -- image_id and diff_id ----------------------------------------------------------


def test_image_id_with_or_without_sha256(live_server: LiveServer) -> None:
    builds = [e["index"] for e in _post_builds(live_server, "alpha")]
    hexpart = IMAGE_ID.removeprefix("sha256:")
    with live_server.client("auditor") as c:
        assert _indexes(c, image_id=IMAGE_ID) == builds
        assert _indexes(c, image_id=hexpart) == builds
        assert _indexes(c, image_id=hexpart.upper()) == builds
        assert _indexes(c, image_id="sha256:" + "0" * 64) == []


@pytest.mark.parametrize(
    "value", [IMAGE_ID.removeprefix("sha256:")[:12], IMAGE_ID[:19], "registry.local/team/app:1.4"]
)
def test_a_short_image_id_or_name_is_a_422_the_server_cannot_resolve(
    live_server: LiveServer, value: str
) -> None:
    _post_builds(live_server, "alpha")
    with live_server.client("auditor") as c:
        err = _invalid(c.get("/v1/entries", params={"image_id": value}), "image_id")
    assert "64 hex digits" in err["message"]
    assert "Docker Engine" in err["message"]


def test_diff_id_with_or_without_sha256(live_server: LiveServer) -> None:
    builds = [e["index"] for e in _post_builds(live_server, "alpha", "beta")]
    with live_server.client("auditor") as c:
        assert _indexes(c, diff_id=DIFF_ID) == builds
        assert _indexes(c, diff_id=DIFF_ID.removeprefix("sha256:")) == builds


# -- since and until ---------------------------------------------------------------


def test_a_bare_until_date_includes_that_whole_day(live_server: LiveServer) -> None:
    entry = _post_builds(live_server, "alpha")[0]
    day = entry["integrated_at"][:10]
    with live_server.client("auditor") as c:
        assert entry["index"] in _indexes(c, until=day)
        assert _indexes(c, since=day, until=day, project="alpha") == [entry["index"]]
        # a bare `since` date is that day's midnight, inclusive
        assert _indexes(c, since=day, project="alpha") == [entry["index"]]
        # an RFC 3339 `until` is still exclusive
        assert _indexes(c, until=entry["integrated_at"], project="alpha") == []
        assert _indexes(c, until=f"{day}T00:00:00Z", project="alpha") == []
        assert _indexes(c, until=f"{day}T23:59:59.999999+00:00", project="alpha") == [
            entry["index"]
        ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("since", "yesterday"),
        ("until", "2026-13-01"),
        ("since", "0001-01-01T00:00:00+01:00"),
    ],
)
def test_a_bad_or_out_of_range_time_is_a_422_naming_it(
    live_server: LiveServer, name: str, value: str
) -> None:
    with live_server.client("auditor") as c:
        _invalid(c.get("/v1/entries", params={name: value}), name)


def test_a_bare_until_date_on_the_last_day_there_is_means_no_end(live_server: LiveServer) -> None:
    _post_builds(live_server, "alpha")
    with live_server.client("auditor") as c:
        assert _indexes(c, until="9999-12-31") == _indexes(c)


def test_the_openapi_document_says_what_since_and_until_accept(live_server: LiveServer) -> None:
    doc = httpx.get(f"{live_server.url}/openapi.json").json()
    params = {p["name"]: p for p in doc["paths"]["/v1/entries"]["get"]["parameters"]}
    for name in ("since", "until"):
        text = params[name]["description"]
        assert "RFC 3339" in text
        assert "YYYY-MM-DD" in text
    assert "whole day" in params["until"]["description"]
    assert "rebuild-verification" in params["predicate_type"]["description"]
    assert "64 hex digits" in params["image_id"]["description"]
