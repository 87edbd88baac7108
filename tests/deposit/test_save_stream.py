"""Saving an image into the deposit streams the engine's ``docker save`` once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deposit.conftest import Builds, docker

pytestmark = pytest.mark.docker


def test_a_new_layer_the_size_of_a_stored_one_is_stored_in_one_pass(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers the store may already hold are only hashed when their size matches; a new
    layer of the same size as a stored one (small layers collide often: tar sizes are
    multiples of 512) used to make the whole ``docker save`` stream again."""
    from escrow.capture.engine import DockerEngine
    from escrow.deposit.images import missing_parts, saved_config
    from escrow.deposit.store import open_store

    store = open_store(escrow_home)
    first = builds.context({"x/a.txt": "1"})
    # the layers through docker save, as from an engine whose layer store this process
    # cannot read (a remote one)
    monkeypatch.setattr(DockerEngine, "local_layer", lambda self, diff_ids, index: None)
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


def _count_saves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch ``DockerEngine._save``: each call appends the name of the thread making it."""
    import threading

    from escrow.capture.engine import DockerEngine

    threads: list[str] = []
    real_save = DockerEngine._save

    def counting_save(self: DockerEngine, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(DockerEngine, "_save", counting_save)
    return threads


def _build(builds: Builds, ctx: Path, tag: str) -> dict[str, Any]:
    from tests.conftest import run_cli

    builds.tags.append(tag)
    r = run_cli(["build", str(ctx), "-t", tag, "--json"])
    assert r.exit_code == 0, r.stderr
    result: dict[str, Any] = r.json()
    assert result["deposit"]["complete"], result
    return result


def _no_local_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's layer store unreadable (a remote engine, or not root): layers come
    from ``docker save``."""
    from escrow.capture.engine import DockerEngine

    monkeypatch.setattr(DockerEngine, "local_layer", lambda self, diff_ids, index: None)


def _reads_of_local_layers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch ``DockerEngine.local_layer``: each layer read appends its thread's name."""
    import threading

    from escrow.capture.engine import DockerEngine

    threads: list[str] = []
    real = DockerEngine.local_layer

    def counting(self: DockerEngine, diff_ids: Any, index: int) -> Any:
        threads.append(threading.current_thread().name)
        return real(self, diff_ids, index)

    monkeypatch.setattr(DockerEngine, "local_layer", counting)
    return threads


def test_the_new_layers_come_from_the_engines_layer_store_while_the_last_steps_run(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local engine whose files this process can read: no ``docker save`` at all.  The
    layers the store lacks are rebuilt from the engine's layer store (each checked
    against its diff ID) while the last, layer-less steps run, and the config comes
    from the engine's image store; the deposit then checks and restores."""
    from escrow.deposit.images import missing_parts
    from escrow.deposit.store import open_store
    from tests.conftest import run_cli

    saves = _count_saves(monkeypatch)
    reads = _reads_of_local_layers(monkeypatch)
    ctx = builds.context({"app.txt": "local"})
    (ctx / "Dockerfile").write_text(
        builds.dockerfile() + 'ENV MODE=local\nLABEL stage="last"\nCMD ["/bin/busybox", "true"]\n'
    )
    result = _build(builds, ctx, f"escrow-test/deposit-{builds.run}:local")
    assert saves == []
    assert reads and set(reads) == {"escrow-save-ahead"}
    assert missing_parts(open_store(escrow_home), result["image_id"]) == []
    r = run_cli(["deposit", "check", str(result["index"]), "--verify"])
    assert r.exit_code == 0, r.stdout + r.stderr


def test_a_build_ending_in_a_layer_stores_its_layers_after_it_without_a_save(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No instruction after the last layer: the layers are read after the build, still
    without a save."""
    from escrow.deposit.images import missing_parts
    from escrow.deposit.store import open_store

    saves = _count_saves(monkeypatch)
    reads = _reads_of_local_layers(monkeypatch)
    ctx = builds.context({"app.txt": "after-local"})
    (ctx / "Dockerfile").write_text(builds.dockerfile())  # ends with RUN
    result = _build(builds, ctx, f"escrow-test/deposit-{builds.run}:after-local")
    assert saves == []
    assert reads and "escrow-save-ahead" not in reads
    assert missing_parts(open_store(escrow_home), result["image_id"]) == []


def test_the_layers_are_saved_while_the_last_steps_run(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the engine's layer store: the image of the last step that could add a
    layer is saved into the deposit while the steps after it (ENV, CMD, LABEL) run, and
    nothing is saved once the build has ended -- the config comes from the engine's image
    store, checked against the image ID."""
    from escrow.deposit.images import missing_parts
    from escrow.deposit.store import open_store
    from tests.conftest import run_cli

    _no_local_layers(monkeypatch)
    threads = _count_saves(monkeypatch)
    ctx = builds.context({"app.txt": "ahead"})
    (ctx / "Dockerfile").write_text(
        builds.dockerfile() + 'ENV MODE=ahead\nLABEL stage="last"\nCMD ["/bin/busybox", "true"]\n'
    )
    result = _build(builds, ctx, f"escrow-test/deposit-{builds.run}:ahead")
    assert threads == ["escrow-save-ahead"]
    assert missing_parts(open_store(escrow_home), result["image_id"]) == []
    r = run_cli(["deposit", "check", str(result["index"])])
    assert r.exit_code == 0, r.stdout + r.stderr


def test_a_build_ending_in_a_layer_saves_after_it(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the engine's layer store, and no instruction after the last layer:
    nothing can be saved ahead, one save after."""
    from escrow.deposit.images import missing_parts
    from escrow.deposit.store import open_store

    _no_local_layers(monkeypatch)
    threads = _count_saves(monkeypatch)
    ctx = builds.context({"app.txt": "after"})
    (ctx / "Dockerfile").write_text(builds.dockerfile())  # ends with RUN
    result = _build(builds, ctx, f"escrow-test/deposit-{builds.run}:after")
    assert threads == ["escrow-config"]
    assert missing_parts(open_store(escrow_home), result["image_id"]) == []


def test_without_the_engines_config_file_the_config_comes_from_a_save(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine whose stores this process cannot read (remote, or not root): the
    layers saved ahead are kept, and the config is read from one save after the build."""
    from escrow.capture.engine import DockerEngine
    from escrow.deposit.images import missing_parts
    from escrow.deposit.store import open_store

    monkeypatch.setattr(DockerEngine, "local_config", lambda self, image_id: None)
    _no_local_layers(monkeypatch)
    threads = _count_saves(monkeypatch)
    ctx = builds.context({"app.txt": "remote"})
    (ctx / "Dockerfile").write_text(builds.dockerfile() + "ENV MODE=remote\n")
    result = _build(builds, ctx, f"escrow-test/deposit-{builds.run}:remote")
    # then the base image's config, which no save of the built image holds
    assert threads == ["escrow-save-ahead", "escrow-config", "MainThread"]
    assert missing_parts(open_store(escrow_home), result["image_id"]) == []
