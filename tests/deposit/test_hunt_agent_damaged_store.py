"""An escrow agent's deposit store damaged months later (bit rot, a lost file, a reference
overwritten): `escrow deposit check` names each damage as an incomplete deposit (exit 1) —
a damaged record, context index or image config used to stop it with exit 2 as if the
user had erred, and a reference naming a record that is gone read as "never deposited";
`escrow gc --apply` removes nothing from such a store — it used to delete, as unreferenced,
every blob the lost record or index named; and a damaged base layer is refused before it is
sent to the engine — it used to reach `docker load` and be reported as the engine's failure
(exit 3)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from escrow.deposit.images import load_image
from escrow.deposit.store import FileDepositStore
from escrow.errors import CheckFailed
from tests.deposit.conftest import Builds


def _blob(store: Path, digest: str) -> Path:
    d = digest.removeprefix("sha256:")
    return store / "blobs" / "sha256" / d[:2] / d


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def _blobs(store: Path) -> set[str]:
    return {p.name for p in (store / "blobs").rglob("*") if p.is_file()}


def test_deposit_check_names_each_damage_and_gc_apply_removes_nothing(
    builds: Builds, cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    ctx = builds.context({"app.txt": "kept for years\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=True))
    index, _ = builds.build(ctx)
    r = cli(["deposit", str(index), "--context", str(ctx), "--json"])
    assert r.exit_code == 0, r.stderr
    leaf = r.json()["leafHash"]
    good = escrow_home / "deposits"
    record_digest = (good / "refs" / "entries" / leaf).read_text().strip()
    record = json.loads(_blob(good, record_digest).read_bytes())
    context_index = record["context"]["index"]
    base_config = record["baseImages"][0]["imageId"]

    def damaged(name: str) -> Path:
        copy = tmp_path / f"store-{name}"
        shutil.copytree(good, copy)
        return copy

    cases: dict[str, tuple[Path, str]] = {}
    s = damaged("record-flipped")
    _flip(_blob(s, record_digest))
    cases["record-flipped"] = (s, record_digest)
    s = damaged("index-flipped")
    _flip(_blob(s, context_index))
    cases["index-flipped"] = (s, context_index)
    s = damaged("config-flipped")
    _flip(_blob(s, base_config))
    cases["config-flipped"] = (s, base_config.removeprefix("sha256:"))
    s = damaged("ref-garbage")
    (s / "refs" / "entries" / leaf).write_text("garbage\n")
    cases["ref-garbage"] = (s, f"refs/entries/{leaf}")
    s = damaged("record-missing")
    _blob(s, record_digest).unlink()
    cases["record-missing"] = (s, record_digest[:16])

    for name, (store, named) in cases.items():
        r = cli(["deposit", "check", str(index), "--deposit-store", str(store)])
        assert r.exit_code == 1, (name, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert "INCOMPLETE" in r.stdout and named in r.stdout, (name, r.stdout)
        assert "never deposited" not in r.stdout, (name, r.stdout)
        assert "damaged" in r.stdout or "corrupted" in r.stdout, (name, r.stdout)
        r = cli(["deposit", "check", str(index), "--deposit-store", str(store), "--json"])
        assert r.exit_code == 1, (name, r.stderr)
        doc = r.json()
        assert doc["complete"] is False and doc["missing"], (name, doc)

    # gc: what a lost record or context index named must not be swept as unreferenced
    lost_index = damaged("index-missing")
    _blob(lost_index, context_index).unlink()
    for store in (cases["record-missing"][0], lost_index):
        before = _blobs(store)
        r = cli(["gc", "--apply", "--deposit-store", str(store)])
        assert before - _blobs(store) == set(), (store, r.stdout)  # nothing deleted
        assert r.exit_code == 1, (store, r.stdout, r.stderr)
        assert "damaged" in r.stderr and "removed nothing" in r.stderr, r.stderr
        assert (store / "refs" / "entries" / leaf).is_file()
        r = cli(["gc", "--deposit-store", str(store), "--json"])
        assert r.exit_code == 0, r.stderr
        assert r.json()["damaged"], r.stdout

    # the undamaged store is still collected as before
    r = cli(["gc", "--apply", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["damaged"] == []


class _Engine:
    """The part of the Docker API ``load_image`` uses: reads the whole archive, and, like
    the engine, refuses a layer whose bytes do not hash to the config's diff ID."""

    def __init__(self) -> None:
        self.received = b""

    def load_image(self, data: Iterator[bytes]) -> list[dict[str, Any]]:
        for chunk in data:
            self.received += chunk
        return [{"error": "invalid diffID for layer 0"}]

    def inspect_image(self, image_id: str) -> dict[str, Any]:  # pragma: no cover - not reached
        return {"Id": image_id}


def _layer() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        body = b"base layer file\n" * 64
        info = tarfile.TarInfo("etc/base")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_deposited_base_layer_is_refused_before_the_engine(
    tmp_path: Path, damage: str
) -> None:
    store = FileDepositStore(tmp_path / "deposits")
    layer = _layer()
    diff_id = store.put(layer)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}})
    image_id = "sha256:" + store.put(config.encode())
    path = store.path(diff_id)
    if damage == "flipped":
        _flip(path)
    else:
        os.chmod(path, 0o644)
        path.write_bytes(layer[:700])
    engine = _Engine()
    with pytest.raises(CheckFailed) as caught:
        load_image(engine, store, image_id)
    message = caught.value.diagnostics()
    assert f"sha256:{diff_id[:12]}" in message and "damaged" in message, message
    assert b"manifest.json" not in engine.received  # the engine was given nothing to load
    assert hashlib.sha256(path.read_bytes()).hexdigest() != diff_id  # left for a repair


def test_import_lists_a_failed_build_without_a_python_none(
    builds: Builds, cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = builds.context({"app.txt": "x\n"})
    (ctx / "Dockerfile").write_text(f'FROM {builds.base_tag}\nRUN ["/bin/busybox", "false"]\n')
    tag = f"escrow-test/deposit-{builds.run}:failed"
    builds.tags.append(tag)
    r = cli(["build", str(ctx), "-t", tag, "--json"])
    assert r.exit_code == 1, r.stderr
    index = r.json()["index"]
    out = tmp_path / "failed.tar"
    assert cli(["deposit", "export", str(index), "-o", str(out)]).exit_code == 0
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "agent"))
    assert cli(["init"]).exit_code == 0
    r = cli(["deposit", "import", str(out)])
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith(f"entry {index} "))
    assert "None" not in line and line.rstrip().endswith("-"), line
