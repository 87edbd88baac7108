"""`escrow deposit import --since-checkpoint FILE`: the escrow agent's saved checkpoint note
of the vendor's ledger.  A deposit whose log extends it (the same tree, or a larger one the
deposit proves consistent with it — `escrow deposit export --since-checkpoint`) is
imported; a fork (same size, another root; or a larger tree not consistent with it), an
older view (a smaller tree) or a note signed by another key is refused with exit 1 and
nothing stored; a file that is no checkpoint note is exit 2."""

from __future__ import annotations

import hashlib
import io
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
class Vendor:
    """A vendor's ledger V with one deposited build, and F: a copy of V's home (same log
    key) that diverged from it after the checkpoint ``c0``."""

    root: Path
    home: Path
    index: int
    c0: Path  # V and F at the build (size s0)
    c1: Path  # V at s0 + 1
    cf: Path  # F at s0 + 1: the fork
    c2: Path  # V at s0 + 2
    dep1: Path  # V's deposit at s0 + 1 (no consistency proof)
    dep2: Path  # V's deposit at s0 + 2, with the proof from c1 (s0 + 1)
    agent: Path  # the escrow agent's ESCROW_HOME


def _append_key_event(name: str) -> None:
    """One more entry in the ledger of ESCROW_HOME: a fresh key registered."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.keys import SigningKey

    with Ledger.open(load_settings()) as ledger:
        ledger.register_key(SigningKey.generate().public, name)


def _save_checkpoint(path: Path) -> Path:
    r = run_cli(["ledger", "checkpoint"])
    assert r.exit_code == 0, r.stderr
    path.write_text(r.stdout, encoding="utf-8")
    return path


def _export(index: int, out: Path, *extra: str) -> Path:
    r = run_cli(["deposit", "export", str(index), "-o", str(out), *extra])
    assert r.exit_code == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Vendor]:
    root = tmp_path_factory.mktemp("since-checkpoint")
    home, fork = root / "vendor", root / "fork"
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        mp.setenv("ESCROW_HOME", str(home))
        assert run_cli(["init"]).exit_code == 0
        builds = Builds(root / "work")
        builds.make_base()
        try:
            ctx = builds.context({"app.txt": "the app\n"})
            (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
            index, _ = builds.build(ctx, project="since")
            r = run_cli(["deposit", str(index), "--context", str(ctx)])
            assert r.exit_code == 0, r.stderr
        finally:
            builds.cleanup()
        c0 = _save_checkpoint(root / "c0.txt")
        shutil.copytree(home, fork)
        _append_key_event("vendor-a1")
        c1 = _save_checkpoint(root / "c1.txt")
        dep1 = _export(index, root / "dep1.tar")
        mp.setenv("ESCROW_HOME", str(fork))
        _append_key_event("fork-b1")
        cf = _save_checkpoint(root / "cf.txt")
        mp.setenv("ESCROW_HOME", str(home))
        _append_key_event("vendor-a2")
        dep2 = _export(index, root / "dep2.tar", "--since-checkpoint", str(c1))
        c2 = _save_checkpoint(root / "c2.txt")
        agent = root / "agent"
        mp.setenv("ESCROW_HOME", str(agent))
        assert run_cli(["init"]).exit_code == 0
    yield Vendor(root, home, index, c0, c1, cf, c2, dep1, dep2, agent)


@pytest.fixture
def agent(vendor: Vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agent's deposit store, holding an earlier import (of dep1) already."""
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ESCROW_HOME", str(vendor.agent))
    store = tmp_path / "store"
    r = run_cli(["deposit", "import", str(vendor.dep1), "--deposit-store", str(store)])
    assert r.exit_code == 0, r.stderr
    return store


def _import(store: Path, archive: Path, *extra: str) -> Any:
    return run_cli(["deposit", "import", str(archive), "--deposit-store", str(store), *extra])


def _snapshot(store: Path) -> dict[str, str]:
    return {
        p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# -- the log only grew -------------------------------------------------------------


def test_a_deposit_of_a_log_grown_since_the_saved_checkpoint_is_imported(
    vendor: Vendor, agent: Path
) -> None:
    r = _import(agent, vendor.dep2, "--since-checkpoint", str(vendor.c1))
    assert r.exit_code == 0, r.stderr
    size1 = int(vendor.c1.read_text().split("\n")[1])
    assert f"extends your saved checkpoint (size {size1}): the log only grew" in r.stdout
    j = _import(agent, vendor.dep2, "--since-checkpoint", str(vendor.c1), "--json")
    assert j.exit_code == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["sinceCheckpoint"] == {"size": size1, "extended": True}
    assert doc["treeSize"] == size1 + 1


def test_a_deposit_of_the_very_tree_saved_is_imported(vendor: Vendor, agent: Path) -> None:
    r = _import(agent, vendor.dep1, "--since-checkpoint", str(vendor.c1))
    assert r.exit_code == 0, r.stderr
    assert "the same tree" in r.stdout


def test_the_checkpoint_of_an_imported_deposit_serves_as_the_saved_one(
    vendor: Vendor, agent: Path, tmp_path: Path
) -> None:
    with tarfile.open(vendor.dep1) as tar:
        f = tar.extractfile("checkpoint.txt")
        assert f is not None
        saved = tmp_path / "checkpoint.txt"
        saved.write_bytes(f.read())
    r = _import(agent, vendor.dep2, "--since-checkpoint", str(saved))
    assert r.exit_code == 0, r.stderr


# -- refused: exit 1, nothing stored -----------------------------------------------


def _refused(agent: Path, archive: Path, note: Path, *needles: str) -> str:
    before = _snapshot(agent)
    r = _import(agent, archive, "--since-checkpoint", str(note))
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    line = _one_line(r.stderr)
    for needle in needles:
        assert needle in line, line
    assert "nothing was imported" in line
    assert _snapshot(agent) == before
    return line


def test_a_fork_of_the_same_size_is_refused(vendor: Vendor, agent: Path) -> None:
    _refused(agent, vendor.dep1, vendor.cf, "another root", "forked or rewritten")


def test_a_larger_tree_not_consistent_with_the_saved_checkpoint_is_refused(
    vendor: Vendor, agent: Path
) -> None:
    """The agent saw the fork at s0 + 1; the deposit proves V's s0 + 2 grew from V's own
    s0 + 1, whose root is not the one the agent saw (a split view)."""
    _refused(agent, vendor.dep2, vendor.cf, "another root", "forked or rewritten")


def test_a_deposit_older_than_the_saved_checkpoint_is_refused(vendor: Vendor, agent: Path) -> None:
    _refused(agent, vendor.dep1, vendor.c2, "smaller than your saved checkpoint")


def test_a_deposit_that_proves_nothing_about_the_saved_size_is_refused(
    vendor: Vendor, agent: Path
) -> None:
    line = _refused(agent, vendor.dep2, vendor.c0, "no consistency proof")
    assert "--since-checkpoint" in line  # what to ask the vendor for


def test_a_deposit_without_any_proof_is_refused_for_a_smaller_saved_checkpoint(
    vendor: Vendor, agent: Path
) -> None:
    _refused(agent, vendor.dep1, vendor.c0, "no consistency proof")


def test_a_note_signed_by_another_key_is_refused(
    vendor: Vendor, agent: Path, tmp_path: Path
) -> None:
    from escrow.ledger.checkpoint import parse_checkpoint_body, parse_note, sign_checkpoint
    from escrow.signing.keys import SigningKey

    origin, size, root = parse_checkpoint_body(parse_note(vendor.c1.read_text())[0])
    other = tmp_path / "other.txt"
    other.write_text(sign_checkpoint(origin, size, root, SigningKey.generate(), origin))
    _refused(agent, vendor.dep1, other, "not signed by the deposit's log key")


def test_an_altered_consistency_proof_is_refused(
    vendor: Vendor, agent: Path, tmp_path: Path
) -> None:
    altered = tmp_path / "altered.tar"
    with tarfile.open(vendor.dep2) as tin, tarfile.open(altered, "w") as tout:
        for m in tin:
            f = tin.extractfile(m)
            data = f.read() if f is not None else b""
            if m.name == "TOC.json":
                toc = json.loads(data)
                toc["consistency"]["proof"][0] = "00" * 32
                data = json.dumps(toc).encode()
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
    _refused(agent, altered, vendor.c1, "consistency proof", "altered")


# -- not a checkpoint note: exit 2 --------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "Cannot read the saved checkpoint"),
        ("hello, I am no checkpoint\n", "is not a checkpoint note"),
        ("origin\nnot-a-size\nAAAA\n\n\u2014 origin AAAAAAAA\n", "is not a checkpoint note"),
    ],
)
def test_a_file_that_is_no_checkpoint_note_is_an_input_error(
    vendor: Vendor, agent: Path, tmp_path: Path, content: str | None, needle: str
) -> None:
    note = tmp_path / "saved.txt"
    if content is not None:
        note.write_text(content, encoding="utf-8")
    before = _snapshot(agent)
    r = _import(agent, vendor.dep2, "--since-checkpoint", str(note))
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert needle in _one_line(r.stderr)
    assert _snapshot(agent) == before


# -- the vendor's side --------------------------------------------------------------


def test_export_refuses_a_saved_checkpoint_its_ledger_does_not_extend(
    vendor: Vendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ESCROW_HOME", str(vendor.home))
    out = tmp_path / "never.tar"
    r = run_cli(
        ["deposit", "export", str(vendor.index), "-o", str(out)]
        + ["--since-checkpoint", str(vendor.cf)]
    )
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "forked or rewritten" in _one_line(r.stderr)
    assert not out.exists() and not list(tmp_path.iterdir())
    # the same size as the ledger and an empty tree need no proof; a smaller one gets it
    j = run_cli(
        ["deposit", "export", str(vendor.index), "-o", str(out), "--json"]
        + ["--since-checkpoint", str(vendor.c0)]
    )
    assert j.exit_code == 0, j.stderr
    size0 = int(vendor.c0.read_text().split("\n")[1])
    assert json.loads(j.stdout)["consistencyFrom"] == size0
