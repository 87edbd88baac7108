"""A signed payload that names one member twice is refused by ``escrow post``.

JSON parsers disagree on which of two same-named members counts (Python and Go take
the last, others the first), so a statement with two ``project`` members would be
indexed by escrow under one project while another verifier of the very same signed
bytes reads the other.  The envelope's own members were already refused twice; the
signed statement inside it must be too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from ledger_helpers import LedgerEnv, manifest
from test_independent_reference import dsse, public_pem, statement_bytes


@pytest.fixture
def ed(cli_env: LedgerEnv, cli: Any, tmp_path: Path) -> Any:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "ed.pub.pem"
    pem.write_bytes(public_pem(key))
    r = cli(["keys", "add", str(pem), "--name", "other-ed"])
    assert r.exit_code == 0, r.stderr
    return key


def test_a_payload_with_a_member_twice_is_rejected(ed: Any, cli: Any) -> None:
    payload = statement_bytes(manifest(1, tag="r9bdup"))
    # the build's project twice: "elsewhere" first, the indexed one last
    marker = b'"project":'
    at = payload.index(marker)
    payload = payload[:at] + b'"project":"elsewhere",' + payload[at:]
    assert json.loads(payload)["predicate"]["build"]["project"] != "elsewhere"
    r = cli(["post", "--json"], input=json.dumps(dsse(ed, payload)))
    assert r.exit_code == 1, r.stderr
    res = r.json()["results"][0]
    assert res["status"] == "rejected", res
    assert "twice" in res["error"] and "project" in res["error"], res["error"]


def test_a_plain_payload_is_still_appended(ed: Any, cli: Any) -> None:
    payload = statement_bytes(manifest(2, tag="r9bdup"))
    r = cli(["post", "--json"], input=json.dumps(dsse(ed, payload)))
    assert r.exit_code == 0, r.stderr
    assert r.json()["results"][0]["status"] == "appended"
