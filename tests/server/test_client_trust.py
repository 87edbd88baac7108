"""Which log key a client trusts, and that every command through a server checks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import LiveServer

from escrow.ledger.checkpoint import verifier_key_line
from escrow.server.client import RemoteLedger
from escrow.signing.keys import SigningKey

# Commands that only read: each must refuse a server that signs with another log key.
READS = [
    ["log"],
    ["log", "--json"],
    ["log", "--project", "nothing-matches"],
    ["show", "0"],
    ["verify", "0"],
    ["ledger", "checkpoint"],
    ["ledger", "proof", "0"],
    ["ledger", "verifier-key"],
    ["keys", "list"],
]


@pytest.fixture
def client_env(live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A separate, empty ESCROW_HOME pointed at the live server (an auditor token)."""
    home = tmp_path / "client-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_SERVER", live_server.url)
    monkeypatch.setenv("ESCROW_TOKEN", live_server.tokens["auditor"])
    monkeypatch.delenv("ESCROW_SERVER_KEY", raising=False)
    return home


def _other_key() -> str:
    return verifier_key_line("escrow.local/ledger", SigningKey.generate().public)


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_every_read_refuses_a_server_signing_with_another_key_than_escrow_server_key(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    other = _other_key()
    monkeypatch.setenv("ESCROW_SERVER_KEY", other)
    r = cli(args)
    assert r.exit_code == 1, r.stdout + r.stderr
    assert r.stdout == ""  # nothing the server said is shown
    assert "signs with the log key" in r.stderr
    assert other in r.stderr
    # the advice is about ESCROW_SERVER_KEY: there is no pin file to remove
    assert "ESCROW_SERVER_KEY" in r.stderr
    assert str(client_env / "servers") not in r.stderr
    assert not any((client_env / "servers").glob("*.json"))


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_every_read_refuses_a_server_signing_with_another_key_than_the_pinned_one(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    args: list[str],
) -> None:
    assert cli(["ledger", "checkpoint"]).exit_code == 0  # pins the server's log key
    state = next((client_env / "servers").glob("*.json"))
    pinned = json.loads(state.read_text())
    pinned["verifier_key"] = _other_key()
    pinned.pop("checkpoint", None)
    state.write_text(json.dumps(pinned))
    r = cli(args)
    assert r.exit_code == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert "signs with the log key" in r.stderr
    assert str(state) in r.stderr  # the pin is what disagrees: say which file it is


def test_the_right_escrow_server_key_is_accepted(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_server.ledger() as ledger:
        monkeypatch.setenv("ESCROW_SERVER_KEY", ledger.verifier_key())
    r = cli(["log"])
    assert r.exit_code == 0, r.stderr
    assert "key-event" in r.stdout  # the build key `escrow init` registered
    assert "trusting the log key" not in r.stderr  # nothing pinned on first use


@pytest.mark.parametrize(
    "value",
    ["garbage", "escrow.local/ledger+zzzz+AAAA", "a+b"],
    ids=["word", "bad-hash", "two-parts"],
)
@pytest.mark.parametrize("args", [["log"], ["ledger", "checkpoint"], ["show", "0"]], ids=" ".join)
def test_a_malformed_escrow_server_key_is_a_usage_error(
    live_server: LiveServer,
    client_env: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    args: list[str],
) -> None:
    monkeypatch.setenv("ESCROW_SERVER_KEY", value)
    r = cli(args)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert r.stdout == ""
    assert "ESCROW_SERVER_KEY is not a note verifier key" in r.stderr
    assert "<name>+<8 hex digits>+<base64 key>" in r.stderr
    assert "not the trusted" not in r.stderr
    assert str(client_env / "servers") not in r.stderr
    assert not (client_env / "servers").exists()  # nothing pinned either


def test_a_blank_escrow_server_key_pins_on_first_use(
    live_server: LiveServer, client_env: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SERVER_KEY", "  ")
    r = cli(["ledger", "checkpoint"])
    assert r.exit_code == 0, r.stderr
    assert "trusting the log key" in r.stderr


def test_a_malformed_verifier_key_given_to_the_constructor_is_refused(tmp_path: Path) -> None:
    from escrow.errors import UsageError

    with pytest.raises(UsageError, match="not a note verifier key"):
        RemoteLedger("http://127.0.0.1:9", None, home=tmp_path, verifier_key="garbage")


def test_missing_entries_are_counted_in_words(
    live_server: LiveServer, client_env: Path, cli: Any
) -> None:
    with live_server.ledger() as ledger:
        assert ledger.size() == 1  # `escrow init` registered the build key
    for args in (["show", "5"], ["verify", "5"], ["ledger", "proof", "5"]):
        r = cli(args)
        assert r.exit_code == 2, (args, r.stdout + r.stderr)
        assert "1 entries" not in r.stderr, args
        assert "entry 5" in r.stderr, args
    r = cli(["show", "5"])
    assert "1 entry" in r.stderr


class _Counting(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def test_the_log_key_is_checked_once_per_ledger_before_anything_is_read(
    live_server: LiveServer, tmp_path: Path
) -> None:
    with live_server.ledger() as ledger:
        key = ledger.verifier_key()
    token = live_server.tokens["auditor"]
    home = tmp_path / "c"
    with RemoteLedger(live_server.url, token, home=home, verifier_key=key) as earlier:
        assert earlier.checkpoint().size == 1  # kept: the next check proves consistency
    with live_server.client("pipeline") as c:
        assert c.post("/v1/entries", json=live_server.envelope()).status_code == 201
    transport = _Counting()
    with RemoteLedger(
        live_server.url, token, home=home, verifier_key=key, transport=transport
    ) as remote:
        first = remote.entries()
        assert [e.index for e in first] == [0, 1]
        assert remote.entries(project="none") == []
        assert len(remote.keys()) == 1
        assert remote.verifier_key() == key
        assert remote.get(0) == first[0]
    assert transport.paths[:2] == ["/v1/checkpoint", "/v1/consistency"]  # before any answer
    assert transport.paths.count("/v1/checkpoint") == 1


def test_a_shrunk_log_is_reported_with_its_entries_counted_in_words(
    live_server: LiveServer, tmp_path: Path
) -> None:
    from escrow.errors import LedgerTamperError
    from escrow.ledger.checkpoint import sign_checkpoint

    log_key = SigningKey.load(live_server.settings.log_key_path)
    with live_server.ledger() as ledger:
        cp = ledger.checkpoint()
        key = ledger.verifier_key()
    assert cp.size == 1
    with RemoteLedger(
        live_server.url, live_server.tokens["auditor"], home=tmp_path / "c", verifier_key=key
    ) as remote:
        remote.state_path.parent.mkdir(parents=True)
        bigger = sign_checkpoint(cp.origin, 6, b"\x22" * 32, log_key, cp.origin)
        remote.state_path.write_text(json.dumps({"verifier_key": key, "checkpoint": bigger}))
        with pytest.raises(LedgerTamperError) as e:
            remote.checkpoint()
    assert "it shows 1 entry, but" in e.value.message
