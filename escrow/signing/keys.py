"""Signing keys: Ed25519 (default) and ECDSA P-256.

Key ID = hex SHA-256 of the DER SubjectPublicKeyInfo.  Private keys are
PKCS#8 PEM, encrypted with a passphrase when one is given.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from escrow.documents.types import KeyID
from escrow.errors import InputError, KeyLocked, SignatureError
from escrow.signing.keyfile import (
    ENCRYPTED_MARKER,
    create_file,
    public_key_path,
    read_key_file,
)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKeyT = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class KeyType(StrEnum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


def key_id_of(public: PublicKeyT) -> KeyID:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyID(hashlib.sha256(der).hexdigest())


def _type_of(public: PublicKeyT) -> KeyType:
    if isinstance(public, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(public.curve, ec.SECP256R1):
        return KeyType.ECDSA_P256
    raise InputError(f"Unsupported elliptic curve {public.curve.name}; use Ed25519 or P-256.")


@dataclass(frozen=True)
class PublicKey:
    """A verifying key."""

    key: PublicKeyT

    @functools.cached_property
    def keyid(self) -> KeyID:
        """Hex SHA-256 of the DER SubjectPublicKeyInfo (computed once per key object)."""
        return key_id_of(self.key)

    @property
    def type(self) -> KeyType:
        return _type_of(self.key)

    def pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def raw(self) -> bytes:
        """32-byte raw Ed25519 key (used by signed notes)."""
        return self._raw

    @functools.cached_property
    def _raw(self) -> bytes:
        if not isinstance(self.key, ed25519.Ed25519PublicKey):
            raise InputError("Only Ed25519 keys have a raw 32-byte form.")
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is valid over ``data``."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as e:
            raise SignatureError(f"The signature by key {self.keyid[:16]}… does not verify.") from e

    @classmethod
    def from_pem(cls, pem: str | bytes) -> PublicKey:
        try:
            data = pem.encode("ascii") if isinstance(pem, str) else pem
        except UnicodeEncodeError as e:
            raise InputError("Not a PEM public key: it holds characters that are not ASCII.") from e
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise InputError(f"Not a PEM public key: {e}.") from e
        if not isinstance(key, ed25519.Ed25519PublicKey) and not (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            raise OtherAlgorithm(_algorithm_of(key))
        pub = cls(key)
        return pub

    @classmethod
    def from_raw_ed25519(cls, raw: bytes) -> PublicKey:
        return cls(ed25519.Ed25519PublicKey.from_public_bytes(raw))


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs."""

    key: PrivateKey

    @functools.cached_property
    def public(self) -> PublicKey:
        """The verifying key (derived once per key object)."""
        return PublicKey(self.key.public_key())

    @property
    def keyid(self) -> KeyID:
        return self.public.keyid

    @property
    def type(self) -> KeyType:
        return self.public.type

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    @classmethod
    def generate(cls, key_type: KeyType = KeyType.ED25519) -> SigningKey:
        if key_type is KeyType.ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def private_pem(self, passphrase: str | None = None) -> bytes:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase_bytes(passphrase))
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
        )

    def save(self, path: Path, passphrase: str | None = None) -> None:
        """Write the key to ``path`` (mode 0600), and its public key beside it unless one
        is there; never overwrites an existing file.  Each file appears whole or not at
        all (:func:`create_file`): a full disk or a kill leaves no truncated key."""
        path.parent.mkdir(parents=True, exist_ok=True)
        create_file(path, self.private_pem(passphrase), 0o600)
        with contextlib.suppress(FileExistsError):
            create_file(public_key_path(path), self.public.pem().encode("ascii"), 0o644)

    @classmethod
    def load(cls, path: Path, passphrase: str | None = None) -> SigningKey:
        return cls.parse(read_key_file(path, passphrase), path, passphrase)

    @classmethod
    def parse(cls, data: bytes, path: Path, passphrase: str | None = None) -> SigningKey:
        """The key in ``data``, the PEM bytes :func:`read_key_file` read from ``path``."""
        # PKCS#8 ("ENCRYPTED PRIVATE KEY") or OpenSSL's traditional PEM encryption
        # (`openssl ec -aes256`: "Proc-Type: 4,ENCRYPTED"), which was taken for no key
        encrypted = ENCRYPTED_MARKER in data or _LEGACY_ENCRYPTED in data
        if encrypted and not passphrase:
            raise KeyLocked(
                f"The signing key {path} is encrypted and no passphrase was given.",
                hint="Set ESCROW_KEY_PASSPHRASE.",
            )
        try:
            key = serialization.load_pem_private_key(
                data, password=passphrase_bytes(passphrase) if encrypted and passphrase else None
            )
        except (ValueError, TypeError) as e:
            if encrypted:
                raise KeyLocked(
                    f"The passphrase for the signing key {path} is wrong.",
                    hint="Check ESCROW_KEY_PASSPHRASE.",
                ) from e
            raise InputError(f"The signing key {path} is not a PKCS#8 PEM private key.") from e
        if not isinstance(key, ed25519.Ed25519PrivateKey) and not (
            isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            if isinstance(key, ec.EllipticCurvePrivateKey):
                raise InputError(
                    f"Unsupported elliptic curve {key.curve.name} in the key {path}; escrow "
                    "signs with Ed25519 and ECDSA P-256 only."
                )
            raise InputError(
                f"The key {path} is {_algorithm_of(key)} key; escrow signs with Ed25519 and "
                "ECDSA P-256 only."
            )
        return cls(key)


_LEGACY_ENCRYPTED = b"Proc-Type: 4,ENCRYPTED"


class OtherAlgorithm(InputError):
    """A public key of an algorithm escrow does not take; ``algorithm`` names it as
    :func:`_algorithm_of` does ("an RSA (2048-bit)")."""

    def __init__(self, algorithm: str) -> None:
        super().__init__(
            f"The public key is {algorithm} key; escrow takes Ed25519 and ECDSA P-256 only."
        )
        self.algorithm = algorithm


def _algorithm_of(key: object) -> str:
    """``an RSA``, ``an ECDSA secp384r1``, … : what a key of another algorithm is, to name it."""
    from cryptography.hazmat.primitives.asymmetric import ed448, rsa, x448, x25519

    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"an RSA ({key.key_size}-bit)"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an ECDSA {key.curve.name}"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448"
    if isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey):
        return "an X25519"
    if isinstance(key, x448.X448PrivateKey | x448.X448PublicKey):
        return "an X448"
    return f"a {type(key).__name__.removeprefix('_')}"


def passphrase_bytes(passphrase: str) -> bytes:
    """The bytes of a passphrase: its UTF-8, and bytes that are not UTF-8 (from
    ESCROW_KEY_PASSPHRASE or a prompt read from a pipe) as they were given, as `openssl
    -passin env:…` takes them (``.encode("utf-8")`` ended in a traceback)."""
    return passphrase.encode("utf-8", "surrogateescape")


def b64decode_any(text: str | bytes) -> bytes:
    """Decode standard or URL-safe base64, padded or not (DSSE accepts both)."""
    s = text.decode("ascii") if isinstance(text, bytes) else text
    s = s.strip().replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except ValueError as e:  # binascii.Error is a ValueError
        raise InputError("The value is not valid base64.") from e
