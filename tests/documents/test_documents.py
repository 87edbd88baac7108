"""What `escrow sign` / `escrow schema validate` refuse, and the files they write."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.canonical import canonical_bytes
from escrow.signing.dsse import Envelope
from escrow.signing.keys import KeyType, SigningKey

from .conftest import DOCS, load

GOOD = DOCS / "rebuild-verification.identical.json"


def _text() -> str:
    return json.dumps(load(GOOD))


def _with_member(raw: str) -> str:
    """The good statement with ``raw`` (one JSON member, written as is) put first."""
    text = _text()
    assert text.startswith("{")
    return "{" + raw + "," + text[1:]


BAD_JSON = {
    # the last `_type` is the good one: a last-wins parser would sign it, a first-wins one
    # (or another verifier) reads a v0.1 statement from the same bytes
    "duplicate-member": (
        _with_member('"_type": "https://in-toto.io/Statement/v0.1"'),
        "the member '_type' appears twice in one object",
    ),
    "nan": (_with_member('"x": NaN'), "NaN is not a JSON number"),
    "infinity": (_with_member('"x": -Infinity'), "-Infinity is not a JSON number"),
    "float-overflow": (_with_member('"x": 1e999'), "the number 1e999 is too large"),
    "huge-integer": (_with_member('"x": 1' + "0" * 5000), "a number has more than 4300 digits"),
    "nested-too-deeply": ("[" * 100_000 + "]" * 100_000, "it is nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_sign_refuses_json_parsers_read_differently(
    cli: Any, signing_home: Path, tmp_path: Path, case: str
) -> None:
    text, reason = BAD_JSON[case]
    path = tmp_path / "statement.json"
    path.write_text(text, encoding="utf-8")
    r = cli(["sign", str(path)])
    assert r.exit_code == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith(f"escrow: error: The file {path} is not valid JSON ({reason}")
    assert r.stderr.count("\n") == 1 and r.stderr.endswith(").\n")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_schema_validate_does_not_call_them_valid(cli: Any, tmp_path: Path, case: str) -> None:
    text, reason = BAD_JSON[case]
    path = tmp_path / "statement.json"
    path.write_text(text, encoding="utf-8")
    r = cli(["schema", "validate", "--json", str(path)])
    assert r.exit_code == 2, r.stderr
    report = r.json()["files"][0]
    assert report["valid"] is False
    assert reason in report["errors"][0]["message"]


def test_schema_validate_refuses_an_envelope_payload_with_a_member_twice(
    cli: Any, tmp_path: Path
) -> None:
    """`escrow post` refuses such a payload; `schema validate` must not call it valid."""
    payload = _with_member('"_type": "https://in-toto.io/Statement/v0.1"').encode()
    key = SigningKey.generate(KeyType.ED25519)
    path = tmp_path / "envelope.json"
    path.write_bytes(Envelope(payload).signed_by(key).to_bytes())
    r = cli(["schema", "validate", "--json", str(path)])
    assert r.exit_code == 1, r.stdout + r.stderr
    report = r.json()["files"][0]
    assert report["valid"] is False
    assert "'_type' twice" in report["errors"][0]["message"]


def test_a_well_formed_statement_still_signs(cli: Any, signing_home: Path) -> None:
    r = cli(["sign", str(GOOD)])
    assert r.exit_code == 0, r.stderr
    env = Envelope.from_bytes(r.stdout.strip())
    assert json.loads(base64.b64decode(env.to_dict()["payload"])) == load(GOOD)
    assert env.payload == canonical_bytes(load(GOOD))


def test_sign_output_file_gets_the_umask_mode_not_0600(
    cli: Any, signing_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "envelopes.jsonl"
    old = os.umask(0o022)
    try:
        r = cli(["sign", str(GOOD), "-o", str(out)])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o644


def test_sign_output_over_an_existing_file_keeps_its_mode(
    cli: Any, signing_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "envelopes.jsonl"
    out.write_text("old\n")
    out.chmod(0o640)
    r = cli(["sign", str(GOOD), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o640
    assert out.read_text() != "old\n"


def test_output_under_a_file_names_the_path_given_not_a_temporary_file(
    cli: Any, signing_home: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker / "envelopes.jsonl"
    r = cli(["sign", str(GOOD), "-o", str(out)])
    assert r.exit_code == 2, r.stderr
    assert f"Cannot use {out}: {blocker} is a file, not a folder." in r.stderr
    assert ".envelopes.jsonl." not in r.stderr  # the temporary file's name
