"""DSSE envelopes (https://github.com/secure-systems-lab/dsse), protocol v1.

Signatures are over the pre-authentication encoding::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the decimal byte length.  Envelopes are serialised as compact JSON
with the payload in standard base64; both standard and URL-safe base64 are
accepted on input.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from escrow.documents.canonical import canonical_bytes
from escrow.documents.types import PAYLOAD_TYPE, KeyID
from escrow.errors import InputError, SignatureError
from escrow.signing.keys import PublicKey, SigningKey, b64decode_any


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str = PAYLOAD_TYPE
    signatures: tuple[Signature, ...] = field(default_factory=tuple)

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        """The stored form: RFC 8785 canonical JSON of :meth:`to_dict`."""
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        if not isinstance(data, Mapping):
            raise InputError("The envelope is not a JSON object.")
        payload = data.get("payload")
        ptype = data.get("payloadType")
        sigs = data.get("signatures")
        if not isinstance(payload, str):
            raise InputError("The envelope has no string field 'payload'.")
        if not isinstance(ptype, str):
            raise InputError("The envelope has no string field 'payloadType'.")
        if not isinstance(sigs, list) or not sigs:
            raise InputError("The envelope has no signatures.")
        parsed: list[Signature] = []
        for i, s in enumerate(sigs):
            if not isinstance(s, Mapping) or not isinstance(s.get("sig"), str):
                raise InputError(f"Signature {i} of the envelope has no string field 'sig'.")
            keyid = s.get("keyid", "")
            if not isinstance(keyid, str):
                raise InputError(f"Signature {i} of the envelope has a non-string 'keyid'.")
            parsed.append(Signature(keyid=keyid, sig=b64decode_any(s["sig"])))
        return cls(payload=b64decode_any(payload), payload_type=ptype, signatures=tuple(parsed))

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Envelope:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"The envelope is not valid JSON: {e}.") from e
        return cls.from_dict(obj)

    # -- payload ------------------------------------------------------
    def statement(self) -> dict[str, Any]:
        """The decoded payload as a JSON object (not yet schema-validated)."""
        if self.payload_type != PAYLOAD_TYPE:
            raise InputError(
                f"The envelope's payloadType is {self.payload_type!r}, not {PAYLOAD_TYPE!r}."
            )
        try:
            obj = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError("The envelope's payload is not JSON.") from e
        if not isinstance(obj, dict):
            raise InputError("The envelope's payload is not a JSON object.")
        return obj

    # -- signing and verifying ----------------------------------------
    def signed_by(self, key: SigningKey) -> Envelope:
        sig = Signature(keyid=key.keyid, sig=key.sign(pae(self.payload_type, self.payload)))
        return Envelope(self.payload, self.payload_type, (*self.signatures, sig))

    def verify(
        self, trusted: Mapping[str, PublicKey] | Iterable[PublicKey], threshold: int = 1
    ) -> list[KeyID]:
        """Key IDs of the distinct trusted keys whose signatures verify.

        Raises :class:`SignatureError` when fewer than ``threshold`` do.
        """
        if threshold < 1:
            raise InputError("The signature threshold must be at least 1.")
        keys = dict(trusted) if isinstance(trusted, Mapping) else {k.keyid: k for k in trusted}
        data = pae(self.payload_type, self.payload)
        good: list[KeyID] = []
        for s in self.signatures:
            candidates = [keys[s.keyid]] if s.keyid in keys else list(keys.values())
            for key in candidates:
                if key.keyid in good:
                    continue
                try:
                    key.verify(s.sig, data)
                except SignatureError:
                    continue
                good.append(key.keyid)
                break
        if len(good) < threshold:
            if not good:
                ids = ", ".join(s.keyid[:16] or "(none)" for s in self.signatures)
                raise SignatureError(
                    f"No signature on the envelope verifies with a trusted key (key IDs: {ids})."
                )
            raise SignatureError(
                f"Only {len(good)} of the required {threshold} trusted keys signed the envelope."
            )
        return good


def sign_statement(statement: Mapping[str, Any], key: SigningKey) -> Envelope:
    """Sign the RFC 8785 canonical bytes of ``statement``."""
    return Envelope(payload=canonical_bytes(statement)).signed_by(key)
