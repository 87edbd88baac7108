"""The admin request bodies (keys and tokens) refuse an unknown member with a 422 naming it,
as `POST /v1/packs` does: ``{"from": "2027-03-01"}`` (the CLI's ``--from``) was ignored, and
the key retired at once instead of at that date."""

from __future__ import annotations

import pytest
from server_helpers import LiveServer


@pytest.mark.parametrize(
    ("path", "body", "member"),
    [
        ("/v1/keys/{keyid}/retire", {"from": "2027-03-01T00:00:00Z"}, "from"),
        ("/v1/keys/{keyid}/retire", {"reason": "moved", "effective": "2027-03-01"}, "effective"),
        ("/v1/keys/{keyid}/revoke", {"reason": "lost", "at": "2026-01-01T00:00:00Z"}, "at"),
        ("/v1/keys", {"name": "k", "public_key": "x", "role": "build"}, "role"),
        ("/v1/tokens", {"name": "ci", "role": "pipeline", "expires": "30d"}, "expires"),
    ],
)
def test_an_unknown_member_is_a_422_and_changes_nothing(
    live_server: LiveServer, path: str, body: dict[str, str], member: str
) -> None:
    keyid = live_server.build_key().keyid
    with live_server.client("admin") as c:
        before = c.get("/v1/checkpoint").json()["size"]
        r = c.post(path.format(keyid=keyid), json=body)
        assert r.status_code == 422, r.text
        err = r.json()
        assert (err["location"], err["pointer"]) == ("body", f"/{member}")
        assert c.get("/v1/checkpoint").json()["size"] == before
        key = next(k for k in c.get("/v1/keys").json()["keys"] if k["keyid"] == keyid)
        assert key["status"] == "active" and key["retired_at"] is None
        assert "ci" not in {t["name"] for t in c.get("/v1/tokens").json()["tokens"]}
        doc = c.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in ("KeyAddIn", "KeyRevokeIn", "KeyRetireIn", "TokenIn"):
        assert schemas[name].get("additionalProperties") is False, name


def test_the_named_members_still_work(live_server: LiveServer) -> None:
    keyid = live_server.build_key().keyid
    with live_server.client("admin") as c:
        r = c.post(
            f"/v1/keys/{keyid}/retire",
            json={"reason": "moved", "effective_from": "2099-03-01T00:00:00Z"},
        )
        assert r.status_code == 201, r.text
        key = next(k for k in c.get("/v1/keys").json()["keys"] if k["keyid"] == keyid)
        assert key["retired_at"] == "2099-03-01T00:00:00Z"
