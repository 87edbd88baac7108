"""An ESCROW_HOME that is a file, `keys retire` without --reason, a name shared
after `keys rotate`, `verify --envelope` on several envelopes, and `sign --key` paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.dsse import sign_statement
from escrow.signing.keys import KeyType, SigningKey

ASSET = Path(__file__).resolve().parents[1] / "assets" / "build-manifest.example.json"


def _envelope_line(key: SigningKey) -> str:
    manifest = json.loads(ASSET.read_text())
    return sign_statement(manifest, key).to_bytes().decode() + "\n"


# -- 1. ESCROW_HOME is a file ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["log"], ["keys", "list"], ["keys", "export", "build"], ["verify", "--envelope"], ["init"]],
    ids=["log", "keys-list", "keys-export", "verify-envelope", "init"],
)
def test_a_home_that_is_a_file_is_said_to_be_one_by_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any, args: list[str]
) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    if args[-1] == "--envelope":
        env = tmp_path / "one.env"
        env.write_text(_envelope_line(SigningKey.generate(KeyType.ED25519)))
        args = [*args, str(env)]
    r = cli(args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr == f"escrow: error: ESCROW_HOME ({home}) is a file, not a folder.\n"


def test_a_home_under_a_file_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    blocking = tmp_path / "plain"
    blocking.write_text("")
    monkeypatch.setenv("ESCROW_HOME", str(blocking / "escrow"))
    monkeypatch.delenv("ESCROW_DB_URL", raising=False)
    r = cli(["log"])
    assert r.exit_code == 2, r.stderr
    assert r.stderr == (
        f"escrow: error: ESCROW_HOME ({blocking / 'escrow'}) cannot be a folder: "
        f"{blocking} is a file.\n"
    )


# -- 2. keys retire without --reason -----------------------------------------------------


def test_a_retirement_without_a_reason_shows_no_reason(escrow_home: Path, cli: Any) -> None:
    assert cli(["keys", "generate", "--name", "later"]).exit_code == 0
    assert cli(["keys", "generate", "--name", "now"]).exit_code == 0
    assert cli(["keys", "retire", "later", "--from", "9999-01-01"]).exit_code == 0
    assert cli(["keys", "retire", "now"]).exit_code == 0
    listed = cli(["keys", "list"])
    assert listed.exit_code == 0, listed.stderr
    rows = {row.split()[1]: row for row in listed.stdout.splitlines()[1:]}
    assert rows["later"].endswith("retires 9999-01-01T00:00:00Z"), rows["later"]
    assert rows["now"].endswith("Z"), rows["now"]
    assert "(retired)" not in listed.stdout


# -- 3. a name shared by a rotated key and its successor ---------------------------------


def test_a_rotated_name_means_its_active_key_for_export_and_retire(
    escrow_home: Path, cli: Any
) -> None:
    rotated = cli(["keys", "rotate", "--json"])
    assert rotated.exit_code == 0, rotated.stderr
    new, old = rotated.json()["new"]["keyid"], rotated.json()["old"]["keyid"]
    exported = cli(["keys", "export", "build", "--json"])
    assert exported.exit_code == 0, exported.stderr
    assert exported.json()["keyid"] == new
    # a unique prefix still names its own key, the retired one included
    assert cli(["keys", "export", old[:12], "--json"]).json()["keyid"] == old
    # revoking stays explicit: the leaked key may be the retired one
    refused = cli(["keys", "revoke", "build", "--reason", "leaked"])
    assert refused.exit_code == 2, refused.stderr
    assert "matches 2 registered keys" in refused.stderr
    retired = cli(["keys", "retire", "build", "--from", "9999-01-01", "--json"])
    assert retired.exit_code == 0, retired.stderr
    assert retired.json()["keyid"] == new
    help_text = cli(["keys", "retire", "--help"]).stdout
    assert "means the one of them that is active" in " ".join(help_text.split())


def test_a_rotated_name_with_no_active_key_stays_ambiguous(escrow_home: Path, cli: Any) -> None:
    assert cli(["keys", "rotate"]).exit_code == 0
    assert cli(["keys", "retire", "build"]).exit_code == 0  # the new one: none is active now
    r = cli(["keys", "export", "build"])
    assert r.exit_code == 2, r.stderr
    assert "matches 2 registered keys" in r.stderr


# -- 4. verify --envelope on several envelopes -------------------------------------------


def test_each_envelope_of_a_signed_file_is_verified(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    statements = tmp_path / "two.jsonl"
    line = json.dumps(json.loads(ASSET.read_text())) + "\n"
    statements.write_text(line + line)
    signed = tmp_path / "two.env"
    made = cli(["sign", str(statements), "--output", str(signed)])
    assert made.exit_code == 0, made.stderr
    pub = escrow_home / "keys" / "build.pub.pem"
    r = cli(["verify", "--envelope", str(signed), "--key", str(pub)])
    assert r.exit_code == 0, r.stderr
    rows = r.stdout.splitlines()
    assert [row.split(":")[0] for row in rows] == ["line 1", "line 2"], rows
    assert all(": OK: envelope verified by 1 trusted key(s): " in row for row in rows)
    # without --key, the ledger's keys
    assert cli(["verify", "--envelope", str(signed)]).exit_code == 0
    as_json = cli(["verify", "--envelope", str(signed), "--json"])
    assert as_json.exit_code == 0, as_json.stderr
    doc = as_json.json()
    assert doc["ok"] is True and doc["count"] == 2
    assert [e["line"] for e in doc["envelopes"]] == [1, 2]


def test_one_bad_envelope_of_several_fails_the_check(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    good = cli(["sign", str(ASSET)])
    assert good.exit_code == 0, good.stderr
    mixed = tmp_path / "mixed.env"
    mixed.write_text(good.stdout + _envelope_line(SigningKey.generate(KeyType.ED25519)))
    r = cli(["verify", "--envelope", str(mixed), "--json"])
    assert r.exit_code == 1, r.stderr
    doc = r.json()
    assert doc["ok"] is False
    assert [e["ok"] for e in doc["envelopes"]] == [True, False]
    assert "error" in doc["envelopes"][1]
    text = cli(["verify", "--envelope", str(mixed)])
    assert text.exit_code == 1
    assert text.stdout.splitlines()[1].startswith("line 2: FAIL: ")
    assert text.stderr == "escrow: error: 1 of 2 envelopes failed verification.\n"


# -- 5. sign --key: a missing file, a folder ---------------------------------------------


def test_a_missing_key_given_with_key_is_said_to_be_missing(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    r = cli(["sign", "--key", str(missing), str(ASSET)])
    assert r.exit_code == 2, r.stderr
    assert (
        r.stderr == f"escrow: error: The signing key {missing} given with --key does not exist.\n"
    )


def test_a_folder_as_the_signing_key_is_said_to_be_a_folder(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_KEY", str(tmp_path))
    r = cli(["sign", str(ASSET)])
    assert r.exit_code == 2, r.stderr
    assert r.stderr == (
        f"escrow: error: The signing key {tmp_path} is a folder, not a private key file.\n"
    )
