"""An envelope that is not UTF-8 is named as such, not as "not valid JSON ('utf-8' codec
can't decode byte 0xff in position 0: invalid start byte)" — Python's own words."""

from __future__ import annotations

import pytest

from escrow.errors import InputError
from escrow.signing.dsse import Envelope


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff{}", "The envelope is not UTF-8 text (byte 0xff at offset 0)."),
        (b'{"a": "\xc3"}', "The envelope is not UTF-8 text (byte 0xc3 at offset 7)."),
        (b'\xef\xbb\xbf{"a": "\xfe"}', "The envelope is not UTF-8 text (byte 0xfe at offset 10)."),
    ],
)
def test_an_envelope_that_is_not_utf8_says_so(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        Envelope.from_bytes(data)
    assert caught.value.message == message
