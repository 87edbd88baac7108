"""Setting a machine up: `escrow init` (locally and against a server) and `escrow keys`.

The server tests run a real Uvicorn server on a loopback port over the ledger of
the ``escrow_home`` fixture, as ``tests/server/conftest.py`` does; the machine
being set up has its own, empty ESCROW_HOME.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from escrow.config import load_settings
from escrow.errors import KeyLocked
from escrow.ledger.store import Ledger
from escrow.signing.keys import SigningKey
from tests.server.server_helpers import serving

ASSETS = Path(__file__).parent / "assets"


@dataclass
class Server:
    url: str
    settings: Any
    tokens: dict[str, str]

    def ledger(self) -> Ledger:
        return Ledger.open(self.settings)


@pytest.fixture
def server(escrow_home: Path) -> Iterator[Server]:
    """``escrow_home``'s ledger served on 127.0.0.1, with a token of each role."""
    from escrow.ledger.store import make_engine
    from escrow.server.app import ServerConfig, create_app
    from escrow.server.auth import Role, TokenStore

    settings = load_settings()
    engine = make_engine(settings.db_url)
    TokenStore.create_tables(engine)
    store = TokenStore(engine)
    tokens = {role.value: store.create(f"test-{role.value}", role)[0] for role in Role}
    engine.dispose()
    app = create_app(ServerConfig(settings, pack_workers=0))
    with serving(app) as url:
        yield Server(url, settings, tokens)


@pytest.fixture
def pipeline_home(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new machine's ESCROW_HOME (not yet created), pointed at ``server`` with a
    pipeline token."""
    home = tmp_path / "pipeline-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", server.url)
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["pipeline"])
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    return home


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ESCROW_HOME that does not exist yet, no server, no passphrase."""
    home = tmp_path / "fresh-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in (
        "ESCROW_DB_URL",
        "ESCROW_KEY",
        "ESCROW_KEY_PASSPHRASE",
        "ESCROW_SERVER",
        "ESCROW_TOKEN",
        "ESCROW_SERVER_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _manifest() -> dict[str, Any]:
    st: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    st["predicate"]["build"]["id"] = str(uuid.uuid4())
    return st


def _keys_add_command(text: str) -> list[str]:
    """The `escrow keys add …` command a message tells the user to run, as argv."""
    found = re.search(r"`escrow (keys add [^`]+)`", text)
    assert found, text
    return shlex.split(found.group(1))


# -- 1. `escrow init` against a server -------------------------------------------------
def test_init_against_a_server_with_a_pipeline_token_says_how_to_register(
    cli: Any, server: Server, pipeline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server.ledger() as ledger:
        server_key = ledger.verifier_key()
        size = ledger.size()

    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    # the build key only: no local ledger, no log key
    keys = pipeline_home / "keys"
    assert sorted(p.name for p in keys.iterdir()) == ["build.key.pem", "build.pub.pem"]
    assert not (pipeline_home / "ledger.db").exists()
    # the server's log key, pinned as other commands pin it
    assert f"log key:     {server_key}" in r.stdout.splitlines()
    assert server_key in (pipeline_home / "servers").iterdir().__next__().read_text()
    # not registered (a pipeline token may not), and the message says what to run
    build = SigningKey.load(keys / "build.key.pem")
    with server.ledger() as ledger:
        assert ledger.key_status(build.keyid) is None
        assert ledger.size() == size
    argv = _keys_add_command(r.stderr)
    assert argv[:3] == ["keys", "add", str(keys / "build.pub.pem")]
    assert "admin token" in r.stderr

    # run it where an admin token is at hand: the key is then registered
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["admin"])
    added = cli(argv)
    assert added.exit_code == 0, added.stderr
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["pipeline"])
    again = cli(["init", "--json"])
    assert again.exit_code == 0, again.stderr
    out = again.json()
    assert out["registered"] is True and out["created"] == []
    assert out["build_key"] == build.keyid and out["log_verifier_key"] == server_key
    assert "escrow keys add" not in again.stderr
    with server.ledger() as ledger:
        assert ledger.key_status(build.keyid) == (argv[argv.index("--name") + 1], "active")


def test_init_against_a_server_with_an_admin_token_registers_the_build_key(
    cli: Any, server: Server, pipeline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["admin"])
    r = cli(["init", "--json"])
    assert r.exit_code == 0, r.stderr
    out = r.json()
    build = SigningKey.load(pipeline_home / "keys" / "build.key.pem")
    assert out["build_key"] == build.keyid and out["registered"] is True
    assert out["server"] == server.url and out["public_key_path"] == str(
        pipeline_home / "keys" / "build.pub.pem"
    )
    with server.ledger() as ledger:
        found = ledger.key_status(build.keyid)
        assert found is not None and found[1] == "active"
        assert out["log_verifier_key"] == ledger.verifier_key()
    assert not (pipeline_home / "keys" / "log.key.pem").exists()
    assert not (pipeline_home / "ledger.db").exists()

    # a pipeline token can now sign with it: the key is accepted
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["pipeline"])
    from escrow.capture.publish import Publisher

    with Publisher.open(load_settings()) as publisher:
        entry, _ = publisher.publish(_manifest())
    with server.ledger() as ledger:
        assert ledger.get(entry.index).leaf_hash == entry.leaf_hash


@pytest.mark.parametrize("when", ["unreachable", "bad-token"])
def test_init_against_a_server_that_refuses_writes_nothing(
    cli: Any, server: Server, pipeline_home: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    if when == "unreachable":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            monkeypatch.setenv("ESCROW_SERVER", f"http://127.0.0.1:{s.getsockname()[1]}")
    else:
        monkeypatch.setenv("ESCROW_TOKEN", "not-a-token")
    r = cli(["init"])
    assert r.exit_code == 3, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
    assert not pipeline_home.exists()


def test_unregistered_key_hint_names_keys_add_with_a_server_and_init_without(
    server: Server, pipeline_home: Path, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.capture.publish import Publisher

    pub = pipeline_home / "keys" / "build.pub.pem"
    SigningKey.generate().save(pipeline_home / "keys" / "build.key.pem")
    with Publisher.open(load_settings()) as publisher, pytest.raises(KeyLocked) as err:
        publisher.publish(_manifest())
    text = err.value.diagnostics()
    assert _keys_add_command(text)[:3] == ["keys", "add", str(pub)]
    assert "escrow init" not in text

    # locally, `escrow init` registers the configured key
    monkeypatch.setenv("ESCROW_HOME", str(escrow_home))
    monkeypatch.delenv("ESCROW_SERVER")
    monkeypatch.setenv("ESCROW_KEY", str(pipeline_home / "keys" / "build.key.pem"))
    with Publisher.open(load_settings()) as publisher, pytest.raises(KeyLocked) as err:
        publisher.publish(_manifest())
    assert "`escrow init`" in err.value.diagnostics()


# -- 2. a failed `escrow init` leaves nothing behind ----------------------------------
@pytest.mark.parametrize("home_exists", [False, True], ids=["new-home", "existing-home"])
def test_init_with_an_unreachable_database_writes_nothing(
    cli: Any, fresh_home: Path, monkeypatch: pytest.MonkeyPatch, home_exists: bool
) -> None:
    if home_exists:
        fresh_home.mkdir()
        (fresh_home / "config.json").write_text("{}")
    before = _files(fresh_home) if home_exists else None
    monkeypatch.setenv("ESCROW_DB_URL", "postgresql+psycopg://u@127.0.0.1:1/db")
    r = cli(["init"])
    assert r.exit_code == 3, r.stderr
    assert "unavailable" in r.stderr and len(r.stderr.splitlines()) == 1
    if home_exists:
        assert _files(fresh_home) == before
        assert sorted(p.name for p in fresh_home.iterdir()) == ["config.json"]
    else:
        assert not fresh_home.exists()


def test_init_locally_still_creates_ledger_and_both_keys(cli: Any, fresh_home: Path) -> None:
    r = cli(["init", "--json"])
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["log_verifier_key"].startswith("escrow.local")
    assert out["registered"] is True and out["server"] is None
    names = {p.name for p in (fresh_home / "keys").iterdir()}
    assert names == {"build.key.pem", "build.pub.pem", "log.key.pem", "log.pub.pem"}
    assert (fresh_home / "ledger.db").exists()


# -- 3. passphrases at the prompt ---------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["keys", "generate", "--name", "pp"], ["keys", "rotate"]],
    ids=["generate", "rotate"],
)
def test_an_empty_passphrase_at_the_prompt_is_refused(
    cli: Any, escrow_home: Path, args: list[str]
) -> None:
    before = _files(escrow_home / "keys")
    with Ledger.open(load_settings()) as ledger:
        size = ledger.size()
    r = cli([*args, "--passphrase-prompt"], input="\n")
    assert r.exit_code == 2, r.stderr
    assert "empty" in r.stderr and len(r.stderr.splitlines()) == 1
    assert _files(escrow_home / "keys") == before
    with Ledger.open(load_settings()) as ledger:
        assert ledger.size() == size


def test_a_wrong_passphrase_names_where_it_came_from(
    cli: Any, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cli(["keys", "generate", "--name", "enc", "--passphrase-prompt"], input="x\nx\n")
    assert made.exit_code == 0, made.stderr
    r = cli(["keys", "rotate", "--name", "enc", "--passphrase-prompt"], input="y\n")
    assert r.exit_code == 3, r.stderr
    assert "passphrase" in r.stderr and "ESCROW_KEY_PASSPHRASE" not in r.stderr
    assert len(r.stderr.splitlines()) == 1

    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "y")
    r = cli(["keys", "rotate", "--name", "enc"])
    assert r.exit_code == 3 and "ESCROW_KEY_PASSPHRASE" in r.stderr


# -- 4. the footnote of `escrow keys list` ----------------------------------------------
def test_keys_list_footnote_only_when_a_row_is_marked(
    cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked = cli(["keys", "list"])
    assert marked.exit_code == 0, marked.stderr
    assert any(line.endswith(" *") for line in marked.stdout.splitlines())
    assert "* the configured build key" in marked.stderr

    other = tmp_path / "other" / "build.key.pem"
    SigningKey.generate().save(other)
    monkeypatch.setenv("ESCROW_KEY", str(other))  # a build key not registered
    r = cli(["keys", "list"])
    assert r.exit_code == 0, r.stderr
    assert not any(line.endswith(" *") for line in r.stdout.splitlines())
    assert "configured build key" not in r.stderr


def test_keys_list_against_a_server_without_the_build_key_has_no_footnote(
    cli: Any, server: Server, pipeline_home: Path
) -> None:
    assert cli(["init"]).exit_code == 0
    r = cli(["keys", "list"])
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2  # the header and the server's own build key
    assert "configured build key" not in r.stderr


# -- 5. `escrow keys rotate --name` of a key that cannot be rotated -------------------------
def test_rotate_of_a_name_without_a_key_is_a_usage_error(cli: Any, escrow_home: Path) -> None:
    before = _files(escrow_home / "keys")
    r = cli(["keys", "rotate", "--name", "nonexist"])
    assert r.exit_code == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert "No key named 'nonexist'" in r.stderr and str(escrow_home / "keys") in r.stderr
    assert "escrow init" not in r.stderr
    assert _files(escrow_home / "keys") == before


def test_the_log_key_is_not_rotated_by_keys_rotate(cli: Any, escrow_home: Path) -> None:
    before = _files(escrow_home / "keys")
    with Ledger.open(load_settings()) as ledger:
        size = ledger.size()
    r = cli(["keys", "rotate", "--name", "log"])
    assert r.exit_code == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert "log key" in r.stderr and "cannot be rotated" in r.stderr
    assert "No registered key" not in r.stderr
    assert _files(escrow_home / "keys") == before
    with Ledger.open(load_settings()) as ledger:
        assert ledger.size() == size

    # and `keys generate --name log` does not suggest rotating it
    g = cli(["keys", "generate", "--name", "log"])
    assert g.exit_code == 2 and "keys rotate" not in g.stderr


def test_rotate_of_a_local_key_never_registered_says_so(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    SigningKey.generate().save(escrow_home / "keys" / "loose.key.pem")
    before = _files(escrow_home / "keys")
    r = cli(["keys", "rotate", "--name", "loose"])
    assert r.exit_code == 2, r.stderr
    assert "not registered" in r.stderr and "escrow keys add" in r.stderr
    assert _files(escrow_home / "keys") == before


def test_init_against_a_server_that_revoked_the_build_key_says_so(
    cli: Any, server: Server, pipeline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["admin"])
    made = cli(["init", "--json"])
    assert made.exit_code == 0, made.stderr
    assert "Registered the build key" in made.stderr
    keyid = made.json()["build_key"]
    assert cli(["keys", "revoke", keyid, "--reason", "lost"]).exit_code == 0
    monkeypatch.setenv("ESCROW_TOKEN", server.tokens["pipeline"])
    before = _files(pipeline_home)
    r = cli(["init"])
    assert r.exit_code == 3, r.stderr
    assert "revoked" in r.stderr and len(r.stderr.splitlines()) == 1
    assert "escrow keys rotate" in r.stderr
    assert _files(pipeline_home) == before
