"""An exported deposit cut short (a copy interrupted, a killed export's partial file) is a
deposit that lacks what its TOC.json promises: `escrow deposit import` refuses it as a
failed check (exit 1, naming where it ends) and stores nothing — like a deposit with a
missing blob, not like an archive that is no deposit at all (exit 2)."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.deposit.conftest import Builds


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Path]:
    """One build, deposited and exported (made once: each test imports a cut copy)."""
    root = tmp_path_factory.mktemp("truncated")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(root / "vendor"))
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            mp.delenv(var, raising=False)
        assert run_cli(["init"]).exit_code == 0
        builds = Builds(root / "work")
        builds.make_base()
        try:
            ctx = builds.context({"app.txt": "cut short\n"})
            (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
            index, _ = builds.build(ctx, project="truncated")
            assert run_cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
            out = root / "deposit.tar"
            r = run_cli(["deposit", "export", str(index), "-o", str(out)])
            assert r.exit_code == 0, r.stderr
        finally:
            builds.cleanup()
    yield out


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "agent"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    assert run_cli(["init"]).exit_code == 0
    return home


def _stored(home: Path) -> list[Path]:
    store = home / "deposits"
    return [p for sub in ("blobs", "refs") for p in (store / sub).rglob("*") if p.is_file()]


def _cut(exported: Path, tmp_path: Path, where: str) -> tuple[Path, str]:
    """A copy of the archive that ends part way through the data of a member; its name."""
    with tarfile.open(exported) as tar:
        members = [m for m in tar if m.isreg() and m.size > 2]
    if where == "largest blob":
        member = max((m for m in members if m.name.startswith("blobs/")), key=lambda m: m.size)
    else:
        member = next(m for m in members if m.name == where)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(exported.read_bytes()[: member.offset_data + member.size // 2])
    return cut, member.name


@pytest.mark.parametrize("where", ["TOC.json", "checkpoint.txt", "largest blob"])
def test_a_deposit_cut_short_is_refused_as_corrupted(
    exported: Path, agent: Path, tmp_path: Path, where: str
) -> None:
    cut, member = _cut(exported, tmp_path, where)
    r = run_cli(["deposit", "import", str(cut)])
    assert r.exit_code == 1, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    assert f"is cut short within its member '{member}'" in r.stderr, r.stderr
    assert "nothing was imported" in r.stderr
    assert r.stderr.count("escrow: error:") == 1
    assert _stored(agent) == []
    assert list((agent / "deposits" / "tmp").iterdir()) == []
    assert run_cli(["deposit", "imports", "--json"]).json() == {"imports": []}


def test_the_whole_archive_still_imports(exported: Path, agent: Path) -> None:
    r = run_cli(["deposit", "import", str(exported), "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["new"] for e in r.json()["entries"]] == [True]


def test_a_cut_archive_that_is_no_deposit_stays_an_input_error(agent: Path, tmp_path: Path) -> None:
    """Only a deposit (its first member a TOC.json of the deposit format) is a failed check
    when cut short; any other tar cut short is still "not a deposit" (exit 2)."""
    src = tmp_path / "TOC.json"
    src.write_text('{"format": "something-else/v1", "pad": "' + "x" * 3000 + '"}')
    whole = tmp_path / "other.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(src, arcname="TOC.json")
        tar.add(src, arcname="verifier-key.txt")
    with tarfile.open(whole) as tar:
        second = tar.getmembers()[1]
    cut = tmp_path / "other-cut.tar"
    cut.write_bytes(whole.read_bytes()[: second.offset_data + 700])  # within its data
    r = run_cli(["deposit", "import", str(cut)])
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr and "cut short" in r.stderr
    assert _stored(agent) == []
