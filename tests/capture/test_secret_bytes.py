"""A secret whose value is not UTF-8 (an environment variable or an argument holding
raw bytes, which Python keeps as lone surrogates) made ``escrow record`` fail with a
traceback after the command had run: nothing was recorded.  Its bytes are now scrubbed
from the log like any secret's (and a salted digest of one is taken over its bytes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.capture.conftest import show, write_tree
from tests.conftest import run_cli

SECRET = b"abcd\xffefgh-secret"


def _last_index() -> int:
    r = run_cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    data = r.json()
    entries = data["entries"] if isinstance(data, dict) else data
    return int(entries[-1]["index"])


def _log_bytes(index: int, capfdbinary: pytest.CaptureFixture[bytes]) -> bytes:
    from escrow.cli.main import main

    capfdbinary.readouterr()
    with pytest.raises(SystemExit):
        main(["logs", str(index)])
    return capfdbinary.readouterr().out


def test_a_secret_environment_value_that_is_not_utf8(
    tmp_path: Path,
    module_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"f": "x"}))
    monkeypatch.setenv("API_TOKEN", os.fsdecode(SECRET))
    r = run_cli(["record", "--", "sh", "-c", 'printf "token is %s\\n" "$API_TOKEN"'])
    assert r.exit_code == 0, r.stderr
    index = _last_index()
    assert SECRET not in _log_bytes(index, capfdbinary)
    assert "efgh-secret" not in json.dumps(show(index))


def test_a_secret_argument_that_is_not_utf8(
    tmp_path: Path,
    module_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"f": "x"}))
    word = "--password=" + os.fsdecode(SECRET)
    r = run_cli(["record", "--", "sh", "-c", 'echo "$1"', "sh", word])
    assert r.exit_code == 0, r.stderr
    index = _last_index()
    assert SECRET not in _log_bytes(index, capfdbinary)
    assert show(index)["predicate"]["command"]["argv"][-1] == "--password=[secret password]"


def test_the_digest_of_a_secret_that_is_not_utf8_is_over_its_bytes() -> None:
    import hashlib

    from escrow.capture.secrets import Redactor

    d = Redactor().digest("API_TOKEN", os.fsdecode(SECRET))
    assert d["sha256"] == hashlib.sha256(bytes.fromhex(d["salt"]) + SECRET).hexdigest()
