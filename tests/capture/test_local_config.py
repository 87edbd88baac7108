"""The built image's config read from the engine's own image store, trusted by its hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from escrow.capture.engine import DockerEngine

pytestmark = pytest.mark.docker


def _saved_config(engine: DockerEngine, image_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as mp:
        mp.setattr(engine, "local_config", lambda image_id: None)
        return engine.image_config(image_id)


def test_the_engines_copy_is_the_raw_config(
    base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DockerEngine() as engine:
        raw = engine.local_config(base_image)
        assert raw is not None, "the tests run as root beside a local engine"
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == base_image
        assert engine.image_config(base_image) == json.loads(raw)
        assert json.loads(raw) == _saved_config(engine, base_image, monkeypatch)
        assert engine.local_config("sha256:" + "0" * 64) is None  # no such image
        assert engine.local_config("../../etc/passwd") is None  # only 64 hex digits


def test_a_file_that_does_not_hash_to_the_id_is_not_trusted(
    base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another data root, with a file under the image's name that is not its config:
    ignored, and the config comes from ``docker save``."""
    hexid = base_image.removeprefix("sha256:")
    store = tmp_path / "image" / "overlay2" / "imagedb" / "content" / "sha256"
    store.mkdir(parents=True)
    (store / hexid).write_text('{"rootfs": {"diff_ids": []}, "history": []}')
    with DockerEngine() as engine:
        engine._info = {"DockerRootDir": str(tmp_path), "Driver": "overlay2"}
        assert engine.local_config(base_image) is None
        config = engine.image_config(base_image)
    assert config["rootfs"]["diff_ids"], "the real config, from the save"


def test_an_engine_on_another_machine_has_no_local_copy(
    base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker

    with DockerEngine(api=docker.APIClient(version="auto")) as engine:
        assert engine.local_config(base_image) is None
        assert engine.image_config(base_image)["rootfs"]["diff_ids"]


# -- layers from the engine's layer store -------------------------------------------


def _layer_bytes(chunks: Any) -> bytes:
    return b"".join(chunks)


def test_every_layer_is_rebuilt_byte_for_byte(base_image: str) -> None:
    """Each layer, rebuilt from tar-split and the layer's files, is the tar ``docker save``
    gives: the same bytes, so the same diff ID."""
    import io
    import tarfile

    with DockerEngine() as engine:
        found = engine.inspect_image(base_image)
        assert found is not None
        diff_ids = found["RootFS"]["Layers"]
        rebuilt = []
        for i, diff_id in enumerate(diff_ids):
            chunks = engine.local_layer(diff_ids, i)
            assert chunks is not None, "the tests run as root beside a local overlay2 engine"
            data = _layer_bytes(chunks)
            assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
            rebuilt.append(data)
        saved = b"".join(engine.save([base_image]))
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        layers = {
            hashlib.sha256(archive.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile() and (m.name.endswith("layer.tar") or m.name.startswith("blobs/"))
        }
    assert {hashlib.sha256(d).hexdigest() for d in rebuilt} <= layers


def _copy_of_the_engines_layer(
    engine: DockerEngine, diff_ids: list[str], index: int, root: Path
) -> None:
    """The engine's files of layer ``index`` copied under another data root."""
    import shutil

    real_root, _ = engine._local_root()  # type: ignore[misc]
    chain = diff_ids[0]
    for d in diff_ids[1 : index + 1]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    hexid = chain.removeprefix("sha256:")
    layerdb = Path(real_root, "image", "overlay2", "layerdb", "sha256", hexid)
    shutil.copytree(layerdb, root / "image" / "overlay2" / "layerdb" / "sha256" / hexid)
    cache_id = (layerdb / "cache-id").read_text().strip()
    shutil.copytree(
        Path(real_root, "overlay2", cache_id, "diff"),
        root / "overlay2" / cache_id / "diff",
        symlinks=True,
    )


def test_a_changed_file_in_the_layer_store_is_not_stored(base_image: str, tmp_path: Path) -> None:
    """A layer whose files no longer give its diff ID (a file edited in the engine's store):
    nothing is stored, and the caller saves the image instead."""
    from escrow.deposit.images import local_layers
    from escrow.deposit.store import FileDepositStore

    with DockerEngine() as engine:
        found = engine.inspect_image(base_image)
        assert found is not None
        diff_ids = found["RootFS"]["Layers"][:1]  # the layer with busybox itself
        _copy_of_the_engines_layer(engine, diff_ids, 0, tmp_path / "root")
        # a regular file of the copy: the layer's symlinks point at the host's files
        files = [
            p
            for p in (tmp_path / "root" / "overlay2").rglob("*")
            if not p.is_symlink() and p.is_file()
        ]
        victim = max(files, key=lambda p: p.lstat().st_size)
        with victim.open("r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
        engine._info = {"DockerRootDir": str(tmp_path / "root"), "Driver": "overlay2"}
        chunks = engine.local_layer(diff_ids, 0)
        assert chunks is not None
        assert "sha256:" + hashlib.sha256(_layer_bytes(chunks)).hexdigest() != diff_ids[0]
        store = FileDepositStore(tmp_path / "store")
        assert local_layers(engine, store, diff_ids) is False
        assert not store.has(diff_ids[0].removeprefix("sha256:"))
        assert list(store) == []


def test_a_layer_naming_a_file_outside_it_is_refused(base_image: str, tmp_path: Path) -> None:
    import gzip

    with DockerEngine() as engine:
        found = engine.inspect_image(base_image)
        assert found is not None
        diff_ids = found["RootFS"]["Layers"]
        _copy_of_the_engines_layer(engine, diff_ids, 0, tmp_path / "root")
        split = next((tmp_path / "root" / "image").rglob("tar-split.json.gz"))
        with gzip.open(split, "wt") as f:
            f.write(json.dumps({"type": 1, "name": "../../../../etc/passwd", "size": 10}) + "\n")
        engine._info = {"DockerRootDir": str(tmp_path / "root"), "Driver": "overlay2"}
        chunks = engine.local_layer(diff_ids, 0)
        assert chunks is not None
        with pytest.raises(ValueError, match="outside"):
            _layer_bytes(chunks)


def test_no_layer_store_but_a_local_overlay2_one(base_image: str, tmp_path: Path) -> None:
    """Another storage driver, an engine on another machine, a layer not there: None."""
    import docker

    with DockerEngine() as engine:
        found = engine.inspect_image(base_image)
        assert found is not None
        diff_ids = found["RootFS"]["Layers"]
        real = engine._local_root()
        assert real is not None
        engine._info = {"DockerRootDir": real[0], "Driver": "vfs"}
        assert engine.local_layer(diff_ids, 0) is None
        engine._info = {"DockerRootDir": str(tmp_path), "Driver": "overlay2"}
        assert engine.local_layer(diff_ids, 0) is None
        engine._info = None
        assert engine.local_layer(["sha256:" + "0" * 64], 0) is None
        assert engine.local_layer(diff_ids, len(diff_ids)) is None
    with DockerEngine(api=docker.APIClient(version="auto")) as remote:
        assert remote.local_layer(diff_ids, 0) is None


@pytest.mark.parametrize(
    "damage",
    ["truncated", "not-json", "no-name", "payload-not-text"],
)
def test_an_unreadable_tar_split_falls_back_to_the_save(
    base_image: str, tmp_path: Path, damage: str
) -> None:
    """Whatever is wrong with the engine's tar-split record, the layer is not stored from
    it (the caller saves the image instead) and nothing else is raised."""
    import gzip

    from escrow.deposit.images import local_layers
    from escrow.deposit.store import FileDepositStore

    with DockerEngine() as engine:
        found = engine.inspect_image(base_image)
        assert found is not None
        diff_ids = found["RootFS"]["Layers"][:1]
        _copy_of_the_engines_layer(engine, diff_ids, 0, tmp_path / "root")
        split = next((tmp_path / "root" / "image").rglob("tar-split.json.gz"))
        if damage == "truncated":
            data = split.read_bytes()
            split.write_bytes(data[: len(data) // 2])
        else:
            line = {
                "not-json": "{not json",
                "no-name": json.dumps({"type": 1, "size": 5}),
                "payload-not-text": json.dumps({"type": 2, "payload": 7}),
            }[damage]
            with gzip.open(split, "wt") as f:
                f.write(line + "\n")
        engine._info = {"DockerRootDir": str(tmp_path / "root"), "Driver": "overlay2"}
        store = FileDepositStore(tmp_path / "store")
        assert local_layers(engine, store, diff_ids) is False
        assert list(store) == []
