"""`escrow deposit export/import/check` misused: '-' for standard input or output, --origin
without --imported, an envelope edited in the archive."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.deposit.conftest import Builds


def _exported(builds: Builds, out: Path) -> tuple[int, Path]:
    ctx = builds.context({"app.txt": "hunt\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx, project="hunt")
    r = run_cli(["deposit", str(index), "--context", str(ctx)])
    assert r.exit_code == 0, r.stderr
    r = run_cli(["deposit", "export", str(index), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    return index, out


def test_export_to_dash_is_refused_and_writes_no_file_named_dash(
    builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: `-o -` (standard output, as tar -f - writes) wrote a file named '-'."""
    index, _ = _exported(builds, tmp_path / "first.tar")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    r = run_cli(["deposit", "export", str(index), "-o", "-"])
    assert r.exit_code == 2, r.stderr
    assert "does not write the archive to standard output ('-')" in r.stderr, r.stderr
    assert list(work.iterdir()) == []


def test_import_of_dash_is_refused(escrow_home: Path) -> None:
    r = run_cli(["deposit", "import", "-"])
    assert r.exit_code == 2, r.stderr
    assert "does not read the archive from standard input ('-')" in r.stderr, r.stderr
    assert not (escrow_home / "deposits" / "refs").exists()


def test_check_with_origin_without_imported_is_refused(escrow_home: Path) -> None:
    """Regression: --origin without --imported was ignored; the local entry was checked."""
    r = run_cli(["deposit", "check", "0", "--origin", "escrow.local/ledger"])
    assert r.exit_code == 2, r.stderr
    assert "--origin names the ledger of an imported entry and needs --imported" in r.stderr


def test_an_edited_envelope_says_altered_and_nothing_imported(
    builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: an envelope edited in the archive was refused with a bare 'does not have its
    listed leaf hash.', unlike every other altered member (what happened, what to do)."""
    _, tar = _exported(builds, tmp_path / "deposit.tar")
    edited = tmp_path / "edited.tar"
    with tarfile.open(tar) as tin, tarfile.open(edited, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            if m.name.startswith("entries/") and m.name != "entries/0.envelope.json":
                doc = json.loads(data)
                doc["payloadType"] = doc["payloadType"] + " "
                data = json.dumps(doc).encode()
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
    agent = tmp_path / "agent"
    monkeypatch.setenv("ESCROW_HOME", str(agent))
    assert run_cli(["init"]).exit_code == 0
    r = run_cli(["deposit", "import", str(edited)])
    assert r.exit_code == 1, r.stderr
    assert "does not have its listed leaf hash" in r.stderr, r.stderr
    assert "the archive was altered or corrupted; nothing was imported" in r.stderr, r.stderr
    store = agent / "deposits"
    assert not [p for p in (store / "refs").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("ledger.db", "is the ledger database"),
        ("keys/log.key.pem", "is the log signing key"),
        ("deposits/x.tar", "inside the deposit store"),
        ("saved.txt", "is the saved checkpoint --since-checkpoint reads"),
    ],
)
def test_export_over_escrows_own_files_is_refused(
    builds: Builds, tmp_path: Path, escrow_home: Path, target: str, words: str
) -> None:
    """Regression: `-o` naming the ledger database, a key, a file of the deposit store or the
    agent's saved checkpoint (a slip of tab completion) replaced it with the tar: the ledger
    was then 'malformed', the key or the checkpoint gone."""
    index, _ = _exported(builds, tmp_path / "first.tar")
    saved = escrow_home / "saved.txt"
    r = run_cli(["ledger", "checkpoint"])
    assert r.exit_code == 0, r.stderr
    saved.write_text(r.stdout)
    output = escrow_home / target
    before = output.read_bytes() if output.exists() else None
    r = run_cli(
        ["deposit", "export", str(index), "-o", str(output), "--since-checkpoint", str(saved)]
    )
    assert r.exit_code == 2, r.stderr
    assert words in r.stderr and "nothing was written" in r.stderr, r.stderr
    assert (output.read_bytes() if output.exists() else None) == before
    assert run_cli(["verify", str(index)]).exit_code == 0
