"""Numbers past what the database or the calendar holds are bad input (exit 2), not a crash."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import LedgerEnv

from escrow.errors import InputError

#: one more than the largest index SQLite and PostgreSQL can store (a signed 64-bit integer)
TOO_BIG = 2**63


@pytest.fixture
def home(cli_env: LedgerEnv) -> LedgerEnv:
    with cli_env.open() as lg:
        lg.append(cli_env.envelope(1))
    return cli_env


def test_get_of_an_index_no_database_can_hold(home: LedgerEnv) -> None:
    with home.open() as lg, pytest.raises(InputError, match=f"has no entry {TOO_BIG} "):
        lg.get(TOO_BIG)


#: an index past what a database can hold: "no such entry", exit 2
NO_ENTRY = f"escrow: error: The ledger has no entry {TOO_BIG} (it holds 2 entries, from 0).\n"


@pytest.mark.parametrize(
    "args",
    [
        ["show", str(TOO_BIG)],
        ["ledger", "leaf", str(TOO_BIG)],
        ["verify", str(TOO_BIG)],
        ["logs", str(TOO_BIG)],
        ["export", "--slsa", str(TOO_BIG)],
    ],
)
def test_cli_says_one_sentence(home: LedgerEnv, cli: Any, args: list[str]) -> None:
    r = cli(args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr == NO_ENTRY
    assert r.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["log", "--until", "9999-12-31"],
        ["log", "--since", "0001-01-01", "--until", "9999-12-31T23:59:59Z"],
    ],
)
def test_dates_at_the_ends_of_the_calendar_list_every_entry(
    home: LedgerEnv, cli: Any, args: list[str]
) -> None:
    r = cli([*args, "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    assert [e["index"] for e in r.json()["entries"]] == [0, 1]
