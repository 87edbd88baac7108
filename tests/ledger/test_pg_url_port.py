"""A PostgreSQL URL whose port is not a number is a usage error (exit 2), not a
traceback; and the message never quotes what stood in the port, which is part of the
password when the password holds an unencoded @ (``user:p@ss:w0rd@host``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://escrow:Sekr1t@127.0.0.1:notaport/db", id="word"),
        pytest.param("postgresql+psycopg://escrow:p@ss:w0rdSekr1t@localhost/db", id="at-in-pw"),
        pytest.param("postgresql://escrow:Sekr1t@[::1/db", id="broken-ipv6"),
    ],
)
@pytest.mark.parametrize("command", [["log"], ["ledger", "checkpoint"], ["post", "-"]])
def test_a_non_numeric_port_is_exit_2_without_the_password(
    env: LedgerEnv,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    command: list[str],
) -> None:
    # a working ledger (either backend) in ESCROW_HOME; the bad URL overrides its database
    monkeypatch.setenv("ESCROW_HOME", str(env.home))
    monkeypatch.setenv("ESCROW_DB_URL", url)
    r = cli(command, input="{}\n")
    assert r.exit_code == 2, r.stdout + r.stderr
    assert r.stderr.startswith("escrow: error: The ledger database URL"), r.stderr
    assert "port is not a number" in r.stderr
    assert "Traceback" not in r.stderr
    assert "Sekr1t" not in r.stdout + r.stderr and "w0rd" not in r.stdout + r.stderr


def test_with_debug_no_password_either(tmp_path: Path) -> None:
    """--debug prints the traceback; it must not carry SQLAlchemy's ValueError, which
    quotes the text in the port position."""
    url = "postgresql+psycopg://escrow:p@ss:w0rdSekr1t@localhost/db"
    script = Path(sys.executable).parent / "escrow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    r = subprocess.run(
        [str(script), "--debug", "--home", str(tmp_path / "h"), "--db-url", url, "log"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode != 0
    assert "port is not a number" in r.stderr, r.stderr
    assert "w0rd" not in r.stdout + r.stderr
