"""An escrow agent's `--verifier-key` mistakes, read as the agent reads them: a deposit under
another key names both keys (the agent needs them to ask the vendor), and a key file that
cannot be read says why."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.deposit.test_agent_save_checkpoint import (  # noqa: F401
    Deposits,
    deposits,
    store,
)


def test_a_deposit_under_another_key_names_both_keys(
    deposits: Deposits,  # noqa: F811
    store: Path,  # noqa: F811
) -> None:
    own = run_cli(["ledger", "verifier-key"])  # the agent's own key: not the vendor's
    assert own.exit_code == 0, own.stderr
    pinned = own.stdout.strip()
    r = run_cli(
        ["deposit", "import", str(deposits.dep1), "--deposit-store", str(store)]
        + ["--verifier-key", pinned]
    )
    assert r.exit_code == 1, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "is not the one you pinned (--verifier-key); refused" in lines[0]
    assert f"not {pinned}" in lines[0], lines[0]
    assert "The deposit gives the key escrow.local/ledger/" in lines[0], lines[0]
    assert not any(store.rglob("refs/imports/*"))


def test_a_verifier_key_file_that_cannot_be_read_says_why(
    deposits: Deposits,  # noqa: F811
    store: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    missing = tmp_path / "vendor-key.txt"
    r = run_cli(["deposit", "import", str(deposits.dep1), "--verifier-key", f"@{missing}"])
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert f"Cannot read the verifier key file {missing}: No such file or directory." in r.stderr
