"""Escrow's envelopes checked by tools escrow did not write: securesystemslib and OpenSSL."""

from __future__ import annotations

import base64
import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from escrow.documents.canonical import canonical_bytes
from escrow.signing.dsse import Envelope, pae, sign_statement
from escrow.signing.keys import KeyType, PublicKey, SigningKey


def _sslib_key(pub: PublicKey) -> SSlibKey:
    return SSlibKey.from_crypto(pub.key, keyid=pub.keyid)


# -- securesystemslib ------------------------------------------------------------
def test_securesystemslib_verifies_escrow_envelopes(
    key: SigningKey, statement: dict[str, Any]
) -> None:
    env = sign_statement(statement, key)
    theirs = SslibEnvelope.from_dict(copy.deepcopy(env.to_dict()))
    assert theirs.pae() == pae(env.payload_type, env.payload)
    accepted = theirs.verify([_sslib_key(key.public)], 1)
    assert list(accepted) == [key.keyid]


def test_securesystemslib_rejects_a_tampered_payload(
    key: SigningKey, statement: dict[str, Any]
) -> None:
    env = sign_statement(statement, key).to_dict()
    forged = {**statement, "predicate": {**statement["predicate"], "project": "forged"}}
    env["payload"] = Envelope(canonical_bytes(forged)).to_dict()["payload"]
    theirs = SslibEnvelope.from_dict(env)
    with pytest.raises(VerificationError):
        theirs.verify([_sslib_key(key.public)], 1)


def test_securesystemslib_threshold_on_a_multi_signature_envelope(
    statement: dict[str, Any],
) -> None:
    a, b = SigningKey.generate(KeyType.ED25519), SigningKey.generate(KeyType.ECDSA_P256)
    env = sign_statement(statement, [a, b])
    theirs = SslibEnvelope.from_dict(copy.deepcopy(env.to_dict()))
    assert set(theirs.verify([_sslib_key(a.public), _sslib_key(b.public)], 2)) == {
        a.keyid,
        b.keyid,
    }
    only_a = SslibEnvelope.from_dict(copy.deepcopy(sign_statement(statement, a).to_dict()))
    with pytest.raises(VerificationError):
        only_a.verify([_sslib_key(a.public), _sslib_key(b.public)], 2)


def test_escrow_verifies_securesystemslib_envelopes(
    key: SigningKey, statement: dict[str, Any]
) -> None:
    signer = CryptoSigner(key.key, _sslib_key(key.public))
    theirs = SslibEnvelope(canonical_bytes(statement), "application/vnd.in-toto+json", {})
    theirs.sign(signer)
    ours = Envelope.from_dict(theirs.to_dict())
    assert ours.verify([key.public]) == [key.keyid]
    assert ours.read_statement() == statement


# -- OpenSSL ---------------------------------------------------------------------
def _files(tmp_path: Path, key: SigningKey, data: bytes, sig: bytes) -> tuple[Path, Path, Path]:
    pub, msg, sigf = tmp_path / "pub.pem", tmp_path / "pae.bin", tmp_path / "sig.bin"
    pub.write_text(key.public.pem())
    msg.write_bytes(data)
    sigf.write_bytes(sig)
    return pub, msg, sigf


def _openssl_verify(
    key: SigningKey, pub: Path, msg: Path, sigf: Path
) -> subprocess.CompletedProcess[str]:
    if key.type is KeyType.ED25519:
        args = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin"]
        args += ["-in", str(msg), "-sigfile", str(sigf)]
    else:
        args = ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sigf)]
        args += [str(msg)]
    return subprocess.run(args, capture_output=True, text=True)


@pytest.mark.parametrize("tamper", [False, True], ids=["intact", "tampered"])
def test_openssl_verifies_the_signature_over_pae(
    key: SigningKey, statement: dict[str, Any], tmp_path: Path, tamper: bool
) -> None:
    env = sign_statement(statement, key)
    data = pae(env.payload_type, env.payload)
    if tamper:
        data = data.replace(b"identical", b"different")
    pub, msg, sigf = _files(tmp_path, key, data, env.signatures[0].sig)
    r = _openssl_verify(key, pub, msg, sigf)
    if tamper:
        # a refused signature, not some other failure (a bad key or file)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "verification failure" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    else:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Verified" in r.stdout and "Failure" not in r.stdout


def test_escrow_verifies_an_openssl_signature_over_pae(
    key: SigningKey, statement: dict[str, Any], tmp_path: Path
) -> None:
    priv = tmp_path / "k.key.pem"
    key.save(priv)
    payload = canonical_bytes(statement)
    msg = tmp_path / "pae.bin"
    msg.write_bytes(pae("application/vnd.in-toto+json", payload))
    if key.type is KeyType.ED25519:
        args = ["openssl", "pkeyutl", "-sign", "-inkey", str(priv), "-rawin", "-in", str(msg)]
    else:
        args = ["openssl", "dgst", "-sha256", "-sign", str(priv), str(msg)]
    sig = subprocess.run(args, check=True, capture_output=True).stdout
    env = Envelope.from_dict(
        {
            "payload": Envelope(payload).to_dict()["payload"],
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"keyid": key.keyid, "sig": base64.b64encode(sig).decode()}],
        }
    )
    assert env.verify([key.public]) == [key.keyid]
