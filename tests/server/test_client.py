"""RemoteLedger: the Ledger interface over HTTP, checking everything the server says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_helpers import LiveServer, free_port, manifest

from escrow.errors import EscrowError, LedgerTamperError, SchemaError, SignatureError
from escrow.ledger.checkpoint import sign_checkpoint, verifier_key_line
from escrow.server.client import RemoteLedger, ServerAuthError, ServerUnavailable
from escrow.signing.dsse import Envelope, sign_statement
from escrow.signing.keys import SigningKey


def _remote(
    server: LiveServer, tmp_path: Path, role: str = "pipeline", **kw: object
) -> RemoteLedger:
    return RemoteLedger(server.url, server.tokens[role], home=tmp_path / "client", **kw)  # type: ignore[arg-type]


def test_append_and_reads_match_the_servers_ledger(live_server: LiveServer, tmp_path: Path) -> None:
    env = sign_statement(manifest("remote"), live_server.build_key())
    with _remote(live_server, tmp_path) as remote:
        entry, created = remote.append(env)
        assert created
        again, created_again = remote.append(env.to_bytes())
        assert (again, created_again) == (entry, False)
        # trust on first use: the server's log key is pinned in the client's home
        state = json.loads(remote.state_path.read_text())
        with live_server.ledger() as ledger:
            assert state["verifier_key"] == ledger.verifier_key()
            assert remote.verifier_key() == ledger.verifier_key()
            assert remote.get(entry.index) == ledger.get(entry.index)
            assert remote.entries(project="remote") == ledger.entries(project="remote")
            assert remote.size() == ledger.size()
            assert remote.checkpoint().root == ledger.root()
            assert remote.root(1) == ledger.root(1)
            n = ledger.size()
            assert remote.inclusion_proof(entry.index) == ledger.inclusion_proof(entry.index, n)
            assert remote.consistency_proof(1, n) == ledger.consistency_proof(1, n)
            assert [k.keyid for k in remote.keys()] == [k.keyid for k in ledger.keys()]
            assert remote.origin == ledger.origin
        assert state["checkpoint"] == remote.checkpoint().note


def test_entries_pages_past_the_server_page_size(live_server: LiveServer, tmp_path: Path) -> None:
    key = live_server.build_key()
    envs = [sign_statement(manifest("paged"), key).to_dict() for _ in range(5)]
    with live_server.client("pipeline") as c:
        assert c.post("/v1/entries", json={"envelopes": envs}).status_code == 201
    with _remote(live_server, tmp_path) as remote:
        import escrow.server.client as client_module

        old = client_module.MAX_PAGE
        client_module.MAX_PAGE = 2
        try:
            got = remote.entries(project="paged", limit=4)
        finally:
            client_module.MAX_PAGE = old
    assert len(got) == 4
    assert [e.index for e in got] == sorted(e.index for e in got)


def test_an_untrusted_log_key_is_refused(live_server: LiveServer, tmp_path: Path) -> None:
    other = verifier_key_line("escrow.local/ledger", SigningKey.generate().public)
    with _remote(live_server, tmp_path, verifier_key=other) as remote:
        with pytest.raises(SignatureError):
            remote.checkpoint()
        with pytest.raises(SignatureError):
            remote.append(sign_statement(manifest(), live_server.build_key()))


def _pin(remote: RemoteLedger, key: str, note: str) -> None:
    remote.state_path.parent.mkdir(parents=True, exist_ok=True)
    remote.state_path.write_text(json.dumps({"verifier_key": key, "checkpoint": note}))


def test_a_rewritten_or_truncated_log_is_caught(live_server: LiveServer, tmp_path: Path) -> None:
    log_key = SigningKey.load(live_server.settings.log_key_path)
    with live_server.ledger() as ledger:
        cp = ledger.checkpoint()
        key = ledger.verifier_key()
    with _remote(live_server, tmp_path) as remote:
        # a checkpoint of the same size with another root, validly signed: a fork
        _pin(remote, key, sign_checkpoint(cp.origin, cp.size, b"\x11" * 32, log_key, cp.origin))
        with pytest.raises(LedgerTamperError):
            remote.checkpoint()
        # a bigger checkpoint than the log now shows: truncated
        _pin(remote, key, sign_checkpoint(cp.origin, cp.size + 5, b"\x22" * 32, log_key, cp.origin))
        with pytest.raises(LedgerTamperError, match="shrank"):
            remote.checkpoint()
        # an older checkpoint whose root the log does not extend
        with live_server.client("pipeline") as c:
            assert c.post("/v1/entries", json=live_server.envelope()).status_code == 201
        _pin(remote, key, sign_checkpoint(cp.origin, cp.size, b"\x33" * 32, log_key, cp.origin))
        with pytest.raises(LedgerTamperError, match="not consistent"):
            remote.checkpoint()
        # the genuine earlier checkpoint is fine
        _pin(remote, key, cp.note)
        assert remote.checkpoint().size == cp.size + 1


def test_errors_map_to_escrow_errors(live_server: LiveServer, tmp_path: Path) -> None:
    env = sign_statement(manifest(), live_server.build_key())
    with RemoteLedger(live_server.url, None, home=tmp_path / "c1") as anonymous:
        with pytest.raises(ServerAuthError) as e:
            anonymous.checkpoint()
        assert e.value.exit_code == 3
    with _remote(live_server, tmp_path, role="auditor") as auditor:
        with pytest.raises(ServerAuthError, match="403"):
            auditor.append(env)
    with RemoteLedger(f"http://127.0.0.1:{free_port()}", "x", home=tmp_path / "c2") as down:
        with pytest.raises(ServerUnavailable):
            down.size()
    with _remote(live_server, tmp_path) as remote:
        forged = Envelope(payload=env.payload).signed_by(SigningKey.generate())
        with pytest.raises(SignatureError):
            remote.append(forged)
        bad = manifest()
        bad["predicate"]["build"]["status"] = "maybe"
        from escrow.documents.canonical import canonical_bytes

        with pytest.raises(SchemaError) as se:
            remote.append(Envelope(payload=canonical_bytes(bad)).signed_by(live_server.build_key()))
        assert se.value.pointer == "/predicate/build/status"
        with pytest.raises(EscrowError):
            remote.get(10_000)


def test_key_administration_through_the_server(live_server: LiveServer, tmp_path: Path) -> None:
    new_key = SigningKey.generate()
    with _remote(live_server, tmp_path, role="pipeline") as pipeline:
        with pytest.raises(ServerAuthError):
            pipeline.register_key(new_key.public, "ci-2")
    with _remote(live_server, tmp_path, role="admin") as admin:
        added = admin.register_key(new_key.public, "ci-2")
        assert added.predicate_type.endswith("/key-event/v1")
        assert admin.register_key(new_key.public, "ci-2") == added  # idempotent
        assert admin.key(new_key.keyid[:12]).status == "active"
        assert admin.key("ci-2").keyid == new_key.keyid  # by name too, as `escrow keys` takes it
        entry, created = admin.append(sign_statement(manifest("k"), new_key))
        assert created and entry.signer == new_key.keyid
        retired = admin.retire_key(new_key.keyid, reason="rotated")
        assert retired.index > entry.index
        assert admin.key(new_key.keyid).status == "retired"
        with pytest.raises(SignatureError):
            admin.append(sign_statement(manifest("k2"), new_key))
        with pytest.raises(EscrowError):
            admin.revoke_key("ffff", "nope")
        # retired, it can still be revoked (a private key that leaks after its retirement)
        admin.revoke_key(new_key.keyid, "leaked after its retirement")
        assert admin.key("ci-2").status == "revoked"
