"""`escrow deposit export` from a folder store holding a damaged blob (bit rot, an edit):
the export copied it unchecked and said "wrote …", and the escrow agent's import then
refused the whole archive as altered.  The export now hashes every blob it writes and
refuses (exit 1), naming the blob and the entry that needs it, and writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.deposit.conftest import Builds


def _record_blobs(home: Path, cli: Any, index: int) -> tuple[Path, dict[str, Any]]:
    r = cli(["deposit", "check", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    digest = r.json()["record"]
    store = home / "deposits" / "blobs" / "sha256"
    return store, json.loads((store / digest[:2] / digest).read_text())


def test_a_damaged_blob_is_not_exported(
    builds: Builds,
    cli: Any,
    escrow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = builds.context({"app.txt": "exported from a damaged store\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    store, record = _record_blobs(escrow_home, cli, index)
    base = record["baseImages"][0]["imageId"].removeprefix("sha256:")
    config = json.loads((store / base[:2] / base).read_text())
    layer = config["rootfs"]["diff_ids"][0].removeprefix("sha256:")  # the busybox layer
    path = store / layer[:2] / layer
    good = path.read_bytes()
    os.chmod(path, 0o644)
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))

    out = tmp_path / "out" / "deposit.tar"
    r = cli(["deposit", "export", str(index), "-o", str(out)])
    assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert f"The deposited blob {layer} in the deposit store" in r.stderr
    assert "does not match its SHA-256" in r.stderr and "nothing was written" in r.stderr
    assert f"deposit check {index} --verify" in r.stderr
    assert list(out.parent.iterdir()) == []  # neither the archive nor a partial one

    # the blob restored (from a backup): exported, and the agent imports it
    path.write_bytes(good)
    r = cli(["deposit", "export", str(index), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    agent = tmp_path / "agent"
    monkeypatch.setenv("ESCROW_HOME", str(agent))
    assert cli(["init"]).exit_code == 0
    r = cli(["deposit", "import", str(out)])
    assert r.exit_code == 0, r.stderr
