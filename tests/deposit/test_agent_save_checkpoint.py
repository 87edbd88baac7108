"""`escrow deposit import --save-checkpoint FILE`: the escrow agent keeps the checkpoint of
each deposit it imported, for the next import's `--since-checkpoint`, without digging it out
of the archive — and a refused import (a fork) leaves the saved file as it was, so a script
that always updates it cannot end up trusting the fork."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.deposit.conftest import Builds

_ENV = ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER")


@dataclass
class Deposits:
    dep1: Path  # the vendor's deposit at size s + 1
    dep2: Path  # the vendor's at s + 2, with the consistency proof from s + 1
    fork: Path  # a copy of the vendor's home that diverged after s: its export at s + 2
    agent: Path  # the agent's ESCROW_HOME


def _append_key_event(name: str) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.keys import SigningKey

    with Ledger.open(load_settings()) as ledger:
        ledger.register_key(SigningKey.generate().public, name)


def _cli(*args: str) -> Any:
    r = run_cli(list(args))
    assert r.exit_code == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def deposits(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Deposits]:
    root = tmp_path_factory.mktemp("agent-save")
    home, fork = root / "vendor", root / "fork"
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        mp.setenv("ESCROW_HOME", str(home))
        _cli("init")
        builds = Builds(root / "work")
        builds.make_base()
        try:
            ctx = builds.context({"app.txt": "day 1\n"})
            (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
            index, _ = builds.build(ctx, project="agent-save")
            _cli("deposit", str(index), "--context", str(ctx))
        finally:
            builds.cleanup()
        shutil.copytree(home, fork)
        _append_key_event("vendor-1")
        dep1 = root / "dep1.tar"
        _cli("deposit", "export", str(index), "-o", str(dep1))
        c1 = root / "c1.txt"
        c1.write_text(_cli("ledger", "checkpoint").stdout)
        _append_key_event("vendor-2")
        dep2 = root / "dep2.tar"
        _cli("deposit", "export", str(index), "-o", str(dep2), "--since-checkpoint", str(c1))
        mp.setenv("ESCROW_HOME", str(fork))
        _append_key_event("fork-1")
        _append_key_event("fork-2")
        forked = root / "fork.tar"
        _cli("deposit", "export", str(index), "-o", str(forked))
        agent = root / "agent"
        mp.setenv("ESCROW_HOME", str(agent))
        _cli("init")
    yield Deposits(dep1, dep2, forked, agent)


@pytest.fixture
def store(deposits: Deposits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ESCROW_HOME", str(deposits.agent))
    return tmp_path / "store"


def _import(store: Path, archive: Path, *extra: str) -> Any:
    return run_cli(["deposit", "import", str(archive), "--deposit-store", str(store), *extra])


def _checkpoint_of(archive: Path) -> bytes:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("checkpoint.txt")
        assert f is not None
        return f.read()


def _snapshot(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_import_saves_the_checkpoint_to_pass_to_the_next_import(
    deposits: Deposits, store: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "saved" / "checkpoint.txt"
    saved.parent.mkdir()
    r = _import(store, deposits.dep1, "--save-checkpoint", str(saved))
    assert r.exit_code == 0, r.stderr
    assert saved.read_bytes() == _checkpoint_of(deposits.dep1)
    size1 = int(saved.read_text().split("\n")[1])
    assert f"saved its checkpoint (size {size1}) to {saved}" in r.stdout
    # the next deposit: checked against the saved file, which is then updated in place
    j = _import(
        store,
        deposits.dep2,
        "--since-checkpoint",
        str(saved),
        "--save-checkpoint",
        str(saved),
        "--json",
    )
    assert j.exit_code == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["sinceCheckpoint"] == {"size": size1, "extended": True}
    assert doc["savedCheckpoint"] == str(saved)
    assert doc["checkpoint"].encode() == _checkpoint_of(deposits.dep2)
    assert saved.read_bytes() == _checkpoint_of(deposits.dep2)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["checkpoint.txt"]


def test_a_refused_import_leaves_the_saved_checkpoint_as_it_was(
    deposits: Deposits, store: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "saved" / "checkpoint.txt"
    saved.parent.mkdir()
    r = _import(store, deposits.dep1, "--save-checkpoint", str(saved))
    assert r.exit_code == 0, r.stderr
    before, kept = _snapshot(store), saved.read_bytes()
    r = _import(
        store, deposits.fork, "--since-checkpoint", str(saved), "--save-checkpoint", str(saved)
    )
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "nothing was imported" in r.stderr
    assert saved.read_bytes() == kept
    assert sorted(p.name for p in saved.parent.iterdir()) == ["checkpoint.txt"]
    assert _snapshot(store) == before


def test_a_checkpoint_file_that_cannot_be_written_is_refused_before_importing(
    deposits: Deposits, store: Path, tmp_path: Path
) -> None:
    r = _import(store, deposits.dep1, "--save-checkpoint", str(tmp_path / "no" / "such" / "c.txt"))
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "Cannot write the checkpoint file" in r.stderr
    assert "nothing was imported" in r.stderr
    assert not any(store.rglob("refs/imports/*"))
