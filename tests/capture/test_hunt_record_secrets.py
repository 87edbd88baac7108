"""Secrets on the command line of ``escrow record``: the password of a ``login``
subcommand given as ``-p`` and the credentials of a URL are kept out of the recorded
command line and out of the log, even when the command prints them in another form."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.capture.record import _argv_record, _learn_argv
from escrow.capture.secrets import Redactor
from tests.capture.conftest import show, write_tree


def _record(argv: list[str]) -> tuple[list[str], Redactor]:
    redactor = Redactor()
    _learn_argv(argv, redactor)
    return _argv_record(argv, redactor), redactor


@pytest.mark.parametrize(
    ("words", "recorded"),
    [
        (["-p", "hunter2-pw"], ["-p", "[secret password]"]),
        (["-phunter2-pw"], ["-p[secret password]"]),
        (["-p=hunter2-pw"], ["-p=[secret password]"]),
    ],
)
def test_the_short_password_option_of_a_login_is_hidden(
    words: list[str], recorded: list[str]
) -> None:
    argv = ["docker", "login", "-u", "ci", *words, "registry.example"]
    out, redactor = _record(argv)
    assert out == ["docker", "login", "-u", "ci", *recorded, "registry.example"]
    assert redactor.text("password hunter2-pw") == "password [secret password]"


@pytest.mark.parametrize(
    "argv",
    [
        ["mkdir", "-p", "out/dir"],
        ["docker", "run", "-p", "8080:80", "app"],
        ["ssh", "-p", "2222", "host"],
    ],
)
def test_a_p_option_that_is_not_a_logins_password_is_kept(argv: list[str]) -> None:
    out, redactor = _record(argv)
    assert out == argv
    assert redactor.secret_count == 0


def test_url_credentials_printed_without_their_url_are_hidden() -> None:
    url = "https://deploy%40corp:Url-S3cret%21pw@git.example/repo.git"
    out, redactor = _record(["git", "clone", url])
    assert out == ["git", "clone", "https://git.example/repo.git"]
    log = redactor.data(
        b"cloning " + url.encode() + b"\nas deploy%40corp:Url-S3cret%21pw\npassword Url-S3cret!pw\n"
    )
    assert b"S3cret" not in log


def test_record_keeps_login_and_url_secrets_out_of_everything(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI: the command prints the password of ``login -p`` and the password of
    a URL without the URL; neither the manifest, the log, the output, nor any file of the
    ledger or the blob store keeps them."""
    ctx = write_tree(tmp_path / "hunt-secrets-ctx", {"build.sh": "true\n"})
    monkeypatch.chdir(ctx)
    login_pw, url_pw = "LoginPw-4471-oscar", "UrlPw-9932-kilo"
    script = (
        "import sys, urllib.parse as u; "
        "print('login', sys.argv[4]); "
        "print('url password', u.urlsplit(sys.argv[5]).password); "
        "print('from', sys.argv[5])"
    )
    argv = [
        sys.executable, "-c", script, "tool", "login", "-p", login_pw,
        f"https://ci:{url_pw}@git.example/r.git",
    ]  # fmt: skip
    # sys.argv of ``python -c``: ["-c", "tool", "login", "-p", PW, URL]
    r = cli(["record", "--json", "--", *argv])
    assert r.exit_code == 0, r.stderr
    for value in (login_pw, url_pw):
        assert value not in r.stdout and value not in r.stderr
    st = show(r.json()["index"])
    cmd = st["predicate"]["command"]
    assert cmd["argv"][-3:] == ["-p", "[secret password]", "https://git.example/r.git"]
    log = BlobStore(escrow_home / "blobs").get(cmd["log"]["sha256"])
    # the URL itself is recorded stripped, as on the command line, not with a placeholder
    assert log == (
        b"login [secret password]\nurl password [secret URL_CREDENTIALS]\n"
        b"from https://git.example/r.git\n"
    )
    manifest = json.dumps(st)
    files = [p for p in escrow_home.rglob("*") if p.is_file()]
    for value in (login_pw, url_pw):
        assert value not in manifest
        for path in files:
            assert value.encode() not in path.read_bytes(), path
