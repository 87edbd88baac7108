"""`escrow pack --tsa` says what the TSA vouched for as it makes the pack: `--json` gives
`timestamp` (its time and TSA, as `pack verify` later reads them from the file; null for a
pack without one) and the plain output a "Timestamped … by …" line. Before, the pipeline
that made the pack learnt nothing of its timestamp until someone ran `pack verify`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tsakit import TSA_NAME, Tsa

from .synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _one_build(home: Path) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    with Ledger.open(settings) as ledger:
        key = SigningKey.load(settings.key_path, settings.passphrase)
        ledger.append(sign_statement(manifest_variant(0), key))


def test_pack_reports_its_timestamp(escrow_home: Path, tmp_path: Path, tsa: Tsa, cli: Any) -> None:
    _one_build(escrow_home)
    out = tmp_path / "pack.pdf"
    before = datetime.now(UTC)
    r = cli(["pack", "--project", "example", "--tsa", tsa.url, "-o", str(out), "--json"])
    after = datetime.now(UTC)
    assert r.exit_code == 0, r.stderr
    stamp = r.json()["timestamp"]
    assert TSA_NAME in stamp["tsa"]
    when = datetime.fromisoformat(stamp["time"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=2) <= when <= after + timedelta(seconds=2)

    # what `pack verify` reads from the file says the same
    v = cli(["pack", "verify", str(out), "--tsa-trust", str(tsa.files.ca_pem), "--json"])
    assert v.exit_code == 0, v.stdout + v.stderr
    assert v.json()["timestamp"]["time"] == stamp["time"]
    assert v.json()["timestamp"]["tsa"] == stamp["tsa"]

    # the plain output names it on a line of its own
    r = cli(["pack", "--project", "example", "--tsa", tsa.url, "-o", str(tmp_path / "b.pdf")])
    assert r.exit_code == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("Timestamped ")]
    assert len(lines) == 1, r.stderr
    assert TSA_NAME in lines[0] and lines[0].endswith("(RFC 3161).")


def test_a_pack_without_tsa_reports_no_timestamp(
    escrow_home: Path, tmp_path: Path, cli: Any
) -> None:
    _one_build(escrow_home)
    r = cli(["pack", "--project", "example", "-o", str(tmp_path / "pack.pdf"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["timestamp"] is None
    r = cli(["pack", "--project", "example", "-o", str(tmp_path / "b.pdf")])
    assert r.exit_code == 0, r.stderr
    assert "Timestamped" not in r.stdout + r.stderr
