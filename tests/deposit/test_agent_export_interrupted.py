"""`escrow deposit export` killed part way left its partial archive (`.escrow-export-*`,
hundreds of MiB) beside the output for good, and every retry killed again added one; a full
disk or a read-only folder was reported as "Cannot use: No space left on device." without
naming the archive.  Now the next export of the same file removes what killed exports of it
left (never one another export is still writing), and the error names the archive."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.deposit.conftest import Builds

_ENV = ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER")

_KILLED = """
import os, sys
from escrow.cli.main import main
real = os.replace
def replace(src, dst, *a, **k):
    if str(dst) == sys.argv[1]:
        os._exit(137)  # killed just before the archive would have been renamed into place
    return real(src, dst, *a, **k)
os.replace = replace
main(["deposit", "export", sys.argv[2], "-o", sys.argv[1]])
"""


@pytest.fixture(scope="module")
def vendor(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any
) -> Iterator[tuple[Path, int]]:
    """An ESCROW_HOME holding one deposited build: (home, index)."""
    root = tmp_path_factory.mktemp("export-killed")
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        mp.setenv("ESCROW_HOME", str(root / "vendor"))
        assert run_cli(["init"]).exit_code == 0
        builds = Builds(root / "work")
        builds.make_base()
        try:
            ctx = builds.context({"app.txt": "export\n"})
            (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
            index, _ = builds.build(ctx, project="export-app")
            r = run_cli(["deposit", str(index), "--context", str(ctx)])
            assert r.exit_code == 0, r.stderr
        finally:
            builds.cleanup()
    yield root / "vendor", index


@pytest.fixture
def home(vendor: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ESCROW_HOME", str(vendor[0]))
    return vendor


def test_a_killed_export_leaves_nothing_once_exported_again(
    home: tuple[Path, int], tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "deposit.tar"
    for _ in range(2):  # killed twice
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED, str(out), str(home[1])],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert killed.returncode == 137, killed.stderr
    assert not out.exists()
    assert list(out_dir.iterdir())  # the partial archive a kill left

    r = run_cli(["deposit", "export", str(home[1]), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["deposit.tar"]
    with tarfile.open(out) as tar:
        assert "TOC.json" in tar.getnames()


def test_an_export_in_progress_keeps_its_partial_archive(
    home: tuple[Path, int], tmp_path: Path
) -> None:
    out = tmp_path / "deposit.tar"
    busy = tmp_path / ".deposit.tar.abcd1234.escrow-partial"  # another export writing it
    busy.write_bytes(b"partial")
    other = tmp_path / ".other.tar.abcd1234.escrow-partial"  # of another output
    other.write_bytes(b"partial")
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run_cli(["deposit", "export", str(home[1]), "-o", str(out)])
    finally:
        os.close(fd)
    assert r.exit_code == 0, r.stderr
    assert busy.exists() and other.exists() and out.exists()


def test_a_full_disk_names_the_archive_and_leaves_nothing(
    home: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "addfile", full)
    out = tmp_path / "out" / "deposit.tar"
    r = run_cli(["deposit", "export", str(home[1]), "-o", str(out)])
    assert r.exit_code == 3, r.stderr
    assert r.stderr.startswith(
        f"escrow: error: Cannot write the deposit archive {out}: No space left on device; "
        "nothing was written."
    ), r.stderr
    assert list(out.parent.iterdir()) == []


def test_a_full_store_on_import_names_the_archive_and_the_store(
    home: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "deposit.tar"
    assert run_cli(["deposit", "export", str(home[1]), "-o", str(out)]).exit_code == 0
    agent = tmp_path / "agent"

    class Full:
        def read(self, n: int = -1) -> bytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: Full())
    store = agent / "deposits"
    r = run_cli(
        ["--home", str(agent), "deposit", "import", str(out), "--deposit-store", str(store)]
    )
    assert r.exit_code == 3, r.stderr
    assert r.stderr.startswith(
        f"escrow: error: Cannot import {out} into the deposit store {store}: No space left on "
        "device."
    ), r.stderr
    assert not list((store / "tmp").iterdir())
