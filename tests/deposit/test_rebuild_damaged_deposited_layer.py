"""`escrow rebuild --imported` compares the rebuilt layers with the original image's layers
read from the deposit store.  A damaged copy there (bit rot in the agent's store) was read
unchecked, and the signed verdict said "different", naming a file of the vendor's image
that had in fact never changed.  The deposited layer is now checked against its diff ID:
a damaged one is not compared, and the verdict (unknown) names the damaged deposit."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.deposit.conftest import Builds, docker
from tests.rebuild.test_rebuild import next_second


def test_a_damaged_deposited_layer_is_not_taken_for_a_difference(
    builds: Builds,
    cli: Any,
    escrow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = builds.context({"app.txt": "rebuilt by the escrow agent\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=True))
    index, statement = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    out = tmp_path / "deposit.tar"
    assert cli(["deposit", "export", str(index), "-o", str(out)]).exit_code == 0
    built_tag = builds.tags[-1]
    docker("rmi", built_tag)  # the agent's engine never had the vendor's image

    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "agent"))
    assert cli(["init"]).exit_code == 0
    r = cli(["deposit", "import", str(out)])
    assert r.exit_code == 0, r.stderr

    # the layer of the RUN step (a new file each build: its diff ID differs in any rebuild)
    layer = statement["predicate"]["layers"][-1]["diffId"].removeprefix("sha256:")
    path = tmp_path / "agent" / "deposits" / "blobs" / "sha256" / layer[:2] / layer
    with tarfile.open(path) as tar:
        member = next(m for m in tar if m.isreg() and m.size > 0)
    damaged = bytearray(path.read_bytes())
    damaged[member.offset_data] ^= 0x01  # the file's first byte, the tar still readable
    os.chmod(path, 0o644)
    path.write_bytes(bytes(damaged))

    next_second()  # the rebuilt RUN layer's mtimes differ: the damaged layer is compared
    r = cli(["rebuild", "--imported", str(index), "-q", "-t", builds.rebuild_tag(), "--json"])
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    verdict = doc["statement"]["predicate"]["verdict"]
    assert doc["verdict"] == verdict["overall"] == "unknown", json.dumps(verdict)[:2000]
    last = verdict["layers"][-1]
    assert not last.get("differences") and "entries" not in last, last  # no files compared
    text = json.dumps(verdict)
    assert f"The deposited layer sha256:{layer[:12]}" in text
    assert "does not match its SHA-256" in text
    # the repair the damage needs, not the advice for an original never deposited
    assert "import the exported deposit again" in text
    assert "deposit it (escrow deposit)" not in text
    assert all(not layer.get("differences") for layer in verdict["layers"])  # no file blamed
    assert r.exit_code == 1
