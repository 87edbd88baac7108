"""C2SP signed-note checkpoints: exact format, Go's note test vector, rejection cases."""

from __future__ import annotations

import base64
import hashlib

import pytest

from escrow.errors import InputError, SignatureError
from escrow.ledger.checkpoint import (
    open_note,
    sign_checkpoint,
    sign_note,
    verifier_key_line,
    verify_checkpoint,
)
from escrow.signing.keys import SigningKey

# The example of golang.org/x/mod/sumdb/note's documentation.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_signer() -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    seed = base64.b64decode(GO_SKEY.split("+", 4)[-1])
    assert seed[0] == 1
    return SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(seed[1:]))


def test_go_note_vector_signs_and_verifies_identically() -> None:
    key = go_signer()
    assert verifier_key_line("PeterNeumann", key.public) == GO_VKEY
    assert sign_note(GO_TEXT, key, "PeterNeumann") == GO_NOTE
    assert open_note(GO_NOTE, GO_VKEY) == GO_TEXT
    with pytest.raises(SignatureError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), GO_VKEY)


def test_checkpoint_format_is_exact() -> None:
    key = SigningKey.generate()
    root = hashlib.sha256(b"root").digest()
    note = sign_checkpoint("example.com/log", 42, root, key, "example.com/log")
    body, _, sig_line = note.partition("\n\n")
    assert body + "\n" == f"example.com/log\n42\n{base64.b64encode(root).decode()}\n"
    assert sig_line.startswith("\u2014 example.com/log ") and sig_line.endswith("\n")
    blob = base64.b64decode(sig_line.split(" ")[2])
    raw = key.public.raw()
    want_hash = hashlib.sha256(b"example.com/log\n\x01" + raw).digest()[:4]
    assert blob[:4] == want_hash and len(blob) == 4 + 64
    key.public.verify(blob[4:], (body + "\n").encode())
    vkey = verifier_key_line("example.com/log", key.public)
    key_b64 = base64.b64encode(b"\x01" + raw).decode()
    assert vkey == f"example.com/log+{want_hash.hex()}+{key_b64}"
    cp = verify_checkpoint(note, vkey)
    assert (cp.origin, cp.size, cp.root, cp.note) == ("example.com/log", 42, root, note)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda n: n.replace("\n42\n", "\n43\n"), id="size-changed"),
        pytest.param(lambda n: n.replace("example.com/log\n", "example.org/log\n", 1), id="origin"),
        pytest.param(lambda n: n.replace("\u2014 example.com/log", "\u2014 other"), id="key-name"),
    ],
)
def test_checkpoint_tampering_is_rejected(mangle: object) -> None:
    key = SigningKey.generate()
    note = sign_checkpoint("example.com/log", 42, bytes(32), key, "example.com/log")
    vkey = verifier_key_line("example.com/log", key.public)
    with pytest.raises(SignatureError):
        verify_checkpoint(mangle(note), vkey)  # type: ignore[operator]


def test_checkpoint_by_another_key_is_rejected() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    note = sign_checkpoint("log", 1, bytes(32), other, "log")
    with pytest.raises(SignatureError, match="not signed by the log key"):
        verify_checkpoint(note, verifier_key_line("log", key.public))


@pytest.mark.parametrize(
    "bad",
    ["nonsense", "log+zz+AAAA", "log+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"],
)
def test_bad_verifier_keys(bad: str) -> None:
    with pytest.raises(InputError):
        open_note(GO_NOTE, bad)


def test_names_with_spaces_or_plus_are_refused() -> None:
    key = SigningKey.generate()
    for name in ("a b", "a+b", ""):
        with pytest.raises(InputError):
            verifier_key_line(name, key.public)


def test_key_events_line_round_trips_and_malformed_lines_are_refused() -> None:
    import hashlib

    from escrow.errors import InputError
    from escrow.ledger import checkpoint as cpmod

    count, digest = cpmod.key_events_digest([(0, b"\x01" * 32), (7, b"\x02" * 32)])
    assert count == 2
    assert (
        digest
        == hashlib.sha256(
            (0).to_bytes(8, "big") + b"\x01" * 32 + (7).to_bytes(8, "big") + b"\x02" * 32
        ).digest()
    )
    body = cpmod.checkpoint_body("o", 9, b"\x00" * 32, [cpmod.key_events_line(count, digest)])
    assert cpmod.parse_checkpoint_body(body) == ("o", 9, b"\x00" * 32)
    assert cpmod.parse_key_events(body) == (2, digest)
    assert cpmod.parse_key_events(cpmod.checkpoint_body("o", 9, b"\x00" * 32)) is None
    for bad in ("key-events two AAAA", "key-events 2", "key-events 2 AAAA", "key-events 2 !!"):
        with pytest.raises(InputError, match="key-events"):
            cpmod.parse_key_events(f"o\n9\n{'A' * 43}=\n{bad}\n")
    with pytest.raises(InputError, match="one non-empty line"):
        cpmod.checkpoint_body("o", 9, b"\x00" * 32, ["a\nb"])
