"""A mistyped ESCROW_SERVER or ESCROW_TOKEN is one sentence (exit 2), never a traceback, and
never shows a password or the token: a port that is not a number, a broken IPv6 address, a
``user:password@`` (which httpx would send as Basic credentials in place of the bearer
token), a query; a token with a line break (read from a file) or another character no
header may carry was refused by h11 as "Cannot reach the escrow server" quoting the token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_helpers import LiveServer

SECRET = "s3cretpw"


@pytest.fixture
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "auditor-laptop"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_SERVER_KEY", "ESCROW_DB_URL", "ESCROW_SERVER", "ESCROW_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:abc", "its port is not a number from 0 to 65535"),
        ("http://127.0.0.1:99999", "its port is not a number from 0 to 65535"),
        (f"http://ci:{SECRET}@127.0.0.1:8o80", "its port is not a number from 0 to 65535"),
        ("http://[::1", "invalid IPv6 URL"),
        (f"http://ci:{SECRET}@127.0.0.1:8080", "names a user or password"),
        ("http://127.0.0.1:8080/?x=1", "has a query (?x=1)"),
    ],
)
@pytest.mark.parametrize("command", [["log"], ["tokens", "list"], ["init"]])
def test_a_bad_server_url_is_one_sentence(
    client_home: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    words: str,
    command: list[str],
) -> None:
    monkeypatch.setenv("ESCROW_SERVER", url)
    monkeypatch.setenv("ESCROW_TOKEN", "escrow_abc")
    r = cli(command)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert words in r.stderr
    assert "Traceback" not in r.stderr
    assert SECRET not in r.stderr + r.stdout
    assert r.stderr.startswith("escrow: error: The server URL")


@pytest.mark.parametrize("bad", ["\nx", "\r\nmore", " two", "é"])
def test_a_token_no_header_can_carry_is_refused_without_showing_it(
    live_server: LiveServer,
    client_home: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    bad: str,
) -> None:
    token = live_server.tokens["auditor"]
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    monkeypatch.setenv("ESCROW_TOKEN", token + bad)
    r = cli(["log"])
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "ESCROW_TOKEN (or --token) holds" in r.stderr
    assert token not in r.stderr + r.stdout
    assert "Cannot reach" not in r.stderr


def test_spaces_around_the_url_and_the_token_are_dropped(
    live_server: LiveServer, client_home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the way a value read from a file (or a Windows .env) arrives
    monkeypatch.setenv("ESCROW_SERVER", f" {live_server.url}/\n")
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"] + "\r\n")
    r = cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"]
