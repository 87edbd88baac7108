"""``escrow keys`` against a real SQLite ledger: generate, list, export, revoke, rotate."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from escrow.config import load_settings
from escrow.documents.types import KEY_EVENT
from escrow.errors import EscrowError
from escrow.ledger.store import Ledger
from escrow.signing.dsse import sign_statement
from escrow.signing.keys import KeyType, PublicKey, SigningKey

from .conftest import DOCS


def _ledger() -> Ledger:
    return Ledger.open(load_settings())


def _keys(cli: Any) -> dict[str, dict[str, Any]]:
    r = cli(["keys", "list", "--json"])
    assert r.exit_code == 0, r.stderr
    return {k["keyid"]: k for k in r.json()["keys"]}


def _doc(name: str = "rebuild-verification.identical.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DOCS / name).read_text())
    return data


# -- generate ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "env_passphrase", "prompt_input", "algorithm", "passphrase"),
    [
        ([], None, None, "ed25519", None),
        (["--type", "ecdsa-p256"], None, None, "ecdsa-p256", None),
        (["--type", "ecdsa-p256"], "env-secret", None, "ecdsa-p256", "env-secret"),
        (["--passphrase-prompt"], None, "typed\ntyped\n", "ed25519", "typed"),
    ],
    ids=["default-ed25519", "ecdsa-p256", "encrypted-from-env", "encrypted-from-prompt"],
)
def test_generate_saves_pkcs8_and_registers(
    cli: Any,
    escrow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env_passphrase: str | None,
    prompt_input: str | None,
    algorithm: str,
    passphrase: str | None,
) -> None:
    size = _ledger().size()
    if env_passphrase:
        monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", env_passphrase)
    r = cli(["keys", "generate", "--name", "release", "--json", *args], input=prompt_input)
    assert r.exit_code == 0, r.stderr
    out = r.json()
    path = escrow_home / "keys" / "release.key.pem"
    assert out["path"] == str(path) and out["algorithm"] == algorithm
    assert out["encrypted"] is bool(passphrase)
    header = "ENCRYPTED PRIVATE KEY" if passphrase else "PRIVATE KEY"
    assert path.read_text().startswith(f"-----BEGIN {header}-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = SigningKey.load(path, passphrase)
    assert key.keyid == out["keyid"] and key.type.value == algorithm
    # the key event is a ledger entry signed by the log key
    ledger = _ledger()
    assert ledger.size() == size + 1
    entry = ledger.get(out["ledger_index"])
    assert entry.predicate_type == KEY_EVENT
    assert entry.statement()["predicate"]["event"] == "added"
    assert entry.statement()["predicate"]["keyid"] == key.keyid
    listed = _keys(cli)[key.keyid]
    assert listed["status"] == "active" and listed["name"] == "release"
    assert listed["private_key_path"] == str(path)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("build", "already exists"), ("../evil", "is not allowed"), ("a/b", "is not allowed")],
    ids=["existing", "traversal", "slash"],
)
def test_generate_refuses_bad_or_taken_names(
    cli: Any, escrow_home: Path, name: str, fragment: str
) -> None:
    before = (escrow_home / "keys" / "build.key.pem").read_bytes()
    size = _ledger().size()
    r = cli(["keys", "generate", "--name", name])
    assert r.exit_code == 2
    assert fragment in r.stderr and len(r.stderr.splitlines()) == 1
    assert (escrow_home / "keys" / "build.key.pem").read_bytes() == before
    assert _ledger().size() == size
    assert not (escrow_home / "evil.key.pem").exists()


# -- list / export -------------------------------------------------------------------
def test_list_marks_the_build_key_and_export_prints_pem(cli: Any, escrow_home: Path) -> None:
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    keys = _keys(cli)
    assert keys[build.keyid]["build_key"] is True
    r = cli(["keys", "list"])
    assert r.exit_code == 0 and build.keyid[:16] in r.stdout and "active" in r.stdout
    for ref in (build.keyid, build.keyid[:10]):
        r = cli(["keys", "export", ref])
        assert r.exit_code == 0, r.stderr
        assert PublicKey.from_pem(r.stdout).keyid == build.keyid
    r = cli(["keys", "export", "ffff"])
    assert r.exit_code == 2 and "No registered key" in r.stderr


# -- revoke --------------------------------------------------------------------------
def test_revoke_stops_new_appends_but_keeps_earlier_entries(cli: Any, escrow_home: Path) -> None:
    key = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    ledger = _ledger()
    before, created = ledger.append(sign_statement(_doc(), key))
    assert created
    r = cli(["keys", "revoke", key.keyid[:12], "--reason", "laptop stolen", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["build_key"] is True and "escrow keys rotate" in r.stderr
    rec = _keys(cli)[key.keyid]
    assert rec["status"] == "revoked" and rec["reason"] == "laptop stolen"
    ledger = _ledger()
    size = ledger.size()
    with pytest.raises(EscrowError):
        ledger.append(sign_statement(_doc("rebuild-verification.unknown.json"), key))
    assert ledger.size() == size  # never appended
    assert ledger.get(before.index).envelope == before.envelope  # earlier entry still there
    assert ledger.verify().ok
    # a second revocation, and a revocation without a reason, are refused
    assert cli(["keys", "revoke", key.keyid, "--reason", "again"]).exit_code == 2
    assert cli(["keys", "revoke", key.keyid]).exit_code == 2


def test_retire_now_or_from_a_time(cli: Any, escrow_home: Path) -> None:
    """`escrow keys retire`, as the server's /keys/{id}/retire: earlier entries stay valid."""
    extra = cli(["keys", "generate", "--name", "ops", "--json"])
    assert extra.exit_code == 0, extra.stderr
    ops = extra.json()["keyid"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    r = cli(["keys", "retire", ops[:12], "--from", tomorrow, "--reason", "moved", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["effective_from"] == f"{tomorrow}T00:00:00Z"
    assert _keys(cli)[ops]["status"] == "active"  # until tomorrow
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    r = cli(["keys", "retire", build.keyid])
    assert r.exit_code == 0, r.stderr
    assert "The configured build key is retired" in r.stderr
    assert _keys(cli)[build.keyid]["status"] == "retired"
    assert _ledger().verify().ok
    # refusals: already retired, a time in the past, an unknown key
    assert cli(["keys", "retire", build.keyid]).exit_code == 2
    assert cli(["keys", "retire", ops, "--from", "2020-01-01"]).exit_code == 2
    assert cli(["keys", "retire", "ffffffffffff"]).exit_code == 2


def test_a_retired_key_that_leaks_later_can_still_be_revoked(cli: Any, escrow_home: Path) -> None:
    """Retirement says nothing against a key; if its private key leaks afterwards, the
    revocation must still be recordable (it used to be refused: "already retired")."""
    build = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    before, _ = _ledger().append(sign_statement(_doc(), build))
    assert cli(["keys", "retire", build.keyid, "--reason", "moved to HSM"]).exit_code == 0
    r = cli(["keys", "revoke", build.keyid[:12], "--reason", "old laptop sold", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["status"] == "revoked"
    rec = _keys(cli)[build.keyid]
    assert rec["status"] == "revoked" and rec["reason"] == "old laptop sold"
    assert rec["retired_at"] is not None and rec["revoked_at"] is not None
    ledger = _ledger()
    assert ledger.verify().ok
    # packs and deposits replay the key events: they must come to the same state
    from escrow.ledger.store import replay_key_events

    events = [e for e in ledger.entries(limit=1000) if e.predicate_type == KEY_EVENT]
    assert replay_key_events(events, datetime.now(UTC)) == ledger.keys()
    # the entry it signed while it was in force is still valid; nothing new is taken
    from escrow.verification import verify_entry

    assert verify_entry(ledger, ledger.get(before.index)).ok
    with pytest.raises(EscrowError):
        ledger.append(sign_statement(_doc("rebuild-verification.unknown.json"), build))
    # what follows a revocation is refused, as before
    assert cli(["keys", "revoke", build.keyid, "--reason", "again"]).exit_code == 2
    assert cli(["keys", "retire", build.keyid]).exit_code == 2


def test_keys_are_named_by_id_prefix_or_name(cli: Any, escrow_home: Path) -> None:
    """`escrow keys retire ops` said "No registered key has the ID 'ops'": the name shown
    in `keys list` was not accepted where a key is named."""
    assert cli(["keys", "generate", "--name", "ops"]).exit_code == 0
    r = cli(["keys", "export", "ops"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert cli(["keys", "retire", "ops", "--reason", "moved"]).exit_code == 0
    assert cli(["keys", "revoke", "ops", "--reason", "leaked"]).exit_code == 0
    assert {k["name"]: k["status"] for k in _keys(cli).values()}["ops"] == "revoked"
    # after a rotation two keys are called "build": neither is guessed
    assert cli(["keys", "rotate"]).exit_code == 0
    r = cli(["keys", "revoke", "build", "--reason", "which one?"])
    assert r.exit_code == 2
    assert "'build' matches 2 registered keys" in r.stderr and "retired" in r.stderr
    assert sorted(k["status"] for k in _keys(cli).values() if k["name"] == "build") == [
        "active",
        "retired",
    ]
    r = cli(["keys", "export", "nosuchkey"])
    assert r.exit_code == 2 and "No registered key has the ID or name 'nosuchkey'" in r.stderr


# -- rotate --------------------------------------------------------------------------
def test_rotate_replaces_the_build_key_and_retires_the_old_one(cli: Any, escrow_home: Path) -> None:
    keys_dir = escrow_home / "keys"
    old = SigningKey.load(keys_dir / "build.key.pem")
    r = cli(["keys", "rotate", "--type", "ecdsa-p256", "--json"])
    assert r.exit_code == 0, r.stderr
    out = r.json()
    new = SigningKey.load(keys_dir / "build.key.pem")
    assert out["new"]["keyid"] == new.keyid != old.keyid
    assert new.type is KeyType.ECDSA_P256
    archived = keys_dir / f"build-{old.keyid[:8]}.key.pem"
    assert out["old"]["path"] == str(archived)
    assert SigningKey.load(archived).keyid == old.keyid
    assert PublicKey.from_pem((keys_dir / "build.pub.pem").read_text()).keyid == new.keyid
    keys = _keys(cli)
    assert keys[old.keyid]["status"] == "retired"
    assert keys[new.keyid]["status"] == "active" and keys[new.keyid]["build_key"] is True
    assert keys[old.keyid]["private_key_path"] == str(archived)
    # escrow sign now uses the new key; the ledger takes it and refuses the old one
    r = cli(["sign", str(DOCS / "rebuild-verification.identical.json")])
    assert r.exit_code == 0, r.stderr
    ledger = _ledger()
    entry, _ = ledger.append(r.stdout.strip().encode())
    assert entry.signer == new.keyid
    with pytest.raises(EscrowError):
        ledger.append(sign_statement(_doc("rebuild-verification.unknown.json"), old))


def test_rotate_from_a_future_date_keeps_the_old_key_valid_until_then(
    cli: Any, escrow_home: Path
) -> None:
    old = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    when = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    r = cli(["keys", "rotate", "--from", when, "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["old"]["retired_from"].startswith(when)
    rec = _keys(cli)[old.keyid]
    assert rec["status"] == "active" and rec["retired_at"].startswith(when)
    entry, created = _ledger().append(sign_statement(_doc(), old))
    assert created and entry.signer == old.keyid


def test_rotate_a_revoked_key(cli: Any, escrow_home: Path) -> None:
    old = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    assert cli(["keys", "revoke", old.keyid, "--reason", "leaked"]).exit_code == 0
    r = cli(["keys", "rotate", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["old"]["status"] == "revoked"
    assert _keys(cli)[r.json()["new"]["keyid"]]["status"] == "active"


@pytest.mark.parametrize(
    ("args", "exit_code", "fragment"),
    [
        (["--from", "2001-01-01"], 2, "in the past"),
        (["--from", "next tuesday"], 2, "is not a date"),
        (["--from", "2999-01-01T00:00:00"], 2, "has no time zone"),
        (["--name", "nosuch"], 2, "No key named 'nosuch'"),
    ],
    ids=["past", "not-a-date", "no-zone", "no-such-key"],
)
def test_rotate_refusals_change_nothing(
    cli: Any, escrow_home: Path, args: list[str], exit_code: int, fragment: str
) -> None:
    files = {p.name: p.read_bytes() for p in (escrow_home / "keys").iterdir()}
    size = _ledger().size()
    r = cli(["keys", "rotate", *args])
    assert r.exit_code == exit_code, r.stderr
    assert fragment in r.stderr and len(r.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in (escrow_home / "keys").iterdir()} == files
    assert _ledger().size() == size


def test_wrong_passphrase_is_one_line_exit_3(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "enc-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "right")
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    assert cli(["init"]).exit_code == 0
    assert "ENCRYPTED" in (home / "keys" / "build.key.pem").read_text()
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "wrong")
    for args in (["keys", "rotate"], ["sign", str(DOCS / "rebuild-verification.unknown.json")]):
        r = cli(args)
        assert r.exit_code == 3, r.stderr
        assert r.stderr.count("\n") == 1 and "passphrase" in r.stderr, r.stderr
        assert r.stdout == ""
    r = cli(["keys", "rotate", "--passphrase-prompt"], input="also wrong\n")
    assert r.exit_code == 3 and "passphrase" in r.stderr.splitlines()[-1]


# -- add ----------------------------------------------------------------------------
def test_add_registers_a_public_key_made_elsewhere(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    """A pipeline's own key: refused by `escrow post` (the hint names `escrow keys add`),
    registered with that command from its public key alone, then accepted."""
    outside = SigningKey.generate()
    env_file = tmp_path / "env.json"
    env_file.write_bytes(sign_statement(_doc(), outside).to_bytes())
    refused = cli(["post", str(env_file)])
    assert refused.exit_code == 1
    assert "escrow keys add" in refused.stdout + refused.stderr

    pem = tmp_path / "pipeline.pub.pem"
    pem.write_text(outside.public.pem(), encoding="ascii")
    r = cli(["keys", "add", str(pem), "--name", "pipeline", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["keyid"] == outside.keyid and doc["name"] == "pipeline"
    assert _keys(cli)[outside.keyid]["status"] == "active"
    assert cli(["post", str(env_file)]).exit_code == 0
    # adding it again changes nothing
    again = cli(["keys", "add", str(pem), "--name", "pipeline", "--json"])
    assert again.exit_code == 0 and again.json()["ledger_index"] == doc["ledger_index"]


def test_add_refuses_private_keys_bad_files_and_ended_keys(
    cli: Any, escrow_home: Path, tmp_path: Path
) -> None:
    size = _ledger().size()
    private = escrow_home / "keys" / "build.key.pem"
    r = cli(["keys", "add", str(private), "--name", "x"])
    assert r.exit_code == 2 and "private key" in r.stderr
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    r = cli(["keys", "add", str(junk), "--name", "x"])
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    r = cli(["keys", "add", str(tmp_path / "missing.pem"), "--name", "x"])
    assert r.exit_code == 2
    build = SigningKey.load(private)
    assert cli(["keys", "revoke", build.keyid, "--reason", "lost"]).exit_code == 0
    pub = tmp_path / "build.pub.pem"
    pub.write_text(build.public.pem(), encoding="ascii")
    r = cli(["keys", "add", str(pub), "--name", "again"])
    assert r.exit_code == 2 and "revoked" in r.stderr
    assert _ledger().size() == size + 1  # only the revocation was appended


def test_sign_with_a_wrong_prompted_passphrase_says_to_type_it_again(
    cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a wrong passphrase typed at `escrow sign --passphrase-prompt` was
    blamed on ESCROW_KEY_PASSPHRASE, which the user had not set."""
    monkeypatch.delenv("ESCROW_KEY_PASSPHRASE", raising=False)
    path = load_settings().key_path
    path.write_bytes(SigningKey.load(path).private_pem("right horse"))
    statement = tmp_path / "st.json"
    statement.write_text(json.dumps(_doc()))
    r = cli(["sign", str(statement), "--passphrase-prompt"], input="wrong staple\n")
    assert r.exit_code == 3, r.stderr
    assert "type the key's passphrase" in r.stderr and "ESCROW_KEY_PASSPHRASE" not in r.stderr
    r = cli(["sign", str(statement), "--passphrase-prompt"], input="right horse\n")
    assert r.exit_code == 0, r.stderr
