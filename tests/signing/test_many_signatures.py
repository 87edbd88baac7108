"""An envelope with thousands of signatures, none by a trusted key, is refused in one
sentence of bounded length: the key IDs it names are the first few (review 9c)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any


def test_an_envelope_of_many_untrusted_signatures_names_a_few(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    payload = base64.b64encode(b'{"_type":"x"}').decode()
    sig = base64.b64encode(b"x" * 64).decode()
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": payload,
        "signatures": [{"keyid": f"{i:064x}", "sig": sig} for i in range(5000)],
    }
    path = tmp_path / "many.json"
    path.write_text(json.dumps(envelope))
    key = escrow_home / "keys" / "build.pub.pem"
    r = cli(["verify", "--envelope", str(path), "--key", str(key)])
    assert r.exit_code == 1, r.stderr
    assert "No signature on the envelope verifies" in r.stderr
    assert "and 4992 more" in r.stderr
    assert len(r.stderr) < 2000, len(r.stderr)
