"""DSSE: PAE, the spec's test vector, envelopes, thresholds, and bad input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from escrow.documents.canonical import canonical_bytes
from escrow.documents.types import PAYLOAD_TYPE
from escrow.errors import InputError, SchemaError, SignatureError
from escrow.signing.dsse import Envelope, Signature, pae, sign_statement
from escrow.signing.keys import KeyType, PublicKey, SigningKey

# -- the DSSE protocol's test vector (protocol.md, "Test Vectors") ------------
VECTOR_TYPE = "http://example.com/HelloWorld"
VECTOR_BODY = b"hello world"
VECTOR_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
VECTOR_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
VECTOR_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
VECTOR_D = 97358161215184420915383655311931858321456579547487070936769975997791359926199
VECTOR_ENVELOPE = {
    "payload": "aGVsbG8gd29ybGQ=",
    "payloadType": "http://example.com/HelloWorld",
    "signatures": [
        {
            "sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKci"
            "JTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
        }
    ],
}


def test_pae_matches_the_dsse_test_vector() -> None:
    assert pae(VECTOR_TYPE, VECTOR_BODY) == VECTOR_PAE


def test_pae_lengths_are_utf8_byte_lengths() -> None:
    assert pae("tÿpe", b"") == "DSSEv1 5 tÿpe 0 ".encode()


def _vector_public() -> PublicKey:
    numbers = ec.EllipticCurvePublicNumbers(VECTOR_X, VECTOR_Y, ec.SECP256R1())
    return PublicKey(numbers.public_key())


def test_dsse_test_vector_signature_verifies_over_our_pae() -> None:
    env = Envelope.from_dict(VECTOR_ENVELOPE)
    assert env.payload == VECTOR_BODY
    assert env.payload_type == VECTOR_TYPE
    assert env.signatures[0].keyid == ""
    raw = env.signatures[0].sig  # the vector uses raw r||s; escrow uses DER
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub = _vector_public()
    pub.verify(der, pae(env.payload_type, env.payload))
    # and the DER form, in an envelope, verifies with Envelope.verify
    again = Envelope(env.payload, env.payload_type, (Signature("", der),))
    assert again.verify([pub], payload_type=VECTOR_TYPE) == [pub.keyid]
    with pytest.raises(SignatureError):
        pub.verify(der, pae(env.payload_type, b"hello World"))


def test_dsse_test_vector_private_key_matches_and_signs() -> None:
    priv = ec.derive_private_key(VECTOR_D, ec.SECP256R1())
    assert priv.public_key().public_numbers().x == VECTOR_X
    env = Envelope(VECTOR_BODY, VECTOR_TYPE).signed_by(SigningKey(priv))
    assert env.verify([_vector_public()], payload_type=VECTOR_TYPE) == [_vector_public().keyid]


# -- envelopes -----------------------------------------------------------------
def test_sign_statement_round_trip(key: SigningKey, statement: dict[str, Any]) -> None:
    env = sign_statement(statement, key)
    assert env.payload == canonical_bytes(statement)
    assert env.payload_type == PAYLOAD_TYPE
    data = env.to_bytes()
    assert data == canonical_bytes(json.loads(data))  # stored form is canonical
    back = Envelope.from_bytes(data)
    assert back == env
    assert back.read_statement() == statement
    assert back.verify([key.public]) == [key.keyid]


def test_ecdsa_signatures_are_der(statement: dict[str, Any]) -> None:
    key = SigningKey.generate(KeyType.ECDSA_P256)
    sig = sign_statement(statement, key).signatures[0].sig
    r, s = decode_dss_signature(sig)  # raises on anything but DER
    assert r > 0 and s > 0


@pytest.mark.parametrize(
    "encode",
    [
        base64.b64encode,
        base64.urlsafe_b64encode,
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
        lambda b: base64.b64encode(b).rstrip(b"="),
    ],
    ids=["standard", "url-safe", "url-safe-unpadded", "standard-unpadded"],
)
def test_both_base64_alphabets_are_accepted(
    encode: Any, key: SigningKey, statement: dict[str, Any]
) -> None:
    # a payload whose base64 uses '+' and '/' (or '-' and '_')
    statement = {**statement, "predicate": {**statement["predicate"], "project": "é?>~\xff" * 7}}
    env = Envelope(canonical_bytes(statement)).signed_by(key)
    d = {
        "payload": encode(env.payload).decode(),
        "payloadType": env.payload_type,
        "signatures": [{"keyid": key.keyid, "sig": encode(env.signatures[0].sig).decode()}],
    }
    assert Envelope.from_dict(d) == env
    assert Envelope.from_dict(d).verify([key.public]) == [key.keyid]


@pytest.mark.parametrize("what", ["payload", "payloadType", "signature"])
def test_tampering_is_detected(what: str, key: SigningKey, statement: dict[str, Any]) -> None:
    env = sign_statement(statement, key)
    if what == "payload":
        env = Envelope(
            env.payload.replace(b"example", b"exampl3"), env.payload_type, env.signatures
        )
    elif what == "payloadType":
        env = Envelope(env.payload, "application/json", env.signatures)
    else:
        s = env.signatures[0]
        # flip a bit: overwriting the last byte with 0 left it unchanged 1 time in 256
        flipped = s.sig[:-1] + bytes([s.sig[-1] ^ 1])
        env = Envelope(env.payload, env.payload_type, (Signature(s.keyid, flipped),))
    with pytest.raises(SignatureError):
        env.verify([key.public], payload_type=None)


def test_wrong_payload_type_is_an_input_error(key: SigningKey, statement: dict[str, Any]) -> None:
    env = Envelope(canonical_bytes(statement), "application/json").signed_by(key)
    with pytest.raises(InputError, match="payloadType is 'application/json'"):
        env.verify([key.public])
    with pytest.raises(InputError, match="payloadType"):
        env.read_statement()


def test_sign_statement_refuses_an_invalid_statement(
    key: SigningKey, statement: dict[str, Any]
) -> None:
    bad = {**statement, "subject": [{"name": "x"}]}
    with pytest.raises(SchemaError) as e:
        sign_statement(bad, key)
    assert e.value.pointer == "/subject/0/digest"
    assert "/subject/0/digest: a required property is missing" in e.value.diagnostics()


# -- multi-signature and thresholds ---------------------------------------------
A, B, C = (SigningKey.generate(t) for t in (KeyType.ED25519, KeyType.ECDSA_P256, KeyType.ED25519))


def _named(names: str) -> list[SigningKey]:
    return [{"a": A, "b": B, "c": C}[n] for n in names]


@pytest.mark.parametrize(
    ("signers", "trusted", "threshold", "expected"),
    [
        ("a", "a", 1, "a"),
        ("ab", "ab", 2, "ab"),
        ("ba", "ab", 2, "ba"),
        ("ab", "a", 1, "a"),
        ("abc", "abc", 2, "abc"),
        ("aa", "ab", 2, SignatureError),  # one key signing twice counts once
        ("ab", "ac", 2, SignatureError),  # b is not trusted
        ("c", "ab", 1, SignatureError),  # no trusted signer
        ("a", "ab", 3, InputError),  # threshold above the number of trusted keys
        ("a", "a", 0, InputError),
        ("a", "", 1, InputError),  # nothing to verify with: fail closed
    ],
    ids=[
        "one-of-one",
        "two-of-two",
        "two-of-two-any-order",
        "untrusted-extra-signature-ignored",
        "three-signers-threshold-two",
        "duplicate-key-counts-once",
        "untrusted-second-signer",
        "unknown-signer",
        "threshold-above-trusted-keys",
        "threshold-zero",
        "no-trusted-keys",
    ],
)
def test_threshold_counts_distinct_trusted_keys(
    signers: str, trusted: str, threshold: int, expected: Any, statement: dict[str, Any]
) -> None:
    env = sign_statement(statement, _named(signers))
    assert len(env.signatures) == len(signers)
    keys = [k.public for k in _named(trusted)]
    if isinstance(expected, str):
        assert env.verify(keys, threshold) == [k.keyid for k in _named(expected)]
    else:
        with pytest.raises(expected):
            env.verify(keys, threshold)


def test_keyid_is_only_a_hint(statement: dict[str, Any]) -> None:
    env = sign_statement(statement, A)
    blank = Envelope(env.payload, env.payload_type, (Signature("", env.signatures[0].sig),))
    assert blank.verify([C.public, A.public]) == [A.keyid]
    # labels of a mapping do not make one key count twice
    with pytest.raises(InputError, match="more than the 1 distinct"):
        env.verify({"x": A.public, "y": A.public}, threshold=2)


def test_check_reports_each_signature(statement: dict[str, Any]) -> None:
    env = sign_statement(statement, [A, C, A])
    checks = env.check([A.public, B.public])
    assert [(c.verified_by, c.duplicate) for c in checks] == [
        (A.keyid, False),
        (None, False),
        (A.keyid, True),
    ]


# -- bad envelopes: one clear error each ----------------------------------------
GOOD = {
    "payload": "e30=",
    "payloadType": PAYLOAD_TYPE,
    "signatures": [{"keyid": "", "sig": "AA=="}],
}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"", "is empty"),
        (b'{"payload": "e30=", "payloadType": "applic', "not valid JSON"),
        (b"payload: e30=", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"[]", "not a JSON object"),
        (json.dumps({**GOOD, "payload": None}), "'payload'"),
        (json.dumps({**GOOD, "payload": "e30=!"}), "payload is not valid base64"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "payloadType"}), "'payloadType'"),
        (json.dumps({**GOOD, "signatures": []}), "no signatures"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "signatures"}), "no signatures"),
        (json.dumps({**GOOD, "signatures": [{"keyid": "k"}]}), "no string field 'sig'"),
        (json.dumps({**GOOD, "signatures": ["AA=="]}), "no string field 'sig'"),
        (json.dumps({**GOOD, "signatures": [{"keyid": 7, "sig": "AA=="}]}), "non-string 'keyid'"),
        (json.dumps({**GOOD, "signatures": [{"sig": "%%"}]}), "signatures[0].sig is not valid"),
        (json.dumps({**GOOD, "signatures": [{"sig": ""}]}), "is empty"),
    ],
    ids=[
        "empty",
        "truncated",
        "not-json",
        "not-utf8",
        "array",
        "payload-not-string",
        "payload-not-base64",
        "no-payload-type",
        "empty-signatures",
        "no-signatures-field",
        "signature-without-sig",
        "signature-not-object",
        "keyid-not-string",
        "sig-not-base64",
        "sig-empty",
    ],
)
def test_bad_envelopes_get_one_clear_error(text: bytes | str, fragment: str) -> None:
    with pytest.raises(InputError) as e:
        Envelope.from_bytes(text)
    message = e.value.diagnostics()
    assert fragment in message
    assert "\n" not in message
    assert e.value.exit_code == 2


def test_an_envelope_without_signatures_never_verifies(key: SigningKey) -> None:
    env = Envelope(b"{}")
    with pytest.raises(SignatureError, match="no signatures"):
        env.verify([key.public])
