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
