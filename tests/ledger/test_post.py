"""``escrow post`` of envelopes made by other tooling (DSSE and in-toto by hand).

The valid ones are appended; each invalid one is rejected on its own, with one reason that
names what is wrong; the stored leaves verify with a DSSE verifier escrow did not write.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from ledger_helpers import LedgerEnv, manifest
from test_independent_reference import (
    dsse,
    leaf_hash,
    public_pem,
    spki_keyid,
    statement_bytes,
    verify_dsse,
)


@pytest.fixture
def keys(cli_env: LedgerEnv, cli: Any, tmp_path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "stranger": ed25519.Ed25519PrivateKey.generate(),
    }
    for name in ("ed", "p256"):
        pem = tmp_path / f"{name}.pub.pem"
        pem.write_bytes(public_pem(out[name]))
        r = cli(["keys", "add", str(pem), "--name", f"other-{name}"])
        assert r.exit_code == 0, r.stderr
    return out


def _payload(n: int) -> bytes:
    return statement_bytes(manifest(n, tag="r9post"))


def _line(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


def _mix(keys: dict[str, Any]) -> list[tuple[str, bytes, str | None]]:
    """``(name, line bytes, expected reason fragment or None when valid)``."""
    ed, p256 = keys["ed"], keys["p256"]
    badsig = dsse(ed, _payload(3))
    sig = bytearray(base64.b64decode(badsig["signatures"][0]["sig"]))
    sig[7] ^= 1
    badsig["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    extra = dsse(ed, _payload(8))
    extra["comment"] = "added by another tool"
    extra["signatures"][0]["extra"] = True
    signed = dsse(ed, _payload(9))
    dup = b'{"payload": "' + base64.b64encode(b'{"not": "signed"}') + b'", ' + _line(signed)[1:]
    huge = _line(dsse(ed, _payload(10)))[:-1] + b', "n": ' + b"9" * 5000 + b"}"
    nonutf8 = _line(dsse(ed, _payload(11)))[:-1] + b', "x": "\xff"}'
    utf16 = dsse(ed, json.dumps(manifest(12, tag="r9post")).encode("utf-16"))
    return [
        ("ed25519", _line(dsse(ed, _payload(1))), None),
        ("p256", _line(dsse(p256, _payload(2))), None),
        ("bad-signature", _line(badsig), "does not verify"),
        ("payload-type", _line(dsse(ed, _payload(4), "application/json")), "payloadType"),
        ("unregistered", _line(dsse(keys["stranger"], _payload(5))), "not signed by a key"),
        ("url-safe", _line(dsse(ed, _payload(6) + b" ", b64=base64.urlsafe_b64encode)), None),
        (
            "no-padding",
            _line(dsse(ed, _payload(7) + b"  ", b64=lambda b: base64.b64encode(b).rstrip(b"="))),
            None,
        ),
        ("extra-fields", _line(extra), None),
        ("duplicate-member", dup, "twice"),
        ("huge-integer", huge, "a number of more than 4,300 digits, which escrow does not read"),
        ("not-utf-8", nonutf8, "not UTF-8 text"),
        ("utf-16-payload", _line(utf16), "payload is not JSON"),
        ("bom", b"\xef\xbb\xbf" + _line(dsse(p256, _payload(13))), None),
        ("trailing-garbage", _line(dsse(ed, _payload(14))) + b" xyz", "not valid JSON"),
        ("empty-line", b"", None),
        ("last", _line(dsse(p256, _payload(15))), None),
    ]


def test_post_a_mix_from_other_tooling(keys: dict[str, Any], cli: Any, tmp_path: Path) -> None:
    mix = _mix(keys)
    src = tmp_path / "mix.jsonl"
    src.write_bytes(b"\r\n".join(line for _, line, _ in mix) + b"\r\n")
    r = cli(["post", str(src), "--json"])
    assert r.exit_code == 1, r.stderr
    doc = r.json()
    results = {res["line"]: res for res in doc["results"]}
    listed = [(n, name, want) for n, (name, _, want) in enumerate(mix, 1) if name != "empty-line"]
    assert sorted(results) == [n for n, _, _ in listed]  # the empty line is no envelope
    pubs = [keys["ed"].public_key(), keys["p256"].public_key()]
    for n, name, want in listed:
        res = results[n]
        if want is None:
            assert res["status"] == "appended", (name, res)
            leaf = cli(["ledger", "leaf", str(res["index"])]).stdout.encode()
            assert leaf_hash(leaf).hex() == res["leaf_hash"], name
            stored = json.loads(leaf)
            assert set(stored) == {"payload", "payloadType", "signatures"}, name
            assert verify_dsse(stored, pubs) in ([spki_keyid(p)] for p in pubs), name
        else:
            assert res["status"] == "rejected", (name, res)
            assert want in res["error"], (name, res["error"])
            assert "\n" not in res["error"]
    appended = sum(want is None for _, _, want in listed)
    assert (doc["appended"], doc["rejected"]) == (appended, len(listed) - appended)
    assert cli(["ledger", "verify"]).exit_code == 0


def test_a_bad_signature_by_a_registered_key_is_named_as_such(
    keys: dict[str, Any], cli: Any
) -> None:
    env = dsse(keys["ed"], _payload(20))
    env["payload"] = base64.b64encode(_payload(21)).decode()  # changed after signing
    r = cli(["post", "--json"], input=json.dumps(env))
    assert r.exit_code == 1
    error = r.json()["results"][0]["error"]
    assert "registered key" in error and "does not verify" in error
    assert "not signed by a key registered" not in error


def test_a_pretty_printed_envelope_with_trailing_garbage_is_one_rejection(
    keys: dict[str, Any], cli: Any
) -> None:
    text = json.dumps(dsse(keys["ed"], _payload(30)), indent=2) + "\n}\n"
    r = cli(["post", "--json"], input=text)
    assert r.exit_code == 1
    doc = r.json()
    assert [res["line"] for res in doc["results"]] == [1]
    assert "not valid JSON" in doc["results"][0]["error"]


def test_a_pretty_printed_envelope_with_crlf_and_bom_is_appended(
    keys: dict[str, Any], cli: Any
) -> None:
    text = json.dumps(dsse(keys["p256"], _payload(31)), indent=2).replace("\n", "\r\n")
    r = cli(["post"], input=b"\xef\xbb\xbf" + text.encode())
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.startswith("appended ")


def test_a_valid_payload_signed_by_both_of_two_keys(keys: dict[str, Any], cli: Any) -> None:
    env = dsse([keys["ed"], keys["p256"]], _payload(32))
    r = cli(["post", "--json"], input=json.dumps(env))
    assert r.exit_code == 0, r.stdout
    index = r.json()["results"][0]["index"]
    stored = json.loads(cli(["ledger", "leaf", str(index)]).stdout)
    assert len(verify_dsse(stored, [keys["ed"].public_key(), keys["p256"].public_key()], 2)) == 2
