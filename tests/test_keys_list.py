"""`escrow keys list` of a key retired from a later date says it retires then: it showed
an "active" key with a date under ENDED, as if it had already ended."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_a_retirement_still_to_come_reads_as_such(escrow_home: Path) -> None:
    r = run_cli(["keys", "retire", "build", "--from", "2030-01-01"])
    assert r.exit_code == 0, r.stderr
    r = run_cli(["keys", "list"])
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if " build " in x)
    assert " active " in line
    assert "retires 2030-01-01T00:00:00Z" in line, line


def test_a_retirement_in_force_shows_its_date(escrow_home: Path) -> None:
    r = run_cli(["keys", "retire", "build"])
    assert r.exit_code == 0, r.stderr
    line = next(x for x in run_cli(["keys", "list"]).stdout.splitlines() if " build " in x)
    assert " retired " in line and "retires" not in line, line
