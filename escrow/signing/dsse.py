"""DSSE envelopes (https://github.com/secure-systems-lab/dsse), protocol v1.

Signatures are over the pre-authentication encoding::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the decimal byte length.  Envelopes are serialised as RFC 8785
canonical JSON with the payload in standard base64; both standard and URL-safe
base64 are accepted on input.

Multi-signature envelopes follow the protocol's ``(t, n)`` rule: an envelope is
valid when its signatures verify with at least ``t`` *distinct* trusted keys
(distinct by key ID, the SHA-256 of the DER SubjectPublicKeyInfo), however many
signatures one key contributed.  The ``keyid`` of a signature is only a hint.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_str
from typing import Any

from escrow.documents.canonical import canonical_bytes
from escrow.documents.types import PAYLOAD_TYPE, KeyID
from escrow.errors import InputError, SignatureError
from escrow.signing.keys import PublicKey, SigningKey, b64decode_any


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload_type`` (UTF-8) and ``payload``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome for one signature of an envelope (see :meth:`Envelope.check`)."""

    index: int
    keyid: str  # as written in the envelope (a hint; may be "")
    verified_by: KeyID | None  # the trusted key it verifies with, if any
    duplicate: bool = False  # verified, but by a key already counted


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
        fast = self._ascii_canonical_bytes()
        return fast if fast is not None else canonical_bytes(self.to_dict())

    def _ascii_canonical_bytes(self) -> bytes | None:
        """:meth:`to_bytes` without the general (pure Python) RFC 8785 serialiser, when
        every string of the envelope is an ASCII ``str``; ``None`` otherwise.

        Byte for byte the RFC 8785 form then: the member names are fixed and written in
        RFC 8785 order, base64 has nothing to escape, and for ASCII text
        ``json.encoder.encode_basestring`` escapes exactly what RFC 8785 escapes
        (``"``, ``\\``, the short forms ``\\b \\f \\n \\r \\t``, other controls as
        lowercase ``\\u00xx``; DEL and everything else as is).
        """
        ptype = self.payload_type
        if type(ptype) is not str or not ptype.isascii():
            return None
        sigs = []
        for s in self.signatures:
            if type(s.keyid) is not str or not s.keyid.isascii():
                return None
            sig = base64.b64encode(s.sig).decode("ascii")
            sigs.append(f'{{"keyid":{_json_str(s.keyid)},"sig":"{sig}"}}')
        payload = base64.b64encode(self.payload).decode("ascii")
        return (
            f'{{"payload":"{payload}","payloadType":{_json_str(ptype)},'
            f'"signatures":[{",".join(sigs)}]}}'
        ).encode("ascii")

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Parse a DSSE JSON envelope; one clear :class:`InputError` for any malformation."""
        if not isinstance(data, Mapping):
            raise InputError("The envelope is not a JSON object.")
        payload = data.get("payload")
        ptype = data.get("payloadType")
        sigs = data.get("signatures")
        if not isinstance(payload, str):
            raise InputError("The envelope has no string field 'payload'.")
        if not isinstance(ptype, str) or not ptype:
            raise InputError("The envelope has no string field 'payloadType'.")
        if not isinstance(sigs, list) or not sigs:
            raise InputError("The envelope has no signatures.")
        parsed: list[Signature] = []
        for i, s in enumerate(sigs):
            if not isinstance(s, Mapping) or not isinstance(s.get("sig"), str):
                raise InputError(f"Signature {i} of the envelope has no string field 'sig'.")
            keyid = s.get("keyid", "")
            if keyid is None:
                keyid = ""
            if not isinstance(keyid, str):
                raise InputError(f"Signature {i} of the envelope has a non-string 'keyid'.")
            sig = _b64(s["sig"], f"signatures[{i}].sig")
            if not sig:
                raise InputError(f"Signature {i} of the envelope is empty.")
            parsed.append(Signature(keyid=keyid, sig=sig))
        return cls(payload=_b64(payload, "payload"), payload_type=ptype, signatures=tuple(parsed))

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Envelope:
        """Parse envelope JSON text; truncated or non-JSON input is an :class:`InputError`."""
        if isinstance(data, bytes | bytearray | str) and not data.strip():
            raise InputError("The envelope is empty.")
        try:
            if not isinstance(data, str):  # UTF-8 only (RFC 8259 §8.1), a BOM tolerated
                data = bytes(data).removeprefix(b"\xef\xbb\xbf").decode("utf-8")
            obj = json.loads(data.removeprefix("\ufeff"), object_pairs_hook=unique_members)
        except DuplicateMember as e:
            raise InputError(
                f"The envelope has the member {e.args[0]!r} twice in one object: JSON "
                "parsers disagree on which one counts, so it is refused."
            ) from e
        except UnicodeDecodeError as e:  # a ValueError too: named before it
            bom = isinstance(data, bytes | bytearray) and data.startswith(b"\xef\xbb\xbf")
            at = e.start + (3 if bom else 0)
            raise InputError(
                f"The envelope is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {at})."
            ) from e
        except ValueError as e:
            if too_long_number(e):
                raise InputError(
                    f"The envelope has a number of more than {MAX_DIGITS:,} digits, which "
                    "escrow does not read."
                ) from e
            raise InputError(f"The envelope is not valid JSON ({e}).") from e
        except RecursionError as e:
            raise InputError("The envelope is not valid JSON (it is nested too deeply).") from e
        return cls.from_dict(obj)

    # -- payload ------------------------------------------------------
    def statement(self, *, unique: bool = False) -> dict[str, Any]:
        """The payload as a JSON object, not schema-validated (see :meth:`read_statement`).

        ``unique``: refuse a payload that names one member twice in an object (what an
        append admits into the ledger: parsers disagree on which one counts, so other
        verifiers could read another statement from the same signed bytes).  Off for
        the reads of stored entries, which were checked when appended.
        """
        if self.payload_type != PAYLOAD_TYPE:
            raise InputError(
                f"The envelope's payloadType is {self.payload_type!r}, not {PAYLOAD_TYPE!r}."
            )
        try:  # UTF-8 JSON text (RFC 8259 §8.1), not UTF-16/32 nor with a BOM
            text = self.payload.decode("utf-8")
            obj = json.loads(text, object_pairs_hook=unique_members if unique else None)
        except DuplicateMember as e:
            raise InputError(
                f"The envelope's payload has the member {e.args[0]!r} twice in one object: "
                "JSON parsers disagree on which one counts, so it is refused."
            ) from e
        except ValueError as e:
            if not isinstance(e, UnicodeDecodeError) and too_long_number(e):
                raise InputError(
                    f"The envelope's payload has a number of more than {MAX_DIGITS:,} "
                    "digits, which escrow does not read."
                ) from e
            raise InputError("The envelope's payload is not JSON.") from e
        except RecursionError as e:
            raise InputError("The envelope's payload is not JSON.") from e
        if not isinstance(obj, dict):
            raise InputError("The envelope's payload is not a JSON object.")
        return obj

    def read_statement(self) -> dict[str, Any]:
        """The payload as an in-toto Statement, validated against its schemas.

        Accepts every type :func:`escrow.documents.schemas.validate_document` knows.
        """
        from escrow.documents.schemas import validate_document

        statement = self.statement()
        validate_document(statement)
        return statement

    # -- signing and verifying ----------------------------------------
    def signed_by(self, *keys: SigningKey) -> Envelope:
        """A copy with one more signature per key (PAE over the unchanged payload)."""
        data = pae(self.payload_type, self.payload)
        new = tuple(Signature(keyid=k.keyid, sig=k.sign(data)) for k in keys)
        return Envelope(self.payload, self.payload_type, (*self.signatures, *new))

    def check(self, trusted: Mapping[str, PublicKey] | Iterable[PublicKey]) -> list[SignatureCheck]:
        """Which trusted key, if any, each signature verifies with.

        A signature whose ``keyid`` names a trusted key is checked with that key
        only; one with an unknown or empty ``keyid`` is tried with every trusted key.
        """
        keys = _distinct(trusted)
        data = pae(self.payload_type, self.payload)
        counted: set[KeyID] = set()
        out: list[SignatureCheck] = []
        for i, s in enumerate(self.signatures):
            candidates = [keys[s.keyid]] if s.keyid in keys else list(keys.values())
            found: KeyID | None = None
            for key in candidates:
                try:
                    key.verify(s.sig, data)
                except SignatureError:
                    continue
                found = key.keyid
                break
            out.append(SignatureCheck(i, s.keyid, found, found is not None and found in counted))
            if found is not None:
                counted.add(found)
        return out

    def verify(
        self,
        trusted: Mapping[str, PublicKey] | Iterable[PublicKey],
        threshold: int = 1,
        *,
        payload_type: str | None = PAYLOAD_TYPE,
    ) -> list[KeyID]:
        """Key IDs of the distinct trusted keys whose signatures verify, in signature order.

        Raises :class:`SignatureError` (exit 1) when fewer than ``threshold`` do, and
        :class:`InputError` (exit 2) when there is nothing to check: no trusted keys, a
        threshold below 1 or above the number of distinct trusted keys, or a
        ``payloadType`` other than ``payload_type`` (``None`` accepts any).
        """
        keys = usable_keys(trusted, threshold)
        if payload_type is not None and self.payload_type != payload_type:
            raise InputError(
                f"The envelope's payloadType is {self.payload_type!r}, not {payload_type!r}."
            )
        if not self.signatures:
            raise SignatureError("The envelope has no signatures.")
        good = [c.verified_by for c in self.check(keys) if c.verified_by and not c.duplicate]
        if len(good) < threshold:
            if not good:
                ids = signature_ids(self)
                raise SignatureError(
                    f"No signature on the envelope verifies with a trusted key "
                    f"(signature key IDs: {ids})."
                )
            raise SignatureError(
                f"Only {len(good)} distinct trusted key(s) signed the envelope; "
                f"the threshold is {threshold}."
            )
        return good


def signature_ids(envelope: Envelope, shown: int = 8) -> str:
    """The key IDs its signatures name, for a message: the first ``shown`` (16 digits
    each), then how many more (an envelope may carry thousands)."""
    ids = [(s.keyid[:16] or "(none)") for s in envelope.signatures[:shown]]
    if len(envelope.signatures) > shown:
        ids.append(f"and {len(envelope.signatures) - shown} more")
    return ", ".join(ids)


#: The most digits Python reads in an integer (``sys.get_int_max_str_digits``, by default).
MAX_DIGITS = sys.get_int_max_str_digits() or 4300


def too_long_number(e: ValueError) -> bool:
    """Whether ``json.loads`` failed on an integer longer than Python reads (valid JSON,
    but its message is advice for Python programmers)."""
    return "integer string conversion" in str(e)


class DuplicateMember(ValueError):
    """A JSON object names one member twice: refused by the envelope's parser and by the
    other readers of signed documents (``escrow sign``, ``escrow schema validate``)."""


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` ``object_pairs_hook``: the object, or :class:`DuplicateMember`."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return obj


def usable_keys(
    trusted: Mapping[str, PublicKey] | Iterable[PublicKey], threshold: int
) -> dict[str, PublicKey]:
    """The distinct ``trusted`` keys by key ID, once ``threshold`` signatures by them can
    be asked for: :class:`InputError` (exit 2) for no key, a threshold below 1, or one
    above the number of distinct keys (it could never be met)."""
    if threshold < 1:
        raise InputError("The signature threshold must be at least 1.")
    keys = _distinct(trusted)
    if not keys:
        raise InputError(
            "No trusted public key was given to verify the envelope with.",
            hint="Pass the signer's public key (e.g. --key build.pub.pem).",
        )
    if threshold > len(keys):
        raise InputError(
            f"The threshold {threshold} is more than the {len(keys)} distinct trusted "
            f"key(s) given, so it can never be met.",
            hint="Give more keys or lower --threshold.",
        )
    return keys


def _distinct(trusted: Mapping[str, PublicKey] | Iterable[PublicKey]) -> dict[str, PublicKey]:
    """Trusted keys by their canonical key ID (labels of a mapping are ignored)."""
    values = trusted.values() if isinstance(trusted, Mapping) else trusted
    return {k.keyid: k for k in values}


def _b64(text: str, where: str) -> bytes:
    try:
        return b64decode_any(text)
    except InputError as e:
        raise InputError(f"The envelope's {where} is not valid base64.") from e


def sign_statement(
    statement: Mapping[str, Any], key: SigningKey | Sequence[SigningKey]
) -> Envelope:
    """Validate ``statement`` against its schemas, then sign its RFC 8785 canonical bytes.

    With several keys the envelope carries one signature per key (multi-signature).
    """
    from escrow.documents.schemas import validate_document

    keys = [key] if isinstance(key, SigningKey) else list(key)
    if not keys:
        raise InputError("No signing key was given.")
    validate_document(dict(statement))
    return Envelope(payload=canonical_bytes(statement)).signed_by(*keys)
