"""What a user following the README meets with ``escrow pack`` and ``escrow pack verify``,
run as the console command (a subprocess), as the user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import PackLedger

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

ESCROW = Path(sys.executable).with_name("escrow")


def escrow(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESCROW_HOME": str(home)}
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        env.pop(var, None)
    return subprocess.run(
        [str(ESCROW), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_wrong_trust_anchor_is_one_failed_check_not_a_traceback(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """Regression: `escrow pack verify pack.pdf --trust OTHER.pem` printed pyhanko's
    logged "Validation error" with a whole Python traceback on stderr before the
    checks; the README promises one sentence (a traceback only with --debug)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from escrow.pack.sign import self_signed_certificate

    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    other = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "someone else")
    other_pem = tmp_path / "other.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))

    v = escrow("pack", "verify", str(out), "--trust", str(other_pem), home=pack_ledger.home)
    assert v.returncode == 1, v.stderr
    assert "does not chain to" in v.stderr
    assert "Traceback" not in v.stderr, v.stderr
    assert "Validation error" not in v.stderr, v.stderr
