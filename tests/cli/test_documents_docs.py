"""escrow sign and escrow export as the README describes them: `-o FILE` writes the
documents, `--json` prints one JSON document on stdout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from escrow.signing.dsse import Envelope
from escrow.signing.keys import SigningKey

ASSETS = Path(__file__).parent.parent / "assets"
STATEMENT = ASSETS / "build-manifest.example.json"


def test_sign_to_a_file_with_json_writes_envelopes_and_prints_a_summary(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    """Regression: `escrow sign -o envelopes.jsonl --json` wrote the JSON summary into the
    file (which `escrow post` and `escrow verify --envelope` then refused) and printed
    nothing on stdout."""
    out = tmp_path / "envelopes.jsonl"
    r = cli(["sign", str(STATEMENT), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    summary = r.json()
    build_key = SigningKey.load(escrow_home / "keys" / "build.key.pem").public
    assert summary["count"] == 1 and summary["keyids"] == [build_key.keyid]
    assert summary["output"] == str(out)
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    env = Envelope.from_bytes(lines[0])
    assert env.read_statement() == json.loads(STATEMENT.read_text())
    assert Envelope.from_dict(summary["envelopes"][0]).to_bytes() == env.to_bytes()
    # the file is what `escrow verify --envelope` and `escrow post` read
    pub = tmp_path / "build.pub.pem"
    pub.write_text(build_key.pem())
    v = cli(["verify", "--envelope", str(out), "--key", str(pub)])
    assert v.exit_code == 0, v.stderr


def test_export_to_a_file_with_json_prints_a_summary(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    """`escrow export --slsa N -o FILE --json` printed nothing on stdout."""
    signed = tmp_path / "manifest.jsonl"
    assert cli(["sign", str(STATEMENT), "-o", str(signed)]).exit_code == 0
    posted = cli(["post", str(signed), "--json"])
    assert posted.exit_code == 0, posted.stderr
    index = posted.json()["results"][0]["index"]
    out = tmp_path / "provenance.json"
    r = cli(["export", "--slsa", str(index), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    summary = r.json()
    data = out.read_bytes()
    assert json.loads(data)["predicateType"] == "https://slsa.dev/provenance/v1"
    assert summary == {
        "index": index,
        "output": str(out),
        "signed": False,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    # with --sign the file holds the envelope, on one line (as `escrow sign` writes them)
    r = cli(["export", "--slsa", str(index), "--sign", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["signed"] is True
    env = Envelope.from_bytes(out.read_text().splitlines()[0])
    assert env.read_statement()["predicateType"] == "https://slsa.dev/provenance/v1"
