"""Saving an image into the deposit streams the engine's ``docker save`` once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deposit.conftest import Builds, docker

pytestmark = pytest.mark.docker


def test_a_new_layer_the_size_of_a_stored_one_is_stored_in_one_pass(
    builds: Builds, escrow_home: Path
) -> None:
    """Layers the store may already hold are only hashed when their size matches; a new
    layer of the same size as a stored one (small layers collide often: tar sizes are
    multiples of 512) used to make the whole ``docker save`` stream again."""
    from escrow.capture.engine import DockerEngine
    from escrow.deposit.images import missing_parts, saved_config
    from escrow.deposit.store import open_store

    store = open_store(escrow_home)
    first = builds.context({"x/a.txt": "1"})
    (first / "Dockerfile").write_text(f"FROM {builds.base_tag}\nCOPY x/a.txt /x/a.txt\n")
    tag_a = f"escrow-test/deposit-{builds.run}:same-size-a"
    builds.tags.append(tag_a)
    docker("build", "-q", "-t", tag_a, str(first))
    second = builds.context({"x/b.txt": "2"})
    (second / "Dockerfile").write_text(f"FROM {tag_a}\nCOPY x/b.txt /x/b.txt\n")
    tag_b = f"escrow-test/deposit-{builds.run}:same-size-b"
    builds.tags.append(tag_b)
    docker("build", "-q", "-t", tag_b, str(second))
    image_b = docker("image", "inspect", "-f", "{{.Id}}", tag_b).stdout.strip()

    with DockerEngine() as engine:
        image_a = engine.inspect_image(tag_a)
        assert image_a is not None
        saved_config(engine, store, image_a["Id"])
        sizes = [store.size(d.removeprefix("sha256:")) for d in image_a["RootFS"]["Layers"]]

        calls: list[Any] = []
        real_save = engine._save

        def counting_save(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return real_save(*args, **kwargs)

        engine._save = counting_save  # type: ignore[method-assign]
        config = saved_config(engine, store, image_b)

    diff_ids = [d.removeprefix("sha256:") for d in config["rootfs"]["diff_ids"]]
    assert len(diff_ids) == len(sizes) + 1
    assert store.size(diff_ids[-1]) == sizes[-1], "the test needs two layers of one size"
    assert diff_ids[-1] != diff_ids[-2]
    assert missing_parts(store, image_b) == []
    assert len(calls) == 1
