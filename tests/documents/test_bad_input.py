"""The issue's bad-input table: each case gets one clear error and is never appended or signed.

Envelopes go to the real SQLite ledger (``Ledger.append``) and to ``escrow schema
validate``; statements go to ``escrow sign`` (see also test_cli_documents.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from escrow.config import load_settings
from escrow.documents.canonical import canonical_bytes
from escrow.documents.types import PAYLOAD_TYPE
from escrow.errors import EscrowError
from escrow.ledger.store import Ledger
from escrow.signing.dsse import Envelope
from escrow.signing.keys import SigningKey

from .conftest import DOCS, load

GOOD = load(DOCS / "rebuild-verification.identical.json")


def _signed(payload: bytes, key: SigningKey, payload_type: str = PAYLOAD_TYPE) -> bytes:
    return Envelope(payload, payload_type).signed_by(key).to_bytes()


def _cases(build: SigningKey, stranger: SigningKey) -> dict[str, tuple[bytes, str]]:
    good = _signed(canonical_bytes(GOOD), build)
    no_digest = {**GOOD, "subject": [{"name": "x"}]}
    unknown = {**GOOD, "predicateType": "https://example.com/unknown/v1"}
    unsigned = json.loads(good)
    unsigned["signatures"] = []
    return {
        "truncated-envelope": (good[: len(good) // 2], "not valid JSON"),
        "not-json": (b"this is not json", "not valid JSON"),
        "wrong-payload-type": (
            _signed(canonical_bytes(GOOD), build, "application/json"),
            "payloadType",
        ),
        "no-signatures": (json.dumps(unsigned).encode(), "no signatures"),
        "unknown-key": (_signed(canonical_bytes(GOOD), stranger), "not signed by a key registered"),
        "json-but-not-a-statement": (_signed(b'{"hello": "world"}', build), "Statement v1"),
        "unknown-predicate-type": (
            _signed(canonical_bytes(unknown), build),
            "Unknown predicate type",
        ),
        "subject-without-digest": (
            _signed(canonical_bytes(no_digest), build),
            "/subject/0/digest: a required property is missing",
        ),
        "payload-not-base64": (
            json.dumps(
                {"payload": "%%%", "payloadType": PAYLOAD_TYPE, "signatures": [{"sig": "AA=="}]}
            ).encode(),
            "payload is not valid base64",
        ),
    }


CASES = [
    "truncated-envelope",
    "not-json",
    "wrong-payload-type",
    "no-signatures",
    "unknown-key",
    "json-but-not-a-statement",
    "unknown-predicate-type",
    "subject-without-digest",
    "payload-not-base64",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_envelopes_are_never_appended(escrow_home: Path, case: str) -> None:
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    data, fragment = _cases(build, SigningKey.generate())[case]
    ledger = Ledger.open(load_settings())
    size = ledger.size()
    with pytest.raises(EscrowError) as e:
        ledger.append(data)
    message = e.value.diagnostics()
    assert fragment in message, message
    assert "\n" not in message
    # a signature by no registered key is a failed check (1); anything else bad input (2)
    assert e.value.exit_code == (1 if case == "unknown-key" else 2)
    assert ledger.size() == size


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c != "unknown-key"],  # a signature is no schema matter
)
def test_bad_envelopes_fail_schema_validate(
    cli: Any, escrow_home: Path, tmp_path: Path, case: str
) -> None:
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    data, _ = _cases(build, SigningKey.generate())[case]
    path = tmp_path / "envelope.json"
    path.write_bytes(data)
    r = cli(["schema", "validate", "--json", str(path)])
    # unreadable JSON is bad input (2); a readable but invalid document a failed check (1)
    assert r.exit_code == (2 if case in ("truncated-envelope", "not-json") else 1), r.stdout
    report = r.json()["files"][0]
    assert report["valid"] is False and report["errors"], report


def test_a_good_envelope_is_appended_once(escrow_home: Path) -> None:
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    data = _signed(canonical_bytes(GOOD), build)
    ledger = Ledger.open(load_settings())
    entry, created = ledger.append(data)
    again, created_again = ledger.append(base64.b64decode(base64.b64encode(data)))
    assert created and not created_again and again.index == entry.index
