"""Admin errors an API client can act on: a token name already in use is a 409 naming
/name (the request itself is valid), and a public key that is not PEM gets one sentence
of escrow's own, not the PEM parser's words and its FAQ link."""

from __future__ import annotations

from server_helpers import LiveServer


def test_a_token_name_in_use_is_a_409(live_server: LiveServer) -> None:
    with live_server.client("admin") as c:
        first = c.post("/v1/tokens", json={"name": "ci-twice", "role": "pipeline"})
        assert first.status_code == 201, first.text
        again = c.post("/v1/tokens", json={"name": "ci-twice", "role": "auditor"})
        assert again.status_code == 409, again.text
        err = again.json()
        assert (err["error"], err["location"], err["pointer"]) == ("conflict", "body", "/name")
        assert "already exists" in err["message"]
        # once revoked, the name is free again
        assert c.delete(f"/v1/tokens/{first.json()['id']}").status_code == 200
        free = c.post("/v1/tokens", json={"name": "ci-twice", "role": "pipeline"})
        assert free.status_code == 201, free.text
        doc = c.get("/openapi.json").json()
        assert "409" in doc["paths"]["/v1/tokens"]["post"]["responses"]


def test_a_public_key_that_is_not_pem_gets_one_sentence(live_server: LiveServer) -> None:
    with live_server.client("admin") as c:
        r = c.post("/v1/keys", json={"name": "bad", "public_key": "not a key"})
    assert r.status_code == 422, r.text
    err = r.json()
    assert (err["location"], err["pointer"]) == ("body", "/public_key")
    assert "http" not in err["message"]
    assert err["message"].count(". ") == 0 and err["message"].endswith(".")
    assert "PEM public key" in err["message"]
