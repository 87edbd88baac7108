"""Independent reference code for the review-9 interop tests (no escrow imports).

RFC 9162 §2.1 Merkle tree hashes, proofs and their verification, C2SP signed notes, and
DSSE envelopes made by hand with ``cryptography``: what another tool integrating with
escrow would write, so escrow's answers are checked against something it did not write.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# -- RFC 9162 §2.1 ------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *hashes* (§2.1.1)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _k(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (§2.1.3.1)."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (§2.1.4.1)."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def consistency(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (§2.1.4.1); empty for m == 0 or m == n."""
    if m == 0 or m == len(leaves):
        return []
    return subproof(m, leaves, True)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """§2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = node_hash(r, p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> bool:
    """§2.1.4.2, step by step (with the RFC's special cases for first == second and 0)."""
    if first > second:
        return False
    if first == second:
        return len(proof) == 0 and first_hash == second_hash
    if first == 0:
        return len(proof) == 0
    p = list(proof)
    if first & (first - 1) == 0:  # an exact power of two
        p = [first_hash, *p]
    if not p:
        return False
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = p[0]
    for c in p[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = node_hash(sr, c)
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0


# -- C2SP signed notes ----------------------------------------------------------------

EM_DASH = "\u2014"


def note_key_hash(name: str, raw_pub: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + raw_pub).digest()[:4]


def parse_verifier_key(line: str) -> tuple[str, bytes, bytes]:
    """``(name, key hash, raw Ed25519 key)`` of ``<name>+<hex8>+<base64(0x01||key)>``."""
    name, hexhash, b64 = line.split("+", 2)
    blob = base64.b64decode(b64, validate=True)
    assert len(blob) == 33 and blob[0] == 1, "not an Ed25519 note key"
    khash = bytes.fromhex(hexhash)
    assert len(hexhash) == 8 and khash == note_key_hash(name, blob[1:]), "bad key hash"
    return name, khash, blob[1:]


def open_checkpoint(note: str, verifier_key: str) -> tuple[str, int, bytes, list[str]]:
    """``(origin, size, root, extension lines)`` of a checkpoint signed by ``verifier_key``;
    AssertionError when the note is malformed or no signature line verifies."""
    name, khash, raw = parse_verifier_key(verifier_key)
    assert note.endswith("\n"), "a note ends in a newline"
    body, sep, sigblock = note.partition("\n\n")
    assert sep, "no blank line before the signatures"
    text = body + "\n"
    verified = False
    for line in sigblock[:-1].split("\n"):
        assert line.startswith(EM_DASH + " "), f"bad signature line {line!r}"
        sig_name, b64 = line[2:].split(" ")
        blob = base64.b64decode(b64, validate=True)
        if sig_name != name or blob[:4] != khash:
            continue
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(blob[4:], text.encode())
        except InvalidSignature:
            continue
        verified = True
    assert verified, "no signature by the verifier key verifies"
    lines = text.split("\n")[:-1]
    origin, size, root_b64, *ext = lines
    assert size.isascii() and size.isdigit() and (size == "0" or not size.startswith("0"))
    root = base64.b64decode(root_b64, validate=True)
    assert len(root) == 32
    return origin, int(size), root, ext


# -- DSSE and in-toto, by hand --------------------------------------------------------

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 PAE: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    t = payload_type.encode("utf-8")
    return b" ".join([b"DSSEv1", str(len(t)).encode(), t, str(len(payload)).encode(), payload])


def spki_keyid(pub: Any) -> str:
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def public_pem(priv: PrivateKey) -> bytes:
    return priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def raw_signature(priv: PrivateKey, data: bytes) -> bytes:
    if isinstance(priv, ed25519.Ed25519PrivateKey):
        return priv.sign(data)
    return priv.sign(data, ec.ECDSA(hashes.SHA256()))


def dsse(
    priv: PrivateKey | Sequence[PrivateKey],
    payload: bytes,
    payload_type: str = PAYLOAD_TYPE,
    *,
    b64: Any = base64.b64encode,
) -> dict[str, Any]:
    keys = [priv] if not isinstance(priv, Sequence) else list(priv)
    sigs = [
        {
            "keyid": spki_keyid(k.public_key()),
            "sig": b64(raw_signature(k, pae(payload_type, payload))).decode(),
        }
        for k in keys
    ]
    return {"payloadType": payload_type, "payload": b64(payload).decode(), "signatures": sigs}


def statement_bytes(statement: dict[str, Any]) -> bytes:
    """Another tool's serialisation: sorted keys, compact, not RFC 8785 in general."""
    return json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()


def verify_dsse(envelope: dict[str, Any], pubs: Sequence[Any], threshold: int = 1) -> list[str]:
    """Key IDs of the distinct keys of ``pubs`` whose signature verifies; AssertionError when
    fewer than ``threshold``."""
    payload = base64.b64decode(envelope["payload"], validate=True)
    data = pae(envelope["payloadType"], payload)
    good: list[str] = []
    for s in envelope["signatures"]:
        sig = base64.b64decode(s["sig"], validate=True)
        for pub in pubs:
            kid = spki_keyid(pub)
            if kid in good:
                continue
            try:
                if isinstance(pub, ed25519.Ed25519PublicKey):
                    pub.verify(sig, data)
                else:
                    pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            good.append(kid)
            break
    assert len(good) >= threshold, f"{len(good)} of {threshold} signatures verify"
    return good


# -- the reference checks itself (its verifiers against its own RFC 9162 proofs) ---------


def test_reference_proofs_agree_for_every_small_tree() -> None:
    leaves = [leaf_hash(b"leaf %d" % i) for i in range(34)]
    for n in range(1, len(leaves) + 1):
        root = mth(leaves[:n])
        for m in range(n):
            p = path(m, leaves[:n])
            assert verify_inclusion(m, n, leaves[m], p, root)
            assert not verify_inclusion(m, n, leaves[m], [*p, root], root)
            if p:
                assert not verify_inclusion(m, n, leaves[m], p[:-1], root)
                assert not verify_inclusion(m ^ 1 if m ^ 1 < n else m, n, leaves[m], p, root[::-1])
        for m in range(n + 1):
            c = consistency(m, leaves[:n])
            assert verify_consistency(m, n, mth(leaves[:m]), root, c)
            if 0 < m < n:
                assert not verify_consistency(m, n, mth(leaves[:m]), leaf_hash(b"x"), c)
                assert not verify_consistency(m, n, leaf_hash(b"x"), root, c)


def test_reference_matches_rfc_6962_style_known_root() -> None:
    # Three leaves: MTH = H(1 || H(1 || L0 || L1) || L2) by definition (§2.1.1).
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert mth([a, b, c]) == node_hash(node_hash(a, b), c)
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
