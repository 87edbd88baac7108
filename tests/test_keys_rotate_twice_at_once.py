"""Two `escrow keys rotate` of one key at once run one after the other.

Both used to read the same old key, register a new one each, retire the old one, and
archive "the old key" by linking whatever was at its path by then — the other rotation's
new key: two build keys stayed active, and the archive named after the old key held
another.  The test makes the second rotation reach its reading of the key while the
first is inside the ledger (without the lock it does; with it, it waits).
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.keys import SigningKey


def test_two_rotations_at_once_leave_one_active_key(
    cli: Any, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.cli import keys_cmd
    from escrow.cli.main import main
    from escrow.ledger.store import Ledger

    path = escrow_home / "keys" / "build.key.pem"
    first = SigningKey.load(path).keyid
    second_read = threading.Event()
    real_load, real_register = keys_cmd.load_key, Ledger.register_key

    def load_key(*args: Any, **kwargs: Any) -> Any:
        key = real_load(*args, **kwargs)
        if threading.current_thread().name == "second":
            second_read.set()
        return key

    def register_key(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            # the second rotation reads the key now, unless it waits for this one
            second_read.wait(timeout=3)
        return real_register(self, *args, **kwargs)

    monkeypatch.setattr(keys_cmd, "load_key", load_key)
    monkeypatch.setattr(Ledger, "register_key", register_key)
    codes: dict[str, object] = {}

    def rotate() -> None:
        try:
            main(["keys", "rotate"])
        except SystemExit as e:
            codes[threading.current_thread().name] = e.code

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        one = threading.Thread(target=rotate, name="first")
        one.start()
        two = threading.Thread(target=rotate, name="second")
        two.start()
        one.join(30)
        two.join(30)

    assert codes == {"first": 0, "second": 0}, err.getvalue()
    r = cli(["keys", "list", "--json"])
    assert r.exit_code == 0, r.stderr
    build_keys = [k for k in r.json()["keys"] if k["name"] == "build"]
    active = [k["keyid"] for k in build_keys if k["status"] == "active"]
    assert active == [SigningKey.load(path).keyid], build_keys
    assert len(build_keys) == 3  # the first key and one new key per rotation
    # each archive holds the key it is named after
    for archived in (escrow_home / "keys").glob("build-*.key.pem"):
        held = SigningKey.load(archived).keyid
        assert archived.name.removeprefix("build-").removesuffix(".key.pem") in held
    assert first not in active
