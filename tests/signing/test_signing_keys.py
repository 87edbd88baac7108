"""Keys: key IDs, PKCS#8 PEM files (encrypted or not), and the errors around them."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from escrow.errors import InputError, KeyLocked
from escrow.signing.keys import KeyType, PublicKey, SigningKey, b64decode_any


def test_key_id_is_sha256_of_der_spki_as_openssl_computes_it(
    key: SigningKey, tmp_path: Path
) -> None:
    pub = tmp_path / "pub.pem"
    pub.write_text(key.public.pem())
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    assert key.keyid == hashlib.sha256(der).hexdigest()
    assert PublicKey.from_pem(key.public.pem()).keyid == key.keyid


@pytest.mark.parametrize("passphrase", [None, "correct horse"], ids=["plain", "encrypted"])
def test_private_key_files_are_pkcs8_pem_mode_0600(
    key: SigningKey, passphrase: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "k.key.pem"
    key.save(path, passphrase)
    text = path.read_text()
    header = "ENCRYPTED PRIVATE KEY" if passphrase else "PRIVATE KEY"
    assert text.startswith(f"-----BEGIN {header}-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "k.pub.pem").read_text() == key.public.pem()
    assert SigningKey.load(path, passphrase).keyid == key.keyid
    # an independent reader (OpenSSL) opens it with the same passphrase
    args = ["openssl", "pkey", "-in", str(path), "-pubout"]
    if passphrase:
        args += ["-passin", f"pass:{passphrase}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    assert PublicKey.from_pem(out).keyid == key.keyid


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.key.pem"
    first = SigningKey.generate()
    first.save(path)
    with pytest.raises(FileExistsError):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).keyid == first.keyid


@pytest.mark.parametrize(
    ("setup", "passphrase", "error", "fragment"),
    [
        ("encrypted", "wrong", KeyLocked, "passphrase for the signing key"),
        ("encrypted", None, KeyLocked, "is encrypted and no passphrase was given"),
        ("missing", None, KeyLocked, "does not exist"),
        ("garbage", None, InputError, "is not a PKCS#8 PEM private key"),
        ("p384", None, InputError, "Unsupported elliptic curve"),
    ],
    ids=["wrong-passphrase", "no-passphrase", "missing", "garbage", "unsupported-curve"],
)
def test_unusable_keys_get_one_line_errors(
    setup: str, passphrase: str | None, error: type[Exception], fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "k.key.pem"
    if setup == "encrypted":
        SigningKey.generate().save(path, "right")
    elif setup == "garbage":
        path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    elif setup == "p384":
        SigningKey(ec.generate_private_key(ec.SECP384R1())).save(path)
    with pytest.raises(error) as e:
        SigningKey.load(path, passphrase)
    assert fragment in str(e.value)
    assert "\n" not in e.value.diagnostics()  # type: ignore[attr-defined]
    if error is KeyLocked:
        assert e.value.exit_code == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aGk/+/8+", b"hi?\xfb\xff>"),
        ("aGk_-_8-", b"hi?\xfb\xff>"),
        ("aGk", b"hi"),
        ("aGk=", b"hi"),
        ("", b""),
    ],
    ids=["standard", "url-safe", "unpadded", "padded", "empty"],
)
def test_b64decode_any(text: str, expected: bytes) -> None:
    assert b64decode_any(text) == expected


@pytest.mark.parametrize("text", ["a", "a$b=", "aGk=aGk="], ids=["one-char", "symbol", "padding"])
def test_b64decode_any_rejects_garbage(text: str) -> None:
    with pytest.raises(InputError, match="not valid base64"):
        b64decode_any(text)


def test_key_types() -> None:
    assert SigningKey.generate().type is KeyType.ED25519
    assert SigningKey.generate(KeyType.ECDSA_P256).type is KeyType.ECDSA_P256
