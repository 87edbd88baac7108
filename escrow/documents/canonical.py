"""RFC 8785 (JCS) canonical JSON for everything escrow hashes or signs.

The ``rfc8785`` package does the canonicalisation.  JCS refuses what JSON
numbers cannot carry exactly: NaN and infinities, and integers of magnitude
2**53 and above (nanosecond timestamps are such integers).  escrow keeps
times as RFC 3339 strings and sizes as integers below that limit; a document
breaking that rule is refused with the JSON Pointer of the offending value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import rfc8785

from escrow.errors import InputError

#: JCS / I-JSON: integers must stay within the range exactly representable as doubles.
MAX_SAFE_INTEGER = 2**53 - 1


def _escape(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _unrepresentable(value: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """(pointer, reason) of every value JCS cannot represent, depth first."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            yield pointer, f"the integer {value} is beyond ±(2**53 - 1)"
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield pointer, f"{value} is not a JSON number"
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                yield pointer, f"the key {k!r} is not a string"
            else:
                yield from _unrepresentable(v, f"{pointer}/{_escape(k)}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _unrepresentable(v, f"{pointer}/{i}")
    else:
        yield pointer, f"a {type(value).__name__} is not a JSON value"


def canonical_bytes(document: Any) -> bytes:
    """The RFC 8785 canonical form of ``document``.

    Raises :class:`InputError` naming the JSON Pointer of a value JCS refuses.
    """
    try:
        return rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        where = next(_unrepresentable(document), None)
        if where is None:
            raise InputError(f"The document cannot be canonicalised (RFC 8785): {e}.") from e
        pointer, reason = where
        raise InputError(
            f"The document cannot be canonicalised (RFC 8785) at {pointer or '/'}: {reason}.",
            hint="Record times as RFC 3339 strings and sizes as integers below 2**53.",
        ) from e
