"""The Ledger API on both databases: appends, idempotence, rejections, keys, queries."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, diff_ids, manifest, raw_sign

from escrow.documents.types import BUILD_MANIFEST, KEY_EVENT
from escrow.errors import DatabaseUnavailable, InputError, KeyLocked, SchemaError, SignatureError
from escrow.ledger.checkpoint import verify_checkpoint
from escrow.ledger.store import Ledger, Prepared
from escrow.signing.dsse import Envelope, Signature, sign_statement
from escrow.signing.keys import KeyType, SigningKey


def test_append_then_idempotent_reappend(env: LedgerEnv) -> None:
    with env.open() as lg:
        assert lg.size() == 1  # the build key's key event
        env0 = env.envelope(0)
        entry, created = lg.append(env0)
        assert created and entry.index == 1 and lg.size() == 2
        assert entry.envelope == env0.to_bytes()
        # RFC 9162 leaf hash, computed here: SHA-256(0x00 || the envelope's bytes)
        assert entry.leaf_hash == hashlib.sha256(b"\x00" + env0.to_bytes()).hexdigest()
        assert entry.signer == env.build_key.keyid
        assert entry.project == "proj" and entry.image_id and entry.image_id.startswith("sha256:")
        assert entry.statement()["predicateType"] == BUILD_MANIFEST
        # the same envelope again, also as non-canonical JSON: the existing entry
        again, created = lg.append(env0.to_bytes())
        assert not created and again == entry
        pretty = json.dumps(json.loads(env0.to_bytes()), indent=3).encode()
        again, created = lg.append(pretty)
        assert not created and again.index == 1
        assert lg.size() == 2
        assert lg.get(1) == entry


def test_reappend_of_what_another_writer_appended_meanwhile(env: LedgerEnv) -> None:
    """Another writer appends the envelope after this one checked its signature and
    before it took the writer lock: the existing entry comes back, nothing is added."""
    envelope = env.envelope(3)
    with env.open() as mine, env.open() as other:
        check = mine._verified_signers  # noqa: SLF001 - to write inside the window
        theirs = []

        def check_then_other_appends(p: Prepared) -> list[str]:
            found = check(p)
            theirs.append(other.append(envelope))
            return found

        mine._verified_signers = check_then_other_appends  # type: ignore[method-assign]
        entry, created = mine.append(envelope)
        [(first, first_created)] = theirs
        assert first_created and not created and entry == first
        assert mine.size() == other.size() == 2
        assert mine.checkpoint().size == 2 and mine.verify().ok


def test_sqlite_writer_connection_is_durable(tmp_path: Path) -> None:
    """The SQLite writer's own connection commits in WAL mode with synchronous=FULL."""
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{tmp_path / 'l.db'}")
    with env.open() as lg:
        lg.append(env.envelope(1))
        db = lg._writer_db()  # noqa: SLF001 - the connection appends go through
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert not db.in_transaction
    assert lg._writer is None  # noqa: SLF001 - closed with the ledger


def _bad_envelopes(env: LedgerEnv) -> list[tuple[str, bytes, type[Exception]]]:
    stranger = SigningKey.generate()
    good = env.envelope(7)
    changed = dataclasses.replace(
        good, payload=good.payload.replace(b'"project":"proj"', b'"project":"prox"')
    )
    invalid = manifest(8)
    del invalid["predicate"]["build"]
    log_signed_manifest = sign_statement(manifest(9), env.log_key)
    forged_key_event = sign_statement(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f"key:{stranger.keyid}", "digest": {"sha256": stranger.keyid}}],
            "predicateType": KEY_EVENT,
            "predicate": {
                "event": "added",
                "keyid": stranger.keyid,
                "name": "evil",
                "algorithm": "ed25519",
                "publicKey": stranger.public.pem(),
                "effectiveFrom": "2026-01-01T00:00:00Z",
            },
        },
        env.build_key,
    )
    no_sig = Envelope(payload=good.payload, signatures=(Signature("", b"x" * 64),))
    return [
        ("not JSON", b"{nope", InputError),
        ("not an envelope", b'{"a": 1}', InputError),
        ("unknown key", env.envelope(10, key=stranger).to_bytes(), SignatureError),
        ("payload changed", changed.to_bytes(), SignatureError),
        ("schema-invalid", raw_sign(invalid, env.build_key).to_bytes(), SchemaError),
        ("log key signing a manifest", log_signed_manifest.to_bytes(), SignatureError),
        ("key event not by the log key", forged_key_event.to_bytes(), SignatureError),
        ("garbage signature", no_sig.to_bytes(), SignatureError),
    ]


def test_invalid_envelopes_are_rejected_and_nothing_appended(env: LedgerEnv) -> None:
    with env.open() as lg:
        before = (lg.size(), lg.root(), lg.checkpoint().note)
        for name, data, exc in _bad_envelopes(env):
            with pytest.raises(exc):
                lg.append(data)
            assert (lg.size(), lg.root(), lg.checkpoint().note) == before, name
        assert lg.verify().ok


def test_key_lifecycle(env: LedgerEnv) -> None:
    with env.open() as lg:
        first = lg.register_key(env.build_key.public, "build")
        assert first.index == 0 and lg.size() == 1  # idempotent
        p256 = SigningKey.generate(KeyType.ECDSA_P256)
        ev = lg.register_key(p256.public, "release")
        assert ev.predicate_type == KEY_EVENT and ev.signer == lg.log_public.keyid
        lg.append(env.envelope(1, key=p256))
        # retire in the future: still signs; retire now: signs no more
        later = datetime.now(UTC) + timedelta(days=1)
        lg.retire_key(p256.keyid, later)
        rec = {k.keyid: k for k in lg.keys()}[p256.keyid]
        assert rec.status == "active" and rec.retired_at is not None
        lg.append(env.envelope(2, key=p256))
        extra = SigningKey.generate()
        lg.register_key(extra.public, "extra")
        lg.retire_key(extra.keyid)
        with pytest.raises(SignatureError):
            lg.append(env.envelope(3, key=extra))
        # revoke: nothing more, and it cannot come back
        entry = lg.revoke_key(env.build_key.keyid, "laptop stolen")
        assert entry.statement()["predicate"]["reason"] == "laptop stolen"
        size = lg.size()
        with pytest.raises(SignatureError, match="may not sign"):
            lg.append(env.envelope(4))
        assert lg.size() == size
        with pytest.raises(InputError):
            lg.register_key(env.build_key.public, "build")
        with pytest.raises(InputError):
            lg.revoke_key(env.build_key.keyid, "again")
        keys = {k.keyid: k for k in lg.keys()}
        assert keys[env.build_key.keyid].status == "revoked"
        assert keys[env.build_key.keyid].reason == "laptop stolen"
        assert keys[extra.keyid].status == "retired"
        assert [k.name for k in lg.keys()] == ["build", "release", "extra"]
        assert lg.key(p256.keyid[:10]).algorithm == "ecdsa-p256"
        report = lg.verify()
        assert report.ok, report.problems


@pytest.mark.parametrize("index_every", [1, 5, 64], ids=["indexed", "mixed", "unindexed"])
def test_queries_use_indexed_columns_with_pagination(env: LedgerEnv, index_every: int) -> None:
    """The same answers whether the entries are in the query index, past it, or both."""
    other = SigningKey.generate()
    with env.open() as lg:
        lg.index_every = index_every
        lg.register_key(other.public, "other")
        t0 = datetime.now(UTC)
        made = []
        for n in range(12):
            project = "alpha" if n % 3 else "beta"
            key = other if n == 5 else env.build_key
            made.append(lg.append(env.envelope(n, project=project, key=key))[0])
        t1 = datetime.now(UTC)
        alpha = [e.index for e in made if e.project == "alpha"]
        assert [e.index for e in lg.entries(project="alpha")] == alpha
        page1 = lg.entries(project="alpha", limit=3)
        page2 = lg.entries(project="alpha", limit=3, after=page1[-1].index)
        page3 = lg.entries(project="alpha", limit=3, after=page2[-1].index)
        assert [e.index for e in page1 + page2 + page3] == alpha
        assert lg.entries(project="alpha", after=alpha[-1]) == []
        target = made[4]
        assert lg.entries(image_id=target.image_id) == [target]
        st = target.statement()
        assert lg.entries(diff_id=diff_ids(st)[1]) == [target]
        assert len(lg.entries(diff_id=diff_ids(st)[0])) == 12  # the shared base layer
        assert [e.index for e in lg.entries(signer=other.keyid)] == [made[5].index]
        assert len(lg.entries(predicate_type=KEY_EVENT)) == 2
        assert len(lg.entries(predicate_type=BUILD_MANIFEST, since=t0, until=t1)) == 12
        assert lg.entries(since=t1 + timedelta(seconds=1)) == []
        middle = lg.entries(since=made[6].integrated_at, until=made[9].integrated_at)
        assert middle == made[6:9]
        assert lg.entries(project="beta", since=made[2].integrated_at, limit=2) == [
            made[3],
            made[6],
        ]
        assert lg.entries(project="nobody") == []
        with pytest.raises(InputError):
            lg.entries(limit=0)


def test_sqlite_queries_use_indexes(tmp_path: Path) -> None:
    """Every statement a query runs seeks through a key or an index: none scans a table."""
    from sqlalchemy import event, text

    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{tmp_path / 'l.db'}")
    statements: list[str] = []
    with env.open() as lg:
        lg.index_every = 2
        for n in range(1, 8):
            lg.append(env.envelope(n))

        @event.listens_for(lg._engine, "connect")
        def _trace(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.set_trace_callback(statements.append)

        one = lg.get(3)
        since = one.integrated_at
        for query in (
            {"project": "proj", "after": 2},
            {"image_id": one.image_id},
            {"signer": one.signer, "limit": 2},
            {"predicate_type": one.predicate_type, "project": "proj", "after": 1},
            {"diff_id": diff_ids(manifest(3))[1]},
            {"since": since, "until": since + timedelta(seconds=1)},
        ):
            assert lg.entries(**query), query
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert any("ledger_term" in s for s in selects)
        with lg._engine.connect() as conn:
            for sql in selects:
                rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
                plan = " | ".join(str(r[-1]) for r in rows)
                assert "SCAN ledger_" not in plan, (sql, plan)


def test_checkpoint_matches_root_and_verifier_key(env: LedgerEnv) -> None:
    with env.open() as lg:
        for n in range(5):
            lg.append(env.envelope(n))
        cp = lg.checkpoint()
        assert cp.size == lg.size() == 6 and cp.root == lg.root()
        assert cp.origin == lg.origin
        again = verify_checkpoint(cp.note, lg.verifier_key())
        assert again == cp
        assert lg.verifier_key().startswith(lg.origin + "+")


def test_each_new_ledger_has_an_origin_of_its_own(
    env: LedgerEnv, db_url: str, tmp_path: Path
) -> None:
    """Every ledger made by `escrow init` was `escrow.local/ledger`: checkpoints of two
    ledgers could not be told apart by their origin (C2SP names a log by it)."""
    import re

    from escrow.config import LOG_ORIGIN_PREFIX

    with env.open() as lg:
        first = lg.origin
    assert re.fullmatch(re.escape(LOG_ORIGIN_PREFIX) + "[0-9a-f]{8}", first)
    with env.open() as lg:  # opened again: the origin is the ledger's, kept
        assert lg.origin == first and lg.checkpoint().origin == first
    other = LedgerEnv.create(tmp_path / "other-home", f"sqlite:///{tmp_path / 'other.db'}")
    with other.open() as lg:
        assert lg.origin != first
    # configured before the ledger is made, config.json's "origin" is taken as it is
    named = tmp_path / "named-home"
    named.mkdir()
    (named / "config.json").write_text('{"origin": "builds.example.com/escrow"}')
    env3 = LedgerEnv.create(named, f"sqlite:///{tmp_path / 'named.db'}")
    with env3.open() as lg:
        assert lg.origin == "builds.example.com/escrow"
    # and a ledger made before (the old shared default) keeps its origin
    (named / "config.json").write_text("{}")
    with env3.open() as lg:
        assert lg.origin == "builds.example.com/escrow"


def test_unreachable_database_is_exit_3(tmp_path: Path) -> None:
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{tmp_path / 'x.db'}", register=False)
    settings = env.settings._replace(db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable) as info:
        Ledger.open(settings)
    assert info.value.exit_code == 3
    # one sentence: the driver's first line, not its multi-line explanation
    message = info.value.message
    assert "\n" not in message and "?." not in message, message
    assert message.endswith("Connection refused."), message
    blocked = tmp_path / "file"
    blocked.write_text("")
    settings = env.settings._replace(db_url=f"sqlite:///{blocked}/sub/l.db")
    with pytest.raises(DatabaseUnavailable):
        Ledger.open(settings)


def test_another_log_key_is_refused(env: LedgerEnv, tmp_path: Path) -> None:
    other_home = tmp_path / "other"
    other = LedgerEnv.create(other_home, f"sqlite:///{tmp_path / 'other.db'}", register=False)
    settings = other.settings._replace(db_url=env.settings.db_url)
    with pytest.raises(KeyLocked):
        Ledger.open(settings)


def test_an_initialised_sqlite_ledger_appends_with_sqlite3_alone(tmp_path: Path) -> None:
    """Opening and appending need no SQLAlchemy engine; queries make one when they need it."""
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{tmp_path / 'l.db'}")
    with env.open() as lg:
        assert lg._engine_made is None  # noqa: SLF001 - the contract under test
        first, created = lg.append(env.envelope(1))
        assert created and lg._engine_made is None  # noqa: SLF001
        again, created = lg.append(env.envelope(1))
        assert not created and again.index == first.index
        second, _ = lg.append(env.envelope(2))
        # a query through SQLAlchemy sees what the sqlite3 connection committed
        assert [e.index for e in lg.entries(project="proj")] == [first.index, second.index]
        assert lg._engine_made is not None  # noqa: SLF001
        assert lg.verify().ok
    with env.open() as lg:
        assert lg.size() == second.index + 1


def test_an_empty_sqlite_file_is_initialised_as_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    env = LedgerEnv.create(tmp_path / "home", f"sqlite:///{path}")
    with env.open() as lg:
        entry, created = lg.append(env.envelope(7))
        assert created and lg.size() == entry.index + 1


def test_key_status_now(env: LedgerEnv) -> None:
    """What `escrow build` asks while the engine builds: may this key sign now?"""
    later, soon_gone, gone = (SigningKey.generate() for _ in range(3))
    with env.open() as lg:
        assert lg.key_status(env.build_key.keyid) == ("build", "active")
        assert lg.key_status(later.keyid) is None
        for k, name in ((soon_gone, "soon"), (gone, "gone"), (later, "later")):
            lg.register_key(k.public, name)
        lg.revoke_key(gone.keyid, "leaked")
        lg.retire_key(soon_gone.keyid, datetime.now(UTC) + timedelta(days=1), None)
        lg.retire_key(later.keyid, None, None)
        assert lg.key_status(gone.keyid) == ("gone", "revoked")
        assert lg.key_status(soon_gone.keyid) == ("soon", "active")  # not in force yet
        assert lg.key_status(later.keyid) == ("later", "retired")
