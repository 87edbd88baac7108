"""The HTTP API against a real Uvicorn server: appends, reads, proofs, roles, bad input."""

from __future__ import annotations

import base64
import copy
import json
import logging
from typing import Any

import httpx
import pytest
from server_helpers import SMALL_LIMIT, LiveServer, manifest

from escrow.documents.canonical import canonical_bytes
from escrow.ledger import merkle
from escrow.ledger.checkpoint import verify_checkpoint
from tests.ledger.test_independent_reference import consistency as ref_consistency
from tests.ledger.test_independent_reference import leaf_hash as ref_leaf_hash
from tests.ledger.test_independent_reference import mth as ref_mth
from tests.ledger.test_independent_reference import path as ref_path


def _verify_posted(body: dict[str, Any], verifier_key: str) -> None:
    """The response's inclusion proof and checkpoint verify on their own."""
    cp = verify_checkpoint(body["checkpoint"]["note"], verifier_key)
    assert cp.size == body["checkpoint"]["size"]
    assert cp.root.hex() == body["checkpoint"]["root"]
    leaf = canonical_bytes(body["entry"]["envelope"])
    assert merkle.leaf_hash(leaf).hex() == body["entry"]["leaf_hash"]
    proof = [bytes.fromhex(h) for h in body["inclusion_proof"]["hashes"]]
    assert merkle.verify_inclusion(
        merkle.leaf_hash(leaf), body["entry"]["index"], cp.size, proof, cp.root
    )


def test_post_appends_then_is_idempotent(live_server: LiveServer) -> None:
    env = live_server.envelope()
    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        first = c.post("/v1/entries", json=env)
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["created"] is True
        assert body["entry"]["index"] == size0
        assert body["entry"]["project"] == "example"
        again = c.post("/v1/entries", json=env)
        assert again.status_code == 200, again.text
        assert again.json()["created"] is False
        assert again.json()["entry"]["index"] == body["entry"]["index"]
        assert c.get("/v1/checkpoint").json()["size"] == size0 + 1
        key = c.get("/v1/keys").json()["verifier_key"]
    _verify_posted(body, key)
    with live_server.ledger() as ledger:
        assert ledger.get(size0).leaf_hash == body["entry"]["leaf_hash"]


def test_batch_appends_in_order_and_a_bad_member_appends_nothing(live_server: LiveServer) -> None:
    envs = [live_server.envelope() for _ in range(3)]
    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        r = c.post("/v1/entries", json={"envelopes": envs})
        assert r.status_code == 201, r.text
        indexes = [e["entry"]["index"] for e in r.json()["entries"]]
        assert indexes == [size0, size0 + 1, size0 + 2]
        bad = copy.deepcopy(envs[0])
        bad["payload"] = "!!not base64!!"
        fresh = live_server.envelope()
        r = c.post("/v1/entries", json={"envelopes": [fresh, bad]})
        assert r.status_code == 422, r.text
        assert r.json()["pointer"] == "/envelopes/1/payload"
        assert c.get("/v1/checkpoint").json()["size"] == size0 + 3


def _forged_signature(env: dict[str, Any]) -> dict[str, Any]:
    from escrow.signing.keys import SigningKey

    other = SigningKey.generate()
    e = copy.deepcopy(env)
    e["signatures"] = [{"keyid": other.keyid, "sig": base64.b64encode(other.sign(b"x")).decode()}]
    return e


def _with_statement(env: dict[str, Any], statement: Any) -> dict[str, Any]:
    e = copy.deepcopy(env)
    e["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return e


def _bad_status() -> dict[str, Any]:
    st = manifest()
    st["predicate"]["build"]["status"] = 5
    return st


BAD_BODIES: list[tuple[str, Any, str | None]] = [
    # (id, body maker taking a good envelope, expected pointer or None for "any")
    ("not-json", lambda env: b"{nope", ""),
    ("json-array", lambda env: [], ""),
    ("payload-number", lambda env: {**env, "payload": 5}, "/payload"),
    ("payload-bad-base64", lambda env: {**env, "payload": "%%%"}, "/payload"),
    (
        "sig-bad-base64",
        lambda env: {**env, "signatures": [{"keyid": "", "sig": "***"}]},
        "/signatures/0/sig",
    ),
    ("no-signatures", lambda env: {**env, "signatures": []}, "/signatures"),
    (
        "hundreds-of-signatures",
        lambda env: {**env, "signatures": env["signatures"] * 300},
        "/signatures",
    ),
    (
        "no-payload-type",
        lambda env: {k: v for k, v in env.items() if k != "payloadType"},
        "/payloadType",
    ),
    ("unknown-key", _forged_signature, "/signatures"),
    (
        "schema-violation",
        lambda env: _with_statement(env, _bad_status()),
        "/predicate/build/status",
    ),
    ("payload-not-json", lambda env: {**env, "payload": base64.b64encode(b"{x").decode()}, None),
    ("statement-not-object", lambda env: _with_statement(env, [1, 2]), None),
    ("wrong-payload-type", lambda env: {**env, "payloadType": "text/plain"}, None),
]

#: what each error message must say (the case's own words, not just "something")
BAD_BODY_MESSAGES = {
    "not-json": "The request body is not valid JSON",
    "json-array": "The request body is invalid at /:",
    "payload-number": "invalid at /payload: Input should be a valid string",
    "payload-bad-base64": "The value at /payload is not valid base64.",
    "sig-bad-base64": "The value at /signatures/0/sig is not valid base64.",
    "no-signatures": "invalid at /signatures: List should have at least 1 item",
    "hundreds-of-signatures": "invalid at /signatures: List should have at most 16 items",
    "no-payload-type": "invalid at /payloadType: Field required",
    "unknown-key": "not signed by a key registered in this ledger",
    "schema-violation": "invalid at /predicate/build/status",
    "payload-not-json": "The envelope's payload is not JSON.",
    "statement-not-object": "The envelope's payload is not a JSON object.",
    "wrong-payload-type": "payloadType is 'text/plain', not 'application/vnd.in-toto+json'",
}


@pytest.mark.parametrize(("case", "make", "pointer"), BAD_BODIES, ids=[i for i, _, _ in BAD_BODIES])
def test_bad_envelopes_get_422_naming_where_and_append_nothing(
    live_server: LiveServer, case: str, make: Any, pointer: str | None
) -> None:
    body = make(live_server.envelope())
    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        if isinstance(body, bytes):
            r = c.post("/v1/entries", content=body, headers={"Content-Type": "application/json"})
        else:
            r = c.post("/v1/entries", json=body)
        assert r.status_code == 422, r.text
        err = r.json()
        assert set(err) >= {"error", "message", "location", "pointer", "field"}
        assert BAD_BODY_MESSAGES[case] in err["message"], err
        assert err["location"] == ("payload" if case == "schema-violation" else "body"), err
        if pointer is not None:
            assert err["pointer"] == pointer, err
        assert c.get("/v1/checkpoint").json()["size"] == size0


def test_schema_violation_names_the_payload_pointer(live_server: LiveServer) -> None:
    body = _with_statement(live_server.envelope(), _bad_status())
    with live_server.client("pipeline") as c:
        err = c.post("/v1/entries", json=body).json()
    assert err["error"] == "schema"
    assert err["location"] == "payload"
    assert "/predicate/build/status" in err["message"]


def test_revoked_key_cannot_post(live_server: LiveServer) -> None:
    env = live_server.envelope()
    keyid = live_server.build_key().keyid
    with live_server.client("admin") as admin:
        r = admin.post(f"/v1/keys/{keyid}/revoke", json={"reason": "laptop lost"})
        assert r.status_code == 201, r.text
        assert r.json()["entry"]["predicate_type"].endswith("/key-event/v1")
        keys = {k["keyid"]: k for k in admin.get("/v1/keys").json()["keys"]}
        assert keys[keyid]["status"] == "revoked"
    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        r = c.post("/v1/entries", json=env)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "signature"
        assert c.get("/v1/checkpoint").json()["size"] == size0


def test_body_over_the_limit_gets_413(live_server: LiveServer) -> None:
    big = b'{"payload": "' + b"A" * (SMALL_LIMIT + 10) + b'"}'
    with live_server.client("pipeline") as c:
        size0 = c.get("/v1/checkpoint").json()["size"]
        r = c.post("/v1/entries", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "too_large"

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            for _ in range(8):
                yield b"A" * (SMALL_LIMIT // 4)

        r = c.post("/v1/entries", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert c.get("/v1/checkpoint").json()["size"] == size0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing-here", 404),
        ("GET", "/v2/entries", 404),
        ("PUT", "/v1/entries", 405),
        ("DELETE", "/v1/checkpoint", 405),
        ("GET", "/v1/entries/999999", 404),
        ("GET", "/v1/entries/-1", 422),
        ("GET", "/v1/entries/abc", 422),
        ("GET", "/v1/entries/0/proof?tree_size=999999", 422),
        ("GET", "/v1/consistency?old=5&new=2", 422),
        ("GET", "/v1/consistency", 422),
        ("GET", "/v1/entries?limit=0", 422),
        ("GET", "/v1/entries?since=yesterday", 422),
        ("GET", "/v1/entries?project=%00", 422),
        ("GET", "/v1/packs/nope", 422),
        ("GET", "/v1/packs/" + "0" * 32, 404),
    ],
)
def test_unknown_routes_methods_and_bad_parameters_get_json_4xx(
    live_server: LiveServer, method: str, path: str, status: int
) -> None:
    with live_server.client("auditor") as c:
        r = c.request(method, path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["message"]


def test_bad_query_parameter_is_named(live_server: LiveServer) -> None:
    with live_server.client("auditor") as c:
        err = c.get("/v1/entries", params={"limit": "many"}).json()
    assert err["location"] == "query"
    assert err["field"] == "limit"


def test_roles(live_server: LiveServer) -> None:
    env = live_server.envelope()
    anon = httpx.Client(base_url=live_server.url)
    r = anon.post("/v1/entries", json=env)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = anon.get("/v1/checkpoint", headers={"Authorization": "Bearer escrow_not-a-token"})
    assert r.status_code == 401
    r = anon.get("/v1/checkpoint", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401
    with live_server.client("auditor") as auditor:
        assert auditor.post("/v1/entries", json=env).status_code == 403
        assert auditor.get("/v1/tokens").status_code == 403
        assert auditor.get("/v1/entries").status_code == 200
    with live_server.client("pipeline") as pipeline:
        assert pipeline.post("/v1/packs", json={}).status_code == 403
        assert pipeline.post("/v1/tokens", json={"name": "x", "role": "admin"}).status_code == 403
        assert pipeline.get("/v1/keys").status_code == 200
    with live_server.client("admin") as admin:
        assert admin.post("/v1/entries", json=env).status_code == 201
    assert anon.get("/healthz").status_code == 200
    anon.close()


def test_tokens_over_the_api_and_revocation(live_server: LiveServer) -> None:
    with live_server.client("admin") as admin:
        r = admin.post("/v1/tokens", json={"name": "nightly", "role": "pipeline"})
        assert r.status_code == 201, r.text
        made = r.json()
        listed = admin.get("/v1/tokens").json()["tokens"]
        assert any(t["id"] == made["id"] and t["active"] for t in listed)
        assert all("token" not in t for t in listed)
        headers = {"Authorization": f"Bearer {made['token']}"}
        assert admin.get("/v1/checkpoint", headers=headers).status_code == 200
        assert admin.delete(f"/v1/tokens/{made['id']}").status_code == 200
        assert admin.get("/v1/checkpoint", headers=headers).status_code == 401
        assert admin.delete("/v1/tokens/ffffffffffff").status_code == 404


def test_list_filters_and_cursor(live_server: LiveServer) -> None:
    from escrow.signing.dsse import sign_statement

    key = live_server.build_key()
    with live_server.client("pipeline") as c:
        for project in ("alpha", "beta", "alpha"):
            env = sign_statement(manifest(project), key).to_dict()
            assert c.post("/v1/entries", json=env).status_code == 201
        alpha = c.get("/v1/entries", params={"project": "alpha"}).json()
        assert [e["project"] for e in alpha["entries"]] == ["alpha", "alpha"]
        assert alpha["next_cursor"] is None
        page1 = c.get("/v1/entries", params={"project": "alpha", "limit": 1}).json()
        assert page1["next_cursor"] == page1["entries"][0]["index"]
        page2 = c.get(
            "/v1/entries", params={"project": "alpha", "limit": 1, "after": page1["next_cursor"]}
        ).json()
        assert page2["entries"][0]["index"] > page1["entries"][0]["index"]
        diff_id = manifest()["predicate"]["layers"][0]["diffId"]
        by_layer = c.get("/v1/entries", params={"diff_id": diff_id}).json()["entries"]
        assert len(by_layer) == 3
        assert c.get("/v1/entries", params={"project": "gamma"}).json()["entries"] == []
        # a period is [since, until): an entry integrated at `until` is outside it
        last = alpha["entries"][-1]
        at = {"since": alpha["entries"][0]["integrated_at"], "until": last["integrated_at"]}
        period = c.get("/v1/entries", params={"project": "alpha", **at}).json()["entries"]
        assert [e["index"] for e in period] == [alpha["entries"][0]["index"]]
        doc = c.get("/openapi.json").json()
        params = {p["name"]: p for p in doc["paths"]["/v1/entries"]["get"]["parameters"]}
        assert "exclusive" in params["until"]["description"]
        assert "inclusive" in params["since"]["description"]
        pack_body = doc["components"]["schemas"]["PackIn"]["properties"]
        assert "exclusive" in pack_body["until"]["description"]


def test_proofs_verify(live_server: LiveServer) -> None:
    with live_server.client("auditor") as c:
        with live_server.client("pipeline") as p:
            for _ in range(4):
                assert p.post("/v1/entries", json=live_server.envelope()).status_code == 201
        cp_json = c.get("/v1/checkpoint").json()
        cp = verify_checkpoint(cp_json["note"], cp_json["verifier_key"])
        # the leaves, recomputed from the stored entry bytes by RFC 9162 reference code
        with live_server.ledger() as lg:
            leaves = [ref_leaf_hash(lg.get(i).envelope) for i in range(lg.size())]
        assert cp.size == len(leaves) >= 5
        assert cp.root == ref_mth(leaves)
        for index in range(cp.size):
            proof = c.get(f"/v1/entries/{index}/proof").json()
            assert proof["leaf_hash"] == leaves[index].hex()
            assert proof["hashes"] == [h.hex() for h in ref_path(index, leaves)], index
            assert merkle.verify_inclusion(
                bytes.fromhex(proof["leaf_hash"]),
                index,
                cp.size,
                [bytes.fromhex(h) for h in proof["hashes"]],
                cp.root,
            )
        cons = c.get("/v1/consistency", params={"old": 2, "new": cp.size}).json()
        assert cons["new_root"] == cp.root.hex()
        assert cons["old_root"] == ref_mth(leaves[:2]).hex()
        assert cons["hashes"] == [h.hex() for h in ref_consistency(2, leaves)]
        assert merkle.verify_consistency(
            2,
            cp.size,
            bytes.fromhex(cons["old_root"]),
            cp.root,
            [bytes.fromhex(h) for h in cons["hashes"]],
        )


def test_changing_requests_are_logged_with_the_token_name(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="escrow.server")
    with live_server.client("pipeline") as c:
        index = c.post("/v1/entries", json=live_server.envelope()).json()["entry"]["index"]
    with live_server.client("auditor") as c:
        c.post("/v1/entries", json=live_server.envelope())
    lines = [r.getMessage() for r in caplog.records if r.name == "escrow.server"]
    assert any(
        "POST /v1/entries -> 201 by 'test-pipeline' (pipeline" in line
        and f"appended {index}" in line
        for line in lines
    ), lines
    assert any("-> 403 by 'test-auditor'" in line for line in lines), lines


def test_openapi_document(live_server: LiveServer) -> None:
    doc = httpx.get(f"{live_server.url}/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/v1/entries",
        "/v1/entries/{index}",
        "/v1/entries/{index}/proof",
        "/v1/checkpoint",
        "/v1/consistency",
        "/v1/keys",
        "/v1/packs",
        "/v1/packs/{job_id}",
        "/healthz",
    } <= paths
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
