"""``escrow post`` and ``escrow ledger consistency`` on input with nothing to read.

Stdin closed (``escrow post <&-``) is an input error with one sentence, not a traceback;
an input that is only a UTF-8 BOM holds no envelope, like an empty one; giving both
OLD_SIZE and --from says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger_helpers import LedgerEnv


def _post_with_stdin_closed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from escrow.cli.entry import main; main()", "post", *args],
        stdin=None,
        preexec_fn=lambda: os.close(0),  # noqa: PLW1509 - the child starts with fd 0 closed
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_post_with_stdin_closed_is_an_input_error(cli_env: LedgerEnv) -> None:
    for extra in ([], ["--json"]):
        r = _post_with_stdin_closed(*extra)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert "stdin is closed" in r.stderr
        assert r.stdout == ""


def test_post_of_a_bom_alone_holds_no_envelope(
    cli_env: LedgerEnv, cli: Any, tmp_path: Path
) -> None:
    bom = tmp_path / "bom.jsonl"
    for data in (b"\xef\xbb\xbf", b"\xef\xbb\xbf\n  \n"):
        bom.write_bytes(data)
        r = cli(["post", str(bom)])
        assert r.exit_code == 2, r.stderr
        assert "The input holds no envelope." in r.stderr
        assert r.stdout == ""


def test_consistency_with_both_a_size_and_from(
    cli_env: LedgerEnv, cli: Any, tmp_path: Path
) -> None:
    r = cli(["ledger", "checkpoint"])
    assert r.exit_code == 0, r.stderr
    saved = tmp_path / "saved.checkpoint"
    saved.write_text(r.stdout)
    for args in (["0", "--from", str(saved)], ["--from", str(saved), "0"]):
        r = cli(["ledger", "consistency", *args])
        assert r.exit_code == 2
        assert "not both" in r.stderr
    r = cli(["ledger", "consistency"])
    assert r.exit_code == 2
    assert "Give OLD_SIZE or --from CHECKPOINT_FILE." in r.stderr
