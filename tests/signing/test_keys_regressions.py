"""Regressions in key handling."""

from __future__ import annotations

import pytest

from escrow.errors import InputError
from escrow.signing.keys import PublicKey


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\u00e9\n-----END PUBLIC KEY-----\n",
            id="non-ascii-text",
        ),
        pytest.param("not a key", id="plain-text"),
        pytest.param(b"\xff\xfe", id="binary"),
    ],
)
def test_a_bad_pem_is_an_input_error_not_a_crash(pem: str | bytes) -> None:
    """Regression: a non-ASCII PEM raised UnicodeEncodeError (found by schemathesis)."""
    with pytest.raises(InputError, match="Not a PEM public key"):
        PublicKey.from_pem(pem)
