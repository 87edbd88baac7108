"""`escrow init`, config.json, `escrow keys` and `escrow tokens` as an operator misuses
them: each refusal one sentence with its documented exit code, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from escrow.errors import InputError, KeyLocked
from escrow.signing.keys import SigningKey

#: what a shell passes for an argument holding the byte 0xff (not UTF-8)
NOT_UTF8 = b"bad\xff".decode("utf-8", "surrogateescape")


def _one_error(r: Any, code: int) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture
def new_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ESCROW_HOME holding only what the test writes there."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in (
        "ESCROW_DB_URL",
        "ESCROW_KEY",
        "ESCROW_KEY_PASSPHRASE",
        "ESCROW_SERVER",
        "ESCROW_TOKEN",
        "ESCROW_SERVER_KEY",
        "ESCROW_DEPOSIT_STORE",
        "ESCROW_SECRET_PATTERNS",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


def _ledger_size(cli: Any) -> int:
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 0, r.stderr
    return int(json.loads(r.stdout)["size"])


# -- config.json ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"key": 5}, "key"),
        ({"log_key": {"path": "x"}}, "log_key"),
        ({"server": True}, "server"),
        ({"origin": 5}, "origin"),
        ({"token": 12345}, "token"),
        ({"db_url": ["sqlite:////x.db"]}, "db_url"),
        ({"secret_patterns": "TOKEN"}, "secret_patterns"),
    ],
)
def test_config_value_of_the_wrong_type_is_refused(
    cli: Any, new_home: Path, config: dict[str, Any], named: str
) -> None:
    (new_home / "config.json").write_text(json.dumps(config))
    line = _one_error(cli(["init"]), 2)
    assert f"gives {named} as" in line and "config.json" in line
    assert sorted(p.name for p in new_home.iterdir()) == ["config.json"]


def test_config_unknown_key_is_refused_not_ignored(cli: Any, new_home: Path) -> None:
    """A misspelt db_url made a SQLite ledger in ESCROW_HOME instead of the one meant."""
    (new_home / "config.json").write_text(json.dumps({"db_ulr": "postgresql+psycopg://h/db"}))
    line = _one_error(cli(["init"]), 2)
    assert "'db_ulr'" in line and "db_url" in line
    assert sorted(p.name for p in new_home.iterdir()) == ["config.json"]


@pytest.mark.parametrize("text", ["", " \n"])
def test_empty_config_is_named_empty(cli: Any, new_home: Path, text: str) -> None:
    (new_home / "config.json").write_text(text)
    line = _one_error(cli(["keys", "list"]), 2)
    assert "is empty" in line and "Expecting value" not in line


def test_config_key_paths_are_relative_to_the_home_and_expand_tilde(
    cli: Any, new_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative key path was taken from the folder the command ran in (`init` in one
    folder made a key that `build` in another did not find), and `~` made a folder `~`."""
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (new_home / "config.json").write_text(
        json.dumps({"key": "signing/ci.key.pem", "log_key": "~/escrow-log.key.pem"})
    )
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    assert (new_home / "signing" / "ci.key.pem").is_file()
    assert (user_home / "escrow-log.key.pem").is_file()
    assert list(elsewhere.iterdir()) == []


# -- escrow init ------------------------------------------------------------------------
def test_init_refuses_the_log_key_as_build_key_in_a_new_home(
    cli: Any, tmp_path: Path, new_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "fresh"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.setenv("ESCROW_KEY", str(home / "keys" / "log.key.pem"))
    line = _one_error(cli(["init"]), 2)
    assert "log key" in line
    assert not home.exists()  # nothing half-made


def test_init_refuses_the_log_key_as_build_key_in_an_existing_home(
    cli: Any, new_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(["init"]).exit_code == 0
    size = _ledger_size(cli)
    monkeypatch.setenv("ESCROW_KEY", str(new_home / "keys" / "log.key.pem"))
    line = _one_error(cli(["init"]), 2)
    assert "log key" in line
    monkeypatch.delenv("ESCROW_KEY")
    assert _ledger_size(cli) == size  # no key event for it
    keys = json.loads(cli(["keys", "list", "--json"]).stdout)["keys"]
    assert [k["name"] for k in keys] == ["build"]


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["keys", "revoke", "build", "--reason", "leaked"], "revoked"),
        (["keys", "retire", "build"], "retired"),
    ],
)
def test_init_with_a_revoked_or_retired_build_key_says_to_rotate(
    cli: Any, new_home: Path, command: list[str], status: str
) -> None:
    """Revoked: exit 2 "cannot be registered again … Generate a new key"; retired:
    "Already initialised", exit 0 — where `escrow init` with a server refuses both (3)."""
    assert cli(["init"]).exit_code == 0
    assert cli(command).exit_code == 0
    size = _ledger_size(cli)
    line = _one_error(cli(["init"]), 3)
    assert f"is {status}" in line and "escrow keys rotate" in line
    assert _ledger_size(cli) == size


def test_init_that_registers_a_key_does_not_say_already_initialised(
    cli: Any, new_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(["init"]).exit_code == 0
    other = tmp_path / "other.key.pem"
    SigningKey.generate().save(other)
    monkeypatch.setenv("ESCROW_KEY", str(other))
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    assert "Already initialised" not in r.stderr
    assert "Registered the build key" in r.stderr


# -- escrow keys ------------------------------------------------------------------------
def test_keys_add_refuses_the_log_key(cli: Any, escrow_home: Path) -> None:
    size = _ledger_size(cli)
    line = _one_error(
        cli(["keys", "add", str(escrow_home / "keys" / "log.pub.pem"), "--name", "log2"]), 2
    )
    assert "log key" in line
    assert _ledger_size(cli) == size


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "an RSA"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ],
    ids=["rsa", "p384"],
)
def test_keys_add_of_another_algorithm_names_it(
    cli: Any, escrow_home: Path, tmp_path: Path, make: Any, named: str
) -> None:
    """It said "… is not a PEM public key", of a PEM public key."""
    pub = tmp_path / "other.pub.pem"
    pub.write_bytes(
        make()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    line = _one_error(cli(["keys", "add", str(pub), "--name", "other"]), 2)
    assert named in line and "not a PEM public key" not in line


def test_signing_key_of_another_algorithm_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "k.key.pem"
    for key in (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
    ):
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        with pytest.raises(InputError) as e:
            SigningKey.load(path)
        assert str(path) in e.value.diagnostics()


def test_traditionally_encrypted_key_asks_for_its_passphrase(tmp_path: Path) -> None:
    """`openssl ec -aes256` writes "Proc-Type: 4,ENCRYPTED": it was "not a PKCS#8 PEM
    private key" (exit 2), with its passphrase given or not."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "legacy.key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"right"),
        )
    )
    with pytest.raises(KeyLocked, match="encrypted and no passphrase was given"):
        SigningKey.load(path)
    with pytest.raises(KeyLocked, match="is wrong"):
        SigningKey.load(path, "wrong")
    assert SigningKey.load(path, "right").public.pem() == SigningKey(key).public.pem()


@pytest.mark.parametrize("command", ["revoke", "retire"])
def test_keys_reason_not_utf8_is_named(cli: Any, escrow_home: Path, command: str) -> None:
    """It failed as "The document cannot be canonicalised (RFC 8785) …"."""
    assert cli(["keys", "generate", "--name", "spare"]).exit_code == 0
    size = _ledger_size(cli)
    line = _one_error(cli(["keys", command, "spare", "--reason", NOT_UTF8]), 2)
    assert "--reason" in line and "canonicalised" not in line
    assert _ledger_size(cli) == size


# -- escrow tokens ----------------------------------------------------------------------
def test_tokens_with_names_not_utf8_are_refused(cli: Any, escrow_home: Path) -> None:
    """Both ended in a UnicodeEncodeError traceback from the database driver."""
    line = _one_error(cli(["tokens", "create", "--role", "admin", "--name", NOT_UTF8]), 2)
    assert "token name" in line
    line = _one_error(cli(["tokens", "revoke", NOT_UTF8]), 2)
    assert "no token" in line
    assert json.loads(cli(["tokens", "list", "--json"]).stdout)["tokens"] == []


@pytest.mark.parametrize("command", ["revoke", "retire"])
def test_a_damaged_build_public_key_file_does_not_fail_a_recorded_key_event(
    cli: Any, escrow_home: Path, command: str
) -> None:
    """`keys revoke`/`retire` wrote the key event, then read build.pub.pem to say whether
    the build key was hit and failed (exit 2, "Not a PEM public key: …"): the operator
    took it for not done."""
    assert cli(["keys", "generate", "--name", "spare"]).exit_code == 0
    (escrow_home / "keys" / "build.pub.pem").write_text("damaged\n")
    args = ["keys", command, "spare"] + (["--reason", "leaked"] if command == "revoke" else [])
    r = cli(args)
    assert r.exit_code == 0, r.stderr
    r = cli(["keys", "list", "--json"])
    assert r.exit_code == 0, r.stderr
    spare = next(k for k in json.loads(r.stdout)["keys"] if k["name"] == "spare")
    assert spare["status"] == ("revoked" if command == "revoke" else "retired")


def test_passphrase_not_utf8_encrypts_with_the_bytes_given(
    cli: Any, new_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ESCROW_KEY_PASSPHRASE holding a byte that is not UTF-8 ended `escrow init` (and
    `keys generate`/`rotate`) in a UnicodeEncodeError traceback; it is taken as the
    bytes it is, as `openssl -passin env:…` takes it."""
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", NOT_UTF8)
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    path = new_home / "keys" / "build.key.pem"
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=b"bad\xff")
    assert SigningKey.load(path, NOT_UTF8).keyid == SigningKey(loaded).keyid  # type: ignore[arg-type]
    with pytest.raises(KeyLocked, match="is wrong"):
        SigningKey.load(path, "bad")
