"""Writes that cannot finish — a full disk (a real tmpfs), a failure between two ledger
appends, a killed run's leftovers, two runs at once — leave no half file under a name
where a whole one is expected, nothing registered that no file holds, and one sentence
with the documented exit code.

The full-disk tests mount a small tmpfs (root only: CI runs as root)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

_PAGE = 4096


def _one_error(r: Any, code: int) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


@contextlib.contextmanager
def _small_disk(folder: Path, *, keep: Path | None = None) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted on ``folder`` (what ``keep`` holds copied onto it first),
    unmounted (and its files copied back to ``keep``) afterwards."""
    if os.geteuid() != 0:  # never a silent skip: the suite's set-up runs as root
        pytest.fail("mounting a tmpfs needs root; run the suite as root (scripts/test.sh)")
    saved = None
    if keep is not None:
        saved = folder.parent / f".{folder.name}.saved"
        shutil.copytree(keep, saved, symlinks=True)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        if saved is not None:
            shutil.copytree(saved, folder, symlinks=True, dirs_exist_ok=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        if saved is not None:
            shutil.rmtree(saved)


def _fill(disk: Path, *, leave_pages: int = 0) -> None:
    """Fill ``disk`` up, leaving ``leave_pages`` pages of 4 KiB free."""
    spare = disk / ".spare"
    spare.write_bytes(b"\0" * (leave_pages * _PAGE))
    with open(disk / ".fill", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * _PAGE)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    spare.unlink()


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir() if not p.name.startswith(".fill")}


def _verify_ok() -> None:
    r = run_cli(["ledger", "verify"])
    assert r.exit_code == 0, r.stderr


# -- escrow keys rotate ----------------------------------------------------------------
def test_rotate_on_a_full_keys_folder_registers_nothing_and_leaves_no_empty_public_key(
    escrow_home: Path,
) -> None:
    keys = escrow_home / "keys"
    with _small_disk(keys, keep=keys):
        before = _files(keys)
        _fill(keys, leave_pages=1)  # room for the new private key, not its public key

        r = run_cli(["keys", "rotate"])

        assert "No space left on device" in _one_error(r, 3)
        after = _files(keys)
        assert after == before  # no 0-byte build.pub.pem, no temporary file
        assert all(size > 0 for size in after.values())
    listed = run_cli(["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert [k["status"] for k in _key_list(listed.stdout)] == ["active"]  # nothing registered
    _verify_ok()


def _key_list(stdout: str) -> list[dict[str, Any]]:
    doc = json.loads(stdout)
    return list(doc["keys"] if isinstance(doc, dict) else doc)


def test_rotate_whose_retirement_fails_keeps_the_registered_new_key(
    escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk filled up between the two appends (the new key registered, the old one's
    retirement refused): the new key's file was removed, and the ledger kept an active key
    whose private key no longer existed anywhere."""
    from escrow.errors import DatabaseUnavailable
    from escrow.ledger.store import Ledger
    from escrow.signing.keys import SigningKey

    keys = escrow_home / "keys"
    old_id = SigningKey.load(keys / "build.key.pem").keyid

    def full(self: Any, *a: Any, **kw: Any) -> Any:
        raise DatabaseUnavailable("The ledger database is unavailable: database or disk is full.")

    with monkeypatch.context() as m:
        m.setattr(Ledger, "retire_key", full)

        r = run_cli(["keys", "rotate"])

    line = _one_error(r, 3)
    assert "could not be retired" in line and f"escrow keys retire {old_id}" in line
    new = SigningKey.load(keys / "build.key.pem")
    assert new.keyid != old_id
    assert (keys / "build.pub.pem").read_text() == new.public.pem()
    assert SigningKey.load(keys / f"build-{old_id[:8]}.key.pem").keyid == old_id
    assert not [p.name for p in keys.iterdir() if p.name.startswith(".")]
    listed = {
        k["keyid"]: k["status"] for k in _key_list(run_cli(["keys", "list", "--json"]).stdout)
    }
    assert listed == {old_id: "active", new.keyid: "active"}

    done = run_cli(["keys", "retire", old_id])  # what the error says to do

    assert done.exit_code == 0, done.stderr
    _verify_ok()


def test_keys_generate_on_a_full_keys_folder_leaves_no_half_key(escrow_home: Path) -> None:
    keys = escrow_home / "keys"
    with _small_disk(keys, keep=keys):
        before = _files(keys)
        _fill(keys, leave_pages=1)

        r = run_cli(["keys", "generate", "--name", "extra"])

        assert "No space left on device" in _one_error(r, 3)
        assert _files(keys) == before
    assert len(_key_list(run_cli(["keys", "list", "--json"]).stdout)) == 1
    _verify_ok()


# -- a key saved on a full disk (escrow init) --------------------------------------------
def test_a_key_saved_on_a_full_disk_leaves_no_empty_key_file(tmp_path: Path) -> None:
    from escrow.signing.keys import SigningKey

    with _small_disk(tmp_path / "disk") as disk:
        _fill(disk)

        with pytest.raises(OSError) as e:
            SigningKey.generate().save(disk / "keys" / "build.key.pem")

        assert e.value.errno == errno.ENOSPC
        assert not (disk / "keys" / "build.key.pem").exists()
        assert not list((disk / "keys").iterdir())


# -- escrow pack -------------------------------------------------------------------------
@pytest.fixture
def packable(escrow_home: Path) -> Path:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey
    from tests.pack.synth import manifest_variant

    settings = load_settings()
    ledger = Ledger.open(settings)
    try:
        key = SigningKey.load(settings.key_path)
        ledger.append(sign_statement(manifest_variant(0), key))
    finally:
        ledger.close()
    return escrow_home


def _size() -> int:
    r = run_cli(["ledger", "verify", "--json"])
    assert r.exit_code == 0, r.stderr
    return int(json.loads(r.stdout)["size"])


def test_pack_to_a_full_disk_leaves_no_partial_file_and_names_the_output(
    packable: Path, tmp_path: Path
) -> None:
    size = _size()
    with _small_disk(tmp_path / "out") as out:
        _fill(out)

        r = run_cli(["pack", "--project", "example", "-o", str(out / "pack.pdf")])

        line = _one_error(r, 3)
        assert f"Cannot write the pack to {out / 'pack.pdf'}: No space left on device" in line
        assert _files(out) == {}  # no .pack.pdf.*.tmp left beside it
    assert _size() == size  # nothing recorded


def test_the_pack_signing_key_made_on_a_full_disk_is_not_left_empty(packable: Path) -> None:
    keys = packable / "keys"
    with _small_disk(keys, keep=keys):
        before = _files(keys)
        _fill(keys)

        r = run_cli(["pack", "--project", "example", "-o", str(packable / "p.pdf")])

        line = _one_error(r, 3)
        assert f"Cannot create the pack signing key {keys / 'pack.key.pem'}" in line
        assert _files(keys) == before  # no 0-byte pack.key.pem that every later pack fails on
    again = run_cli(["pack", "--project", "example", "-o", str(packable / "p.pdf")])
    assert again.exit_code == 0, again.stderr


def test_a_pack_removes_the_partial_packs_killed_runs_left_but_not_one_being_written(
    packable: Path, tmp_path: Path
) -> None:
    out = tmp_path / "packs"
    out.mkdir()
    killed = out / ".pack.pdf.0badc0de.escrow-partial"
    killed.write_bytes(b"%PDF-1.7 half")
    older = out / ".pack.pdf.4242.tmp"  # what earlier versions left
    older.write_bytes(b"%PDF-1.7 half")
    writing = out / ".pack.pdf.1234abcd.escrow-partial"
    writing.write_bytes(b"%PDF-1.7 being written")
    other = out / ".other.pdf.0badc0de.escrow-partial"  # another output's
    other.write_bytes(b"x")
    with open(writing, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a pack in progress holds its file locked

        r = run_cli(["pack", "--project", "example", "-o", str(out / "pack.pdf")])

    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(["pack.pdf", writing.name, other.name])


def test_two_first_packs_at_once_keep_one_pack_certificate(
    packable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The certificate made on first use: another pack made one meanwhile (both started
    before it existed).  Each replaced the other's, so a pack could be signed with a
    certificate that ``pack.cert.pem`` no longer held."""
    from cryptography.hazmat.primitives import serialization

    from escrow.pack import sign

    cert_path = packable / "keys" / "pack.cert.pem"
    made = sign.self_signed_certificate
    theirs: list[bytes] = []

    def meanwhile(key: Any, name: str) -> Any:
        other = made(key, "the other pack")
        theirs.append(other.public_bytes(serialization.Encoding.PEM))
        cert_path.write_bytes(theirs[0])  # the other pack got there first
        return made(key, name)

    monkeypatch.setattr(sign, "self_signed_certificate", meanwhile)

    r = run_cli(["pack", "--project", "example", "-o", str(tmp_path / "p.pdf")])

    assert r.exit_code == 0, r.stderr
    assert theirs and cert_path.read_bytes() == theirs[0]
    v = run_cli(["pack", "verify", str(tmp_path / "p.pdf"), "--trust", str(cert_path)])
    assert v.exit_code == 0, v.stderr
