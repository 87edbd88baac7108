"""A mistyped ESCROW_HOME is an error, never an empty ledger or store made on the spot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize(
    "args",
    [
        ["tokens", "list"],
        ["tokens", "create", "--role", "pipeline", "--name", "ci"],
        ["deposit", "stats"],
        ["gc"],
        ["gc", "--keep-last", "1", "--apply"],
    ],
)
def test_nothing_is_created_in_a_home_that_does_not_exist(
    args: list[str], cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "typo"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_DEPOSIT_STORE"):
        monkeypatch.delenv(var, raising=False)
    r = cli(args)
    assert r.exit_code == 3, r.stderr
    assert r.stderr.startswith("escrow: error: There is no ")
    assert str(home) in r.stderr and r.stdout == ""
    assert not home.exists()


def test_stats_of_an_initialised_home_before_any_deposit(cli: Any, escrow_home: Path) -> None:
    r = cli(["deposit", "stats"])
    assert r.exit_code == 3 and "There is no deposit store" in r.stderr
    assert "Nothing has been deposited there yet" in r.stderr
    assert not (escrow_home / "deposits").exists()


def test_a_failed_write_names_the_file_asked_for_not_the_temporary_one(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    """Regression: `sign -o /missing/dir/out.jsonl` said `Cannot use
    /missing/dir/.out.jsonl.4n7ym5u1`, the temporary file escrow writes first."""
    statement = Path(__file__).parent / "assets" / "build-manifest.example.json"
    target = tmp_path / "missing" / "out.jsonl"
    r = cli(["sign", str(statement), "-o", str(target)])
    assert r.exit_code == 2
    assert f"Cannot use {target}: No such file or directory." in r.stderr


@pytest.mark.postgres
@pytest.mark.parametrize(
    "args",
    [["log"], ["ledger", "verify"], ["keys", "list"], ["show", "0"], ["pack", "-o", "x.pdf"]],
)
def test_a_postgresql_database_without_a_ledger_is_left_as_it_was(
    args: list[str], cli: Any, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any command pointed at a PostgreSQL database holding no ledger (a mistyped
    ESCROW_DB_URL) made the ledger's tables there and answered as an empty ledger."""
    import psycopg

    from tests.pgkit import fresh_pg_database

    for url in fresh_pg_database("escrow_noledger"):
        monkeypatch.setenv("ESCROW_DB_URL", url)
        monkeypatch.delenv("ESCROW_SERVER", raising=False)
        r = cli([*args])
        assert r.exit_code == 3, r.stdout + r.stderr
        assert "holds no escrow ledger" in r.stderr and "escrow init" in r.stderr
        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        assert tables == []
