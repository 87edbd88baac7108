"""``escrow verify --envelope``: offline checks of one DSSE envelope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.dsse import Envelope, sign_statement
from escrow.signing.keys import KeyType, SigningKey

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture
def key(tmp_path: Path) -> tuple[SigningKey, Path]:
    k = SigningKey.generate(KeyType.ED25519)
    pub = tmp_path / "k.pub.pem"
    pub.write_text(k.public.pem())
    return k, pub


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    return data


def test_a_valid_envelope_verifies(cli: Any, key: tuple[SigningKey, Path], tmp_path: Path) -> None:
    k, pub = key
    f = tmp_path / "env.json"
    f.write_bytes(sign_statement(_manifest(), k).to_bytes())
    r = cli(["verify", "--envelope", str(f), "--key", str(pub), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["verified_keyids"] == [k.keyid]


def test_a_changed_payload_fails(cli: Any, key: tuple[SigningKey, Path], tmp_path: Path) -> None:
    k, pub = key
    doc = sign_statement(_manifest(), k).to_dict()
    payload = json.loads(Envelope.from_dict(doc).payload)
    payload["predicate"]["build"]["project"] = "other"
    doc["payload"] = Envelope(json.dumps(payload).encode()).to_dict()["payload"]
    f = tmp_path / "env.json"
    f.write_text(json.dumps(doc))
    r = cli(["verify", "--envelope", str(f), "--key", str(pub)])
    assert r.exit_code == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_a_signed_payload_that_is_not_a_statement_is_refused(
    cli: Any, key: tuple[SigningKey, Path], tmp_path: Path
) -> None:
    """Regression: the signature alone used to be enough for --envelope to pass."""
    k, pub = key
    f = tmp_path / "env.json"
    f.write_bytes(Envelope(payload=b'{"hello": "world"}').signed_by(k).to_bytes())
    r = cli(["verify", "--envelope", str(f), "--key", str(pub)])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "Statement" in r.stderr


def test_target_and_envelope_together_is_a_usage_error(cli: Any, tmp_path: Path) -> None:
    r = cli(["verify", "3", "--envelope", str(tmp_path / "x.json")])
    assert r.exit_code == 2


def test_a_missing_envelope_file_is_one_sentence_exit_2(cli: Any, tmp_path: Path) -> None:
    """Regression: a missing --envelope file raised FileNotFoundError with a traceback."""
    r = cli(["verify", "--envelope", str(tmp_path / "nope.json"), "--key", __file__])
    assert r.exit_code == 2, r.stderr
    assert "Cannot read the envelope" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_envelope_on_stdin_verifies(
    cli: Any, key: tuple[SigningKey, Path], tmp_path: Path
) -> None:
    k, pub = key
    data = sign_statement(_manifest(), k).to_bytes()
    r = cli(["verify", "--envelope", "-", "--key", str(pub), "--json"], input=data)
    assert r.exit_code == 0, r.stderr
