"""RFC 8785 (JCS) canonical JSON for everything escrow hashes or signs."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from escrow.errors import InputError


def canonical_bytes(document: Any) -> bytes:
    """The RFC 8785 canonical form of ``document``.

    Floats and integers of 2**53 and above are refused by JCS; escrow keeps
    times as RFC 3339 strings and sizes as integers below that limit.
    """
    try:
        return rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise InputError(f"The document cannot be canonicalised (RFC 8785): {e}.") from e


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
