"""Hunt: the signing-key lifecycle under compromise — a build key stolen, then retired or
revoked; key events the append path refuses, written into the database by whoever holds
the log key; what `ledger verify`, `escrow verify`, `escrow pack` and `pack verify` make of
the entries such a key signed."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pack.conftest import PackLedger
from pack.synth import manifest_variant

from tests.server.server_helpers import make_tokens, serving

# escrow/ledger/store.py calls SQLAlchemy's deprecated Result.tuples() (as tests/pack do)
pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@pytest.fixture
def pack_ledger(escrow_home: Path) -> Iterator[PackLedger]:
    """tests/pack's ``pack_ledger`` (a fixture of that folder only): the ledger of
    ``escrow_home`` and its build key."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    with Ledger.open(settings) as ledger:
        yield PackLedger(escrow_home, ledger, SigningKey.load(settings.key_path))


@contextmanager
def _key_row_set_active(home: Path, keyid: str) -> Iterator[None]:
    """What a thief with write access to the SQLite file does to append with a key the
    ledger ended: set its key-table row active for one append, then put the row back
    (so the key table agrees with the log's key events again)."""
    db = sqlite3.connect(home / "ledger.db")
    try:
        with db:
            row = db.execute(
                "SELECT status, revoked_us, retired_us FROM ledger_key WHERE keyid = ?", (keyid,)
            ).fetchone()
            db.execute(
                "UPDATE ledger_key SET status = 'active', revoked_us = NULL, retired_us = NULL "
                "WHERE keyid = ?",
                (keyid,),
            )
            db.execute("UPDATE ledger_meta SET value = value + 1 WHERE name = 'key_version'")
        yield
        with db:
            db.execute(
                "UPDATE ledger_key SET status = ?, revoked_us = ?, retired_us = ? WHERE keyid = ?",
                (*row, keyid),
            )
            db.execute("UPDATE ledger_meta SET value = value + 1 WHERE name = 'key_version'")
    finally:
        db.close()


def _append_as_thief(pl: PackLedger, n: int) -> Any:
    """Entry ``n`` signed by the stolen old build key, appended past the key table."""
    from escrow.signing.dsse import sign_statement

    with _key_row_set_active(pl.home, pl.key.keyid):
        entry, created = pl.ledger.append(sign_statement(manifest_variant(n), pl.key))
    assert created
    return entry


def _append_refused_key_event(pl: PackLedger, event: str) -> Any:
    """A key event signed by the log key that the append path refuses (an ``added`` of a
    key added already, a ``retired`` of a revoked key), written as the ledger writes
    entries: what someone holding the log key and the database could do."""
    from escrow.ledger.store import Ledger, key_event_statement

    far = datetime(2099, 1, 1, tzinfo=UTC)
    st = key_event_statement(event, pl.key.public, "build", far if event == "retired" else now())
    with pytest.MonkeyPatch.context() as mp:  # not the test's own monkeypatch: ESCROW_HOME
        mp.setattr(Ledger, "_apply_key_event", lambda *_: None)
        entry, _ = pl.ledger.append(pl.ledger._sign(st))
    return entry


def now() -> datetime:
    return datetime.now(UTC)


def _pack(cli: Any, out: Path) -> Any:
    return cli(["pack", "--project", "example", "-o", str(out), "--json"])


def _one_sentence(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("escrow: error:")]
    assert len(lines) == 1, stderr


def test_entry_signed_after_retirement_stays_invalid_once_the_key_is_revoked(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """Regression: a build key rotated away (retired), whose private key then leaked and
    was revoked.  An entry the thief wrote past the key table between the two events was
    rated by `escrow pack` "Signatures verified: 2 of 2" and passed `pack verify`
    ("each signed by a key valid when appended"): `pack verify` replaced the retirement
    with the later revocation, and `escrow pack` checked only the signature's bytes —
    while `ledger verify` and `escrow verify` failed the entry."""
    pl = pack_ledger
    honest = pl.add(1)
    assert cli(["keys", "rotate"]).exit_code == 0  # retires the old key now
    forged = _append_as_thief(pl, 2)
    r = cli(["keys", "revoke", pl.key.keyid, "--reason", "laptop stolen"])
    assert r.exit_code == 0, r.stderr

    r = cli(["ledger", "verify"])
    assert r.exit_code == 1
    assert f"at entry {forged.index}: key-not-valid" in r.stderr
    assert cli(["verify", str(honest.index)]).exit_code == 0  # signed before: still valid
    r = cli(["verify", str(forged.index)])
    assert r.exit_code == 1 and "was retired before the entry was appended" in r.stdout

    out = tmp_path / "pack.pdf"
    r = _pack(cli, out)
    assert r.exit_code == 1, r.stdout
    assert r.json()["overall"] == "Verification failed"
    _one_sentence(r.stderr)
    r = cli(["pack", "verify", str(out)])
    assert r.exit_code == 1
    assert (
        f"envelope signatures: entry {forged.index}: no signer key valid at this index" in r.stderr
    )
    _one_sentence(r.stderr)


@pytest.mark.parametrize("event", ["retired", "added"])
def test_a_key_event_the_ledger_refuses_revives_no_revoked_key(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, event: str
) -> None:
    """Regression: a revoked key "retired from 2099" (or "added" again) by a key event the
    append path refuses, written with the log key: `ledger verify` passed every entry the
    revoked key signed after it, `escrow verify` and `escrow pack` those before it too, and
    `pack verify` all of them.  The event is now reported as forged and changes nothing."""
    pl = pack_ledger
    pl.add(1)
    assert cli(["keys", "rotate"]).exit_code == 0
    assert cli(["keys", "revoke", pl.key.keyid, "--reason", "stolen"]).exit_code == 0
    before = _append_as_thief(pl, 2)
    revival = _append_refused_key_event(pl, event)
    after = _append_as_thief(pl, 3)

    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 1
    problems = [(p["index"], p["kind"]) for p in r.json()["problems"]]
    assert (before.index, "key-not-valid") in problems
    assert (revival.index, "forged") in problems
    assert (after.index, "key-not-valid") in problems
    r = cli(["ledger", "verify"])
    assert f"at entry {before.index}: key-not-valid" in r.stderr
    assert f"Entry {revival.index} is a key event the ledger refuses: {event} key" in r.stdout
    for entry in (before, after):
        r = cli(["verify", str(entry.index)])
        assert r.exit_code == 1 and "was revoked before the entry was appended" in r.stdout
    # the key is shown as the log left it: revoked
    keys = {k["keyid"]: k for k in cli(["keys", "list", "--json"]).json()["keys"]}
    assert keys[pl.key.keyid]["status"] == "revoked"

    out = tmp_path / "pack.pdf"
    r = _pack(cli, out)
    assert r.exit_code == 1 and r.json()["overall"] == "Verification failed"
    r = cli(["pack", "verify", str(out)])
    assert r.exit_code == 1
    assert f"envelope signatures: entry {before.index}: no signer key valid" in r.stderr


@pytest.fixture
def served(escrow_home: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``escrow_home``'s ledger served on 127.0.0.1; its URL and a token of each role."""
    from escrow.config import load_settings
    from escrow.server.app import ServerConfig, create_app

    settings = load_settings()
    tokens = make_tokens(settings)
    with serving(create_app(ServerConfig(settings, pack_workers=0))) as url:
        yield url, tokens


def _size() -> int:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings(), readonly=True) as lg:
        return lg.size()


def _build_key(home: Path) -> Any:
    from escrow.signing.keys import SigningKey

    return SigningKey.load(home / "keys" / "build.key.pem")


@pytest.mark.parametrize("role", ["pipeline", "auditor"])
def test_server_key_events_need_an_admin_token(
    served: tuple[str, dict[str, str]], escrow_home: Path, role: str
) -> None:
    import httpx

    from escrow.documents.canonical import canonical_bytes
    from escrow.ledger.store import key_event_statement
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import SigningKey

    url, tokens = served
    key = _build_key(escrow_home)
    other = SigningKey.generate()
    size = _size()
    auth = {"Authorization": f"Bearer {tokens[role]}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as c:
        for path, body in (
            ("/v1/keys", {"name": "thief", "public_key": other.public.pem()}),
            (f"/v1/keys/{key.keyid}/revoke", {"reason": "x"}),
            (f"/v1/keys/{key.keyid}/retire", {}),
        ):
            r = c.post(path, json=body)
            assert r.status_code == 403, (path, r.text)
        # nor can a key event be posted as an entry: it must be signed by the log key
        st = key_event_statement("added", other.public, "thief", now())
        forged = Envelope(payload=canonical_bytes(st)).signed_by(key)
        r = c.post("/v1/entries", json=forged.to_dict())
        assert r.status_code in (403, 422), r.text
    assert _size() == size
    with httpx.Client(base_url=url, timeout=60) as c:
        keys = c.get("/v1/keys", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    assert [k["keyid"] for k in keys["keys"]] == [key.keyid]


def test_server_refuses_a_retirement_from_the_past(
    served: tuple[str, dict[str, str]], escrow_home: Path
) -> None:
    """Regression: `escrow keys retire --from` refuses a time in the past (exit 2), but
    POST /v1/keys/{keyid}/retire took one and signed it into the log as the key event's
    effectiveFrom — a date from which the ledger never applied the retirement (entries
    the key signed since then stay valid everywhere), stated by the log key all the same."""
    import httpx

    url, tokens = served
    key = _build_key(escrow_home)
    size = _size()
    past = (now() - timedelta(days=30)).isoformat()
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as c:
        r = c.post(f"/v1/keys/{key.keyid}/retire", json={"effective_from": past})
        assert r.status_code == 422, r.text
        err = r.json()
        assert err["message"].startswith("A key cannot be retired from a time in the past.")
        assert _size() == size
        later = (now() + timedelta(days=30)).isoformat()
        r = c.post(f"/v1/keys/{key.keyid}/retire", json={"effective_from": later})
        assert r.status_code == 201, r.text
    assert _size() == size + 1


def test_stolen_key_revoked_signs_nothing_more_even_backdated(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The honest path: the stolen key's earlier entries stay valid (marked revoked since);
    what it signs afterwards is refused, whatever times its statement claims (the ledger's
    own append time decides); the revoked key cannot be registered again."""
    from escrow.signing.dsse import sign_statement

    pl = pack_ledger
    before = pl.add(1)
    assert cli(["keys", "rotate"]).exit_code == 0
    r = cli(["keys", "revoke", pl.key.keyid[:16], "--reason", "laptop stolen"])
    assert r.exit_code == 0, r.stderr
    size = _size()

    st = manifest_variant(2)
    st["predicate"]["build"]["startedOn"] = "2020-01-01T00:00:00Z"  # claims a time long ago
    st["predicate"]["build"]["finishedOn"] = "2020-01-01T00:00:05Z"
    envelopes = tmp_path / "late.jsonl"
    envelopes.write_text(json.dumps(sign_statement(st, pl.key).to_dict()) + "\n")
    r = cli(["post", str(envelopes)])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "may not sign now" in r.stdout + r.stderr and "revoked" in r.stdout + r.stderr
    assert _size() == size

    pub = tmp_path / "stolen.pub.pem"
    pub.write_text(pl.key.public.pem())
    r = cli(["keys", "add", str(pub), "--name", "again"])
    assert r.exit_code == 2
    assert "is revoked in the ledger and cannot be registered again" in r.stderr
    _one_sentence(r.stderr)
    assert _size() == size

    r = cli(["verify", str(before.index)])
    assert r.exit_code == 0 and "(since revoked)" in r.stdout
    assert cli(["ledger", "verify"]).exit_code == 0


def test_keys_export_verifies_an_envelope_without_escrow(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """`keys export` prints a PEM an independent verifier (cryptography alone, over the DSSE
    PAE) checks a recorded envelope with, also for a key rotated away since."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pl = pack_ledger
    entry = pl.add(1)
    old = pl.key.keyid
    assert cli(["keys", "rotate"]).exit_code == 0
    r = cli(["keys", "export", "build"])  # the name: the one active key of that name
    assert r.exit_code == 0 and r.stdout != pl.key.public.pem()
    r = cli(["keys", "export", old[:16]])
    assert r.exit_code == 0
    public = load_pem_public_key(r.stdout.encode())
    env = json.loads(entry.envelope)
    payload = base64.b64decode(env["payload"])
    ptype = env["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    [sig] = env["signatures"]
    assert sig["keyid"] == old
    public.verify(base64.b64decode(sig["sig"]), pae)  # type: ignore[call-arg,union-attr]


def test_pack_across_a_rotation_and_a_revocation_verifies_offline(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A pack made before a rotation still verifies afterwards from the file alone, and a
    pack whose scope spans the rotation and a later revocation verifies, shows both keys
    with their events, counts the retired key's builds as notes and the revoked one's as
    findings."""
    from pack.conftest import pdftotext

    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    pl = pack_ledger
    pl.add(1)
    first = tmp_path / "first.pdf"
    assert _pack(cli, first).exit_code == 0
    old = pl.key
    assert cli(["keys", "rotate"]).exit_code == 0
    new = SigningKey.load(pl.home / "keys" / "build.key.pem")
    pl.ledger.append(sign_statement(manifest_variant(2), new))
    assert cli(["keys", "rotate"]).exit_code == 0
    assert cli(["keys", "revoke", new.keyid, "--reason", "leaked"]).exit_code == 0
    assert cli(["keys", "rotate", "--name", "nonesuch"]).exit_code == 2
    # the log key, which signed the first pack's checkpoint, is not rotated
    r = cli(["keys", "rotate", "--name", "log"])
    assert r.exit_code == 2 and "cannot be rotated" in r.stderr
    _one_sentence(r.stderr)

    r = cli(["pack", "verify", str(first)])
    assert r.exit_code == 0, r.stdout + r.stderr
    second = tmp_path / "second.pdf"
    r = _pack(cli, second)
    assert r.exit_code == 0, r.stderr
    assert r.json()["overall"] == "Verified, with findings"
    r = cli(["pack", "verify", str(second)])
    assert r.exit_code == 0, r.stdout + r.stderr
    text = pdftotext(second)
    assert f"signed by key {new.keyid[:16]}…, now revoked" in text
    assert f"signed by key {old.keyid[:16]}…, now revoked" not in text
    assert old.keyid in text and new.keyid in text


def test_a_key_event_signed_by_the_stolen_key_is_named_by_ledger_verify(
    pack_ledger: PackLedger, cli: Any
) -> None:
    """A thief with the database and the revoked build key (not the log key) writes a key
    event adding a key of his own, and the key table row for it: `ledger verify` names
    that event as the first bad entry; the append path refuses such an event outright."""
    from escrow.documents.canonical import canonical_bytes
    from escrow.ledger.store import key_event_statement, prepare
    from escrow.signing.dsse import Envelope, sign_statement
    from escrow.signing.keys import SigningKey

    pl = pack_ledger
    pl.add(1)
    assert cli(["keys", "rotate"]).exit_code == 0
    assert cli(["keys", "revoke", pl.key.keyid, "--reason", "stolen"]).exit_code == 0
    theirs = SigningKey.generate()
    st = key_event_statement("added", theirs.public, "thief", now())
    event = Envelope(payload=canonical_bytes(st)).signed_by(pl.key)
    events = Path(pl.home) / "event.jsonl"
    events.write_text(json.dumps(event.to_dict()) + "\n")
    size = _size()
    r = cli(["post", str(events)])
    assert r.exit_code == 1 and "not signed by this ledger's log key" in r.stdout + r.stderr
    assert _size() == size
    with pl.ledger._write() as conn:  # past every check of the append: the file edited
        pl.ledger._append_locked(conn, prepare(event), [])
    pl.ledger.append(sign_statement(manifest_variant(2), theirs))
    r = cli(["ledger", "verify"])
    assert r.exit_code == 1
    assert f"at entry {size}: key-not-valid" in r.stderr
    _one_sentence(r.stderr)


def test_two_keys_of_one_name_are_not_guessed_between(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    from escrow.signing.keys import SigningKey

    other = SigningKey.generate()
    pub = tmp_path / "other.pub.pem"
    pub.write_text(other.public.pem())
    assert cli(["keys", "add", str(pub), "--name", "build"]).exit_code == 0
    size = _size()
    for args in (
        ["keys", "export", "build"],
        ["keys", "retire", "build"],
        ["keys", "revoke", "build", "--reason", "x"],
    ):
        r = cli(args)
        assert r.exit_code == 2, (args, r.stderr)
        _one_sentence(r.stderr)
    assert _size() == size
