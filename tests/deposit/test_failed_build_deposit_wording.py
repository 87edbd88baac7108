"""The deposit of a failed build is told for what it is.

Regression: `escrow build` printed "deposit:  complete" for a build that failed, and
`escrow deposit check N` (and `escrow deposit N`) said "complete" — yet `escrow rebuild
N` refuses it: a failed build made no image, so there is nothing to reproduce.  The
deposit holds all there is (the inputs and the logs), and now says so.
"""

from __future__ import annotations

from pathlib import Path

from tests.capture.conftest import write_tree
from tests.conftest import BASE_TAG, run_cli

FAILED = "complete (the inputs and logs of a failed build; it made no image)"


def test_a_failed_builds_deposit_says_it_made_no_image(
    escrow_home: Path, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "app",
        {"Dockerfile": f"FROM {BASE_TAG}\nCOPY a.txt /a.txt\nRUN false\n", "a.txt": "a\n"},
    )

    r = run_cli(["build", str(ctx), "-t", "hunt-ro-failed:1"])

    assert r.exit_code == 1, r.stderr  # the failure is recorded
    assert "status:   failed" in r.stdout
    assert f"deposit:  {FAILED}" in r.stdout.splitlines()
    index = int(r.stdout.split()[2])  # "ledger entry N (leaf …)"

    check = run_cli(["deposit", "check", str(index)])
    assert check.exit_code == 0, check.stderr  # nothing a deposit could hold is missing
    assert check.stdout.splitlines()[0] == f"deposit of entry {index}: {FAILED}"

    again = run_cli(["deposit", str(index), "--context", str(ctx)])
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"deposit of entry {index}: {FAILED}"

    rebuild = run_cli(["rebuild", str(index)])
    assert rebuild.exit_code == 2, rebuild.stderr
    assert f"Entry {index} is a failed build; there is no image to reproduce." in rebuild.stderr
