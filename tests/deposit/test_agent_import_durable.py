"""`escrow deposit import` renamed each verified blob from its staging folder into
`blobs/sha256/` without flushing it, so after a power loss a blob could be there empty under
its hash name (the build's own deposit flushes, then renames).  And it made that staging
folder before taking the store's shared lock, so an `escrow gc --apply` landing in between
swept it away.  Now every imported blob is flushed before it is renamed into place, and the
staging folder is made under the lock."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from escrow.deposit import bundle
from escrow.deposit.bundle import import_deposit
from escrow.deposit.gc import collect_garbage
from escrow.deposit.store import FileDepositStore
from tests.conftest import run_cli
from tests.deposit.conftest import Builds

_ENV = ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Path]:
    """An exported deposit of one build."""
    root = tmp_path_factory.mktemp("import-durable")
    out = root / "deposit.tar"
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        mp.setenv("ESCROW_HOME", str(root / "vendor"))
        assert run_cli(["init"]).exit_code == 0
        builds = Builds(root / "work")
        builds.make_base()
        try:
            ctx = builds.context({"app.txt": "durable\n", "other.txt": "more\n"})
            (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
            index, _ = builds.build(ctx, project="durable-app")
            r = run_cli(["deposit", str(index), "--context", str(ctx)])
            assert r.exit_code == 0, r.stderr
            r = run_cli(["deposit", "export", str(index), "-o", str(out)])
            assert r.exit_code == 0, r.stderr
        finally:
            builds.cleanup()
    yield out


def _listed_blobs(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("TOC.json")
        assert f is not None
        return {b["sha256"] for b in json.loads(f.read())["blobs"]}


def test_import_flushes_every_blob_before_renaming_it_into_place(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "deposits"
    blobs_dir = root / "blobs" / "sha256"
    synced: set[tuple[int, int]] = set()
    placed: dict[str, bool] = {}  # blob name -> flushed when it was renamed into place
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real_fsync(fd)

    def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        if Path(dst).parent.parent == blobs_dir:
            st = os.stat(src)
            placed[Path(dst).name] = (st.st_dev, st.st_ino) in synced
        real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store = FileDepositStore(root)
    result = import_deposit(store, archive, say=lambda _: None)

    stored = set(store)
    assert _listed_blobs(archive) <= stored
    assert result.blobs_new >= len(_listed_blobs(archive))
    assert set(placed) == stored  # every stored blob was renamed into place…
    unflushed = sorted(name for name, ok in placed.items() if not ok)
    assert unflushed == []  # …after its bytes were flushed to disk
    for digest in stored:  # read-only, as every blob of the store
        assert stat.S_IMODE(store.path(digest).stat().st_mode) == 0o444


def test_gc_landing_before_the_import_takes_its_lock_sweeps_nothing_of_it(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "deposits"
    store = FileDepositStore(root)
    real_lock = store.lock
    swept: list[dict[str, Any]] = []

    def lock(*, exclusive: bool) -> Any:
        if not exclusive and not swept:  # `escrow gc --apply` in another process, just now
            swept.append(collect_garbage(FileDepositStore(root), apply=True))
        return real_lock(exclusive=exclusive)

    staging: list[tuple[bool, int]] = []
    real_extract = bundle.safe_extract

    def safe_extract(fileobj: Any, target: Path, **kwargs: Any) -> list[str]:
        folder = Path(target).parent
        staging.append(
            (folder.is_dir(), stat.S_IMODE(folder.stat().st_mode) if folder.is_dir() else 0)
        )
        return real_extract(fileobj, target, **kwargs)

    monkeypatch.setattr(store, "lock", lock)
    monkeypatch.setattr(bundle, "safe_extract", safe_extract)
    result = import_deposit(store, archive, say=lambda _: None)

    assert swept and swept[0]["applied"]
    # the import's private staging folder was still there when it extracted into it
    assert staging == [(True, 0o700)]
    assert _listed_blobs(archive) <= set(store)
    assert [e["new"] for e in result.entries] == [True]
    assert list((root / "tmp").iterdir()) == []  # and removed once imported
