"""``escrow verify --envelope … --json``: one JSON document on stdout whatever the failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.dsse import sign_statement
from escrow.signing.keys import KeyType, SigningKey

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture
def envelope(tmp_path: Path) -> Path:
    manifest = json.loads((ASSETS / "build-manifest.example.json").read_text())
    f = tmp_path / "e.jsonl"
    f.write_bytes(sign_statement(manifest, SigningKey.generate(KeyType.ED25519)).to_bytes() + b"\n")
    return f


@pytest.fixture
def other_key(tmp_path: Path) -> Path:
    pub = tmp_path / "other.pem"
    pub.write_text(SigningKey.generate(KeyType.ED25519).public.pem())
    return pub


def _bad_key(tmp_path: Path) -> Path:
    f = tmp_path / "not-a-key.pem"
    f.write_text("hello\n")
    return f


@pytest.mark.parametrize(
    ("make_key", "code", "fragment"),
    [
        (lambda p, other: other, 1, "No signature on the envelope verifies"),
        (lambda p, other: p / "missing.pem", 2, "Cannot read the key file"),
        (lambda p, other: _bad_key(p), 2, "Not a PEM public key"),
    ],
    ids=["other-key", "missing-key-file", "not-a-key"],
)
def test_json_failure_is_one_document(
    cli: Any,
    envelope: Path,
    other_key: Path,
    tmp_path: Path,
    make_key: Any,
    code: int,
    fragment: str,
) -> None:
    key = make_key(tmp_path, other_key)
    r = cli(["verify", "--envelope", str(envelope), "--key", str(key), "--json"])
    assert r.exit_code == code, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert doc["ok"] is False
    assert fragment in doc["error"]
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr


def test_json_failure_for_an_unreadable_envelope(cli: Any, other_key: Path, tmp_path: Path) -> None:
    r = cli(
        ["verify", "--envelope", str(tmp_path / "nope.jsonl"), "--key", str(other_key), "--json"]
    )
    assert r.exit_code == 2, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and "Cannot read the envelope" in doc["error"]


def test_without_json_stdout_stays_empty(cli: Any, envelope: Path, other_key: Path) -> None:
    r = cli(["verify", "--envelope", str(envelope), "--key", str(other_key)])
    assert r.exit_code == 1
    assert r.stdout == ""


def test_key_help_says_the_ledger_keys_are_used_without_it(cli: Any) -> None:
    r = cli(["verify", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "Without --key, the keys registered in the ledger" in text
    assert "not offline" in text
