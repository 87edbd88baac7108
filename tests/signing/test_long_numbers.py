"""A JSON number longer than Python reads (4,300 digits by default) is valid JSON, but
``json.loads`` refuses it with advice for Python programmers ("use
sys.set_int_max_str_digits()"): `escrow post` said that.  Now the envelope is refused in a
sentence for its user, whether the number is in the envelope or in its payload."""

from __future__ import annotations

import base64
import json

import pytest

from escrow.errors import InputError
from escrow.signing.dsse import Envelope

LONG = "1" * 5000


def test_a_long_number_in_the_envelope_is_refused_in_a_sentence() -> None:
    with pytest.raises(InputError) as e:
        Envelope.from_bytes(
            '{"payload": "e30=", "payloadType": "x", "signatures": [], "n": ' + LONG + "}"
        )
    assert e.value.message == (
        "The envelope has a number of more than 4,300 digits, which escrow does not read."
    )


def test_a_long_number_in_the_payload_is_refused_in_a_sentence() -> None:
    payload = base64.b64encode(('{"n": ' + LONG + "}").encode()).decode()
    doc = {
        "payload": payload,
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"keyid": "", "sig": "AAAA"}],
    }
    env = Envelope.from_bytes(json.dumps(doc))
    with pytest.raises(InputError) as e:
        env.statement(unique=True)
    assert e.value.message == (
        "The envelope's payload has a number of more than 4,300 digits, which escrow does not read."
    )
