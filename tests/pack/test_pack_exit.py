"""`escrow pack` exits 1 when the pack's own checks fail, as the exit-code table says.

The pack is still written and recorded (it is the evidence of the failure), the way a
failed build is recorded; a pipeline that packs every month must not read it as success.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import PackLedger
from .test_pack_verify_scope import _fork_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def test_a_pack_whose_consistency_check_fails_is_written_recorded_and_exits_1(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_ledger.add(0)
    fork = tmp_path / "fork.checkpoint"  # same log key and size, another root
    fork.write_text(_fork_checkpoint(pack_ledger, tmp_path, monkeypatch), encoding="utf-8")
    size = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", "--since-checkpoint", str(fork), "-o", str(out)])

    assert r.exit_code == 1, r.stderr
    assert out.is_file()
    assert pack_ledger.ledger.size() == size + 1  # recorded all the same
    assert f"is written and recorded as ledger entry {size}" in r.stderr
    assert "'Verification failed'" in r.stderr
    assert "verification failed." in r.stderr  # the usual summary line comes first

    again = tmp_path / "again.pdf"
    j = run_cli(
        ["pack", "--project", "example", "--since-checkpoint", str(fork), "-o", str(again)]
        + ["--json"]
    )
    assert j.exit_code == 1
    assert json.loads(j.stdout)["overall"] == "Verification failed"


def test_a_verified_pack_still_exits_0(pack_ledger: PackLedger, tmp_path: Path) -> None:
    pack_ledger.add(0)
    checkpoint = tmp_path / "own.checkpoint"
    checkpoint.write_text(pack_ledger.ledger.checkpoint().note, encoding="utf-8")
    pack_ledger.add(1)
    out = tmp_path / "pack.pdf"

    r = run_cli(
        ["pack", "--project", "example", "--since-checkpoint", str(checkpoint), "-o", str(out)]
    )

    assert r.exit_code == 0, r.stderr
    assert "verified." in r.stderr
