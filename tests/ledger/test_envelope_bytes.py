"""``Envelope.to_bytes`` (the stored leaf bytes): its fast path for ASCII envelopes is
byte for byte the RFC 8785 serialisation, and anything else goes through rfc8785."""

from __future__ import annotations

import random

import pytest
import rfc8785

from escrow.errors import InputError
from escrow.signing.dsse import Envelope, Signature

#: Characters that exercise the escaping rules: controls (short and \u00xx forms),
#: quote, backslash, solidus, DEL, and non-ASCII from the BMP and beyond.
_ASCII = "".join(chr(i) for i in range(0x80))
_SPECIAL = '"\\/\b\f\n\r\t\x00\x01\x1f\x7f '
_NON_ASCII = "é中\u2028\u0085\ufeff\uffff😀\U0010ffff"


def _text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _envelope(rng: random.Random) -> Envelope:
    kind = rng.choice(["hex", "ascii", "special", "non-ascii"])
    alphabet = {
        "hex": "0123456789abcdef",
        "ascii": _ASCII,
        "special": _SPECIAL + "abc",
        "non-ascii": _NON_ASCII + _SPECIAL + "abc",
    }[kind]
    sigs = tuple(
        Signature(keyid=_text(rng, alphabet, rng.choice([0, 1, 16, 64])), sig=rng.randbytes(64))
        for _ in range(rng.choice([0, 1, 1, 2, 3]))
    )
    ptype = "application/vnd.in-toto+json" if rng.random() < 0.3 else _text(rng, alphabet, 12)
    return Envelope(
        payload=rng.randbytes(rng.randrange(0, 300)), payload_type=ptype, signatures=sigs
    )


def test_to_bytes_is_rfc8785_over_generated_envelopes() -> None:
    rng = random.Random(8785)
    fast = slow = 0
    for _ in range(3000):
        env = _envelope(rng)
        expected = rfc8785.dumps(env.to_dict())
        assert env.to_bytes() == expected, env
        strings = [env.payload_type, *(s.keyid for s in env.signatures)]
        took_fast = env._ascii_canonical_bytes() is not None  # noqa: SLF001
        assert took_fast == all(s.isascii() for s in strings), env
        fast += took_fast
        slow += not took_fast
    assert fast > 1000 and slow > 500  # both paths were compared many times


@pytest.mark.parametrize(
    ("keyid", "payload_type"),
    [
        pytest.param("", "application/vnd.in-toto+json", id="empty-keyid"),
        pytest.param("ab" * 32, "application/vnd.in-toto+json", id="hex-keyid"),
        pytest.param('q"uo\\te/', "t", id="quote-backslash-solidus"),
        pytest.param("\x00\x08\x09\x0a\x0b\x0c\x0d\x1f", "t", id="controls"),
        pytest.param("\x7f", "t\x7f", id="del-is-not-escaped"),
        pytest.param("é", "t", id="latin-1"),
        pytest.param("k", "\u2028😀", id="line-separator-and-astral"),
    ],
)
def test_to_bytes_named_cases(keyid: str, payload_type: str) -> None:
    env = Envelope(
        payload=b'{"a":1}', payload_type=payload_type, signatures=(Signature(keyid, b"s" * 64),)
    )
    assert env.to_bytes() == rfc8785.dumps(env.to_dict())
    assert Envelope.from_bytes(env.to_bytes()) == env  # and it round-trips


def test_a_lone_surrogate_is_still_refused() -> None:
    env = Envelope(payload=b"{}", payload_type="t\ud800", signatures=(Signature("k", b"s"),))
    with pytest.raises(InputError):
        env.to_bytes()
