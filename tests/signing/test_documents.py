"""`escrow sign` / `escrow verify --envelope` against a DSSE verifier escrow did not write."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

TESTS = Path(__file__).resolve().parent.parent


def _ref() -> Any:
    spec = importlib.util.spec_from_file_location(
        "independent_reference", TESTS / "ledger" / "test_independent_reference.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("independent_reference", mod)
    spec.loader.exec_module(mod)
    return mod


ref = _ref()


def _keys(tmp_path: Path) -> dict[str, tuple[Path, Path, Any]]:
    out = {}
    for name, key in (
        ("a", ed25519.Ed25519PrivateKey.generate()),
        ("b", ec.generate_private_key(ec.SECP256R1())),
        ("c", ed25519.Ed25519PrivateKey.generate()),
    ):
        priv = tmp_path / f"{name}.key.pem"
        priv.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pub = tmp_path / f"{name}.pub.pem"
        pub.write_bytes(ref.public_pem(key))
        out[name] = (priv, pub, key)
    return out


def _statement() -> str:
    return (TESTS / "assets" / "build-manifest.example.json").read_text()


def test_escrow_signed_envelopes_verify_elsewhere_with_thresholds(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    keys = _keys(tmp_path)
    r = cli(["sign", "--key", str(keys["a"][0]), "--key", str(keys["b"][0])], input=_statement())
    assert r.exit_code == 0, r.stderr
    env = json.loads(r.stdout)
    pubs = [keys[n][2].public_key() for n in "ab"]
    assert len(ref.verify_dsse(env, pubs, threshold=2)) == 2
    assert json.loads(base64.b64decode(env["payload"]))["_type"].startswith(
        "https://in-toto.io/Statement/"
    )
    f = tmp_path / "env.json"
    f.write_text(r.stdout)
    a, b, c = (str(keys[n][1]) for n in "abc")
    ok = ["verify", "--envelope", str(f), "--json"]
    assert cli([*ok, "--key", a, "--key", b, "--threshold", "2"]).exit_code == 0
    assert cli([*ok, "--key", a, "--key", c, "--threshold", "2"]).exit_code == 1
    assert cli([*ok, "--key", c]).exit_code == 1
    # the same key given twice is one trusted key: a threshold of 2 can never be met
    assert cli([*ok, "--key", a, "--key", a, "--threshold", "2"]).exit_code == 2


def test_an_envelope_made_by_hand_verifies_with_escrow(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    keys = _keys(tmp_path)
    payload = json.dumps(json.loads(_statement())).encode()
    env = ref.dsse([keys["b"][2], keys["c"][2]], payload)
    f = tmp_path / "env.json"
    f.write_text(json.dumps(env))
    b, c = str(keys["b"][1]), str(keys["c"][1])
    r = cli(["verify", "--envelope", str(f), "--key", b, "--key", c, "--threshold", "2"])
    assert r.exit_code == 0, r.stderr


def test_an_envelope_signed_with_a_revoked_key(escrow_home: Path, cli: Any, tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    priv, pub, key = keys["a"]
    assert cli(["keys", "add", str(pub), "--name", "hand"]).exit_code == 0
    env = ref.dsse(key, json.dumps(json.loads(_statement())).encode())
    f = tmp_path / "env.json"
    f.write_text(json.dumps(env))
    assert cli(["verify", "--envelope", str(f)]).exit_code == 0  # registered, active
    kid = ref.spki_keyid(key.public_key())
    assert cli(["keys", "revoke", kid, "--reason", "leaked"]).exit_code == 0
    r = cli(["verify", "--envelope", str(f), "--json"])
    assert r.exit_code == 1, r.stdout
    assert r.json()["ok"] is False
    r = cli(["post", str(f), "--json"])
    assert r.exit_code == 1
    assert r.json()["results"][0]["status"] == "rejected"
