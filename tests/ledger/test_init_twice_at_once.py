"""Two ``escrow init`` of one fresh home at once (CI runners starting together).

Each used to check that the log key was missing, make one, and on finding the other's
file in its place fail — removing, as "what this run created", every key missing at
its start: the other run's too, which then failed as well, leaving no ledger.  Now
the second waits for the first and finds what it made.

The interleaving is forced, not hoped for: the first run to reach the saving of the
log key waits there until the other run has reached it too, or is waiting for the
first one to finish; only then are the keys written, the first run's first.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from escrow.cli.app import App
from escrow.cli.init_cmd import _init_local
from escrow.signing.keys import SigningKey


def _waiting_for(path: Path) -> bool:
    """Whether a process (or thread) waits for a ``flock`` of ``path`` (``/proc/locks``)."""
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks", encoding="ascii") as f:
        for line in f:
            words = line.split()
            if "->" in words and words[-3].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a safety limit only, so that a broken run cannot hang)."""
    deadline = time.monotonic() + 120
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "runner-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_two_inits_at_once_both_succeed_with_one_set_of_keys(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    real_save = SigningKey.save
    arrived: list[str] = []
    lock = threading.Lock()
    first_saved = threading.Event()

    def save(self: SigningKey, path: Path, passphrase: str | None = None) -> None:
        if path.name != "log.key.pem":
            return real_save(self, path, passphrase)
        with lock:
            arrived.append(threading.current_thread().name)
            first = len(arrived) == 1
        if first:
            _until(
                lambda: len(arrived) == 2 or _waiting_for(fresh_home / ".init.lock"),
                "the other init reached the log key, or waited for this one",
            )
            try:
                real_save(self, path, passphrase)
            finally:
                first_saved.set()
        else:
            first_saved.wait()
            real_save(self, path, passphrase)

    monkeypatch.setattr(SigningKey, "save", save)
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            results[name] = _init_local(App(), "ed25519")
        except BaseException as e:  # noqa: BLE001 - reported below
            results[name] = e

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("ci-1", "ci-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    failed = {n: r for n, r in results.items() if isinstance(r, BaseException)}
    assert not failed, failed
    one, two = results["ci-1"], results["ci-2"]
    assert one["log_verifier_key"] == two["log_verifier_key"]
    assert one["build_key"] == two["build_key"]
    assert sorted(one["created"] + two["created"]) == sorted(
        [str(fresh_home / "keys" / "log.key.pem"), str(fresh_home / "keys" / "build.key.pem")]
    )
    assert not (fresh_home / ".init.lock").exists()

    monkeypatch.setattr(SigningKey, "save", real_save)
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["size"] == 1  # the build key registered once
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    assert "Already initialised" in r.stderr


def test_a_failed_init_leaves_no_home_and_no_lock(
    fresh_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """The lock file is in the home; a failed run removes it with the home it made."""
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("not a key\n")
    monkeypatch.setenv("ESCROW_KEY", str(not_a_key))
    r = cli(["init"])
    assert r.exit_code == 2, r.stderr
    assert not fresh_home.exists()
    monkeypatch.delenv("ESCROW_KEY")
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    assert not (fresh_home / ".init.lock").exists()
