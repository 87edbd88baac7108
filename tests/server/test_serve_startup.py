"""`escrow serve` and `escrow tokens` refuse, in one sentence and changing nothing, a
database that holds no ledger and an address they cannot listen on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pgkit import fresh_pg_database
from server_helpers import ROOT, free_socket


def _serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`escrow serve ARGS` as a process that must exit (it would serve forever if the
    check were missing: fail, do not hang)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env["ESCROW_HOME"] = str(home)
    cmd = [sys.executable, "-m", "escrow.cli.main", *args[:-1], "serve", "--port", args[-1]]
    try:
        return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"escrow serve started instead of refusing: {e.stderr!r}")


def _tables(url: str) -> list[str]:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_serve_in_a_home_never_initialised_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    home = tmp_path / "never-initialised"
    home.mkdir()
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.delenv("ESCROW_DB_URL", raising=False)
    with free_socket() as s:
        port = s.getsockname()[1]
    r = cli(["serve", "--port", str(port)])
    assert r.exit_code == 3, r.stderr
    assert f"There is no ledger at {home / 'ledger.db'}." in r.stderr
    assert "escrow init" in r.stderr
    assert list(home.iterdir()) == []  # no half-made ledger.db


def test_serve_of_a_mistyped_sqlite_url_does_not_serve_a_new_empty_ledger(
    escrow_home: Path, tmp_path: Path
) -> None:
    typo = tmp_path / "ledgr.db"
    with free_socket() as s:
        port = s.getsockname()[1]
    r = _serve(escrow_home, "--db-url", f"sqlite:///{typo}", str(port))
    assert r.returncode == 3, r.stderr
    assert f"There is no ledger at {typo}." in r.stderr
    assert "serving" not in r.stderr
    assert not typo.exists()


@pytest.fixture
def empty_pg() -> Iterator[str]:
    yield from fresh_pg_database("escrow_nolog")


@pytest.mark.postgres
def test_serve_and_tokens_on_a_postgres_database_with_no_ledger_create_nothing(
    escrow_home: Path, empty_pg: str, cli: Any
) -> None:
    with free_socket() as s:
        port = s.getsockname()[1]
    served = _serve(escrow_home, "--db-url", empty_pg, str(port))
    assert served.returncode == 3, served.stderr
    assert "holds no escrow ledger" in served.stderr
    made = cli(["--db-url", empty_pg, "tokens", "create", "--role", "admin", "--name", "ops"])
    assert made.exit_code == 3, made.stderr
    assert "holds no escrow ledger" in made.stderr
    assert made.stdout == ""  # no token printed
    assert _tables(empty_pg) == []  # neither ledger tables nor a token table


def test_serve_on_a_port_in_use_says_so_before_announcing_anything(
    escrow_home: Path, cli: Any
) -> None:
    with free_socket() as busy:
        busy.listen(1)
        port = busy.getsockname()[1]
        r = cli(["serve", "--port", str(port)])
    assert r.exit_code == 3, r.stderr
    assert r.stderr.strip() == (
        f"escrow: error: Cannot listen on 127.0.0.1:{port}: another process is using the "
        "port. Stop it, or choose another --port."
    )


def test_serve_on_an_address_of_no_interface_is_a_usage_error(escrow_home: Path, cli: Any) -> None:
    with free_socket() as s:
        port = s.getsockname()[1]
    for host in ("256.1.1.1", "no-such-host.invalid"):
        r = cli(["serve", "--host", host, "--port", str(port)])
        assert r.exit_code == 2, r.stderr
        assert f"Cannot listen on {host}:{port}" in r.stderr
        assert "serving" not in r.stderr
