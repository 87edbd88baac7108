"""A passphrase that is not UTF-8 (bytes from ESCROW_KEY_PASSPHRASE, as a shell passes
them) is used as the bytes given for the pack key too, as for the build and log keys: it
ended `escrow pack` in a ``UnicodeEncodeError`` traceback when it made, opened or signed
with the pack key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

from .synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def test_a_pack_is_made_and_verified_with_a_passphrase_that_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    home = tmp_path / "home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_SERVER", "ESCROW_TSA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "caf\udce9 secret")  # b"caf\xe9 secret"
    r = run_cli(["init"])
    assert r.exit_code == 0, r.stderr
    settings = load_settings()
    with Ledger.open(settings) as ledger:
        key: Any = SigningKey.load(settings.key_path, settings.passphrase)
        ledger.append(sign_statement(manifest_variant(0), key))
    out = tmp_path / "pack.pdf"
    made = run_cli(["pack", "--project", "example", "-o", str(out), "-q"])
    assert made.exit_code == 0, made.stderr
    assert "Traceback" not in made.stderr
    assert b"ENCRYPTED" in (home / "keys" / "pack.key.pem").read_bytes()
    again = run_cli(["pack", "--project", "example", "-o", str(tmp_path / "again.pdf"), "-q"])
    assert again.exit_code == 0, again.stderr  # the pack key opened with those bytes
    checked = run_cli(["pack", "verify", str(out), "--trust", str(home / "keys" / "pack.cert.pem")])
    assert checked.exit_code == 0, checked.stderr
