"""Checkpoints verify with a note verifier escrow did not write: Go's golang.org/x/mod/sumdb/note.

Debian's ``golang-go`` and ``golang-golang-x-mod-dev`` (installed by scripts/test.sh)
provide the toolchain and the module source; the verifier program is
``tests/assets/noteverify/main.go``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "assets" / "noteverify" / "main.go"
GOPATH = "/usr/share/gocode"


@pytest.fixture(scope="module")
def noteverify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not Path(GOPATH, "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail("Go and golang.org/x/mod are missing; scripts/test.sh installs them.")
    out = tmp_path_factory.mktemp("go") / "noteverify"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(out.parent / "cache"),
        "GOFLAGS": "",
    }
    subprocess.run([go, "build", "-o", str(out), str(SOURCE)], check=True, env=env)
    return out


def _checkpoint(cli: Any) -> dict[str, Any]:
    r = cli(["ledger", "checkpoint", "--json"])
    assert r.exit_code == 0, r.stderr
    doc: dict[str, Any] = r.json()
    return doc


def test_go_note_verifier_accepts_escrow_checkpoints(
    escrow_home: Path, cli: Any, noteverify: Path
) -> None:
    cp = _checkpoint(cli)
    key = cli(["ledger", "verifier-key"]).stdout.strip()
    assert key == cp["verifier_key"]
    r = subprocess.run(
        [str(noteverify), key], input=cp["note"].encode(), capture_output=True, check=False
    )
    assert r.returncode == 0, r.stderr.decode()
    origin, size, root = r.stdout.decode().splitlines()
    assert (origin, int(size)) == (cp["origin"], cp["size"])
    import base64

    assert base64.b64decode(root).hex() == cp["root"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda note: note.replace("\n1\n", "\n2\n", 1), id="size"),
        pytest.param(lambda note: note.replace("escrow.local", "escrow.evil", 1), id="origin"),
    ],
)
def test_go_note_verifier_rejects_a_changed_checkpoint(
    escrow_home: Path, cli: Any, noteverify: Path, tamper: Any
) -> None:
    cp = _checkpoint(cli)
    changed = tamper(cp["note"])
    assert changed != cp["note"]
    r = subprocess.run(
        [str(noteverify), cp["verifier_key"]],
        input=changed.encode(),
        capture_output=True,
        check=False,
    )
    assert r.returncode == 1, r.stdout.decode() + r.stderr.decode()


def test_go_note_verifier_accepts_a_pack_checkpoint_with_its_key_events_line(
    escrow_home: Path, noteverify: Path
) -> None:
    """The checkpoint a pack is made against carries a fourth line (``key-events``):
    Go's note verifier still opens it, and gives that line back as part of the text."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings()) as lg:
        cp = lg.key_events_checkpoint()
        key = lg.verifier_key()
    r = subprocess.run([str(noteverify), key], input=cp.note.encode(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 4 and lines[3].startswith("key-events 1 ")  # the build key's event
    changed = cp.note.replace("key-events 1 ", "key-events 0 ", 1)
    r = subprocess.run([str(noteverify), key], input=changed.encode(), capture_output=True)
    assert r.returncode == 1
