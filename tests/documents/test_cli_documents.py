"""``escrow sign`` and ``escrow schema`` through the CLI (in-process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.types import PAYLOAD_TYPE, SCHEMA_IDS
from escrow.signing.dsse import Envelope
from escrow.signing.keys import KeyType, PublicKey, SigningKey

from .conftest import DOCS, load


def _lines(doc_paths: list[str]) -> str:
    return "".join(json.dumps(load(DOCS / p)) + "\n" for p in doc_paths)


def _build_pub(home: Path) -> PublicKey:
    return SigningKey.load(home / "keys" / "build.key.pem").public


# -- escrow sign -------------------------------------------------------------------
def test_sign_one_document_from_a_file(cli: Any, signing_home: Path) -> None:
    path = DOCS / "rebuild-verification.identical.json"
    r = cli(["sign", str(path)])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    env = Envelope.from_bytes(lines[0])
    assert env.payload_type == PAYLOAD_TYPE
    assert env.to_bytes().decode() == lines[0]  # printed in canonical form
    assert env.read_statement() == load(path)
    assert env.verify([_build_pub(signing_home)]) == [_build_pub(signing_home).keyid]


def test_sign_json_lines_from_stdin(cli: Any, signing_home: Path) -> None:
    names = ["rebuild-verification.identical.json", "rebuild-verification.unknown.json"]
    r = cli(["sign", "-"], input=_lines(names) + "\n")
    assert r.exit_code == 0, r.stderr
    envs = [Envelope.from_bytes(line) for line in r.stdout.splitlines()]
    assert [e.read_statement() for e in envs] == [load(DOCS / n) for n in names]


def test_sign_with_several_keys_makes_a_multi_signature_envelope(
    cli: Any, signing_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = SigningKey.generate(KeyType.ECDSA_P256)
    second.save(tmp_path / "second.key.pem", "pw")
    # the build key is unencrypted: the passphrase is only used for the encrypted one
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "pw")
    if True:
        r = cli(
            [
                "sign",
                "--json",
                "--key",
                str(signing_home / "keys" / "build.key.pem"),
                "--key",
                str(tmp_path / "second.key.pem"),
                str(DOCS / "rebuild-verification.identical.json"),
            ]
        )
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["count"] == 1
    env = Envelope.from_dict(out["envelopes"][0])
    keys = [_build_pub(signing_home), second.public]
    assert env.verify(keys, threshold=2) == [k.keyid for k in keys]


BAD_INPUTS = [
    ("empty", "", "is empty"),
    ("not-json", "hello", "is not valid JSON"),
    ("truncated", '{"_type": "https://in-toto.io/Statement/v1", "subj', "is not valid JSON"),
    ("json-but-not-a-statement", '{"hello": "world"}', "not an in-toto Statement v1"),
    ("array", "[1, 2]", "not an in-toto Statement v1"),
    (
        "unknown-predicate-type",
        json.dumps(
            {
                **load(DOCS / "rebuild-verification.identical.json"),
                "predicateType": "https://example.com/unknown/v1",
            }
        ),
        "Unknown predicate type 'https://example.com/unknown/v1'",
    ),
    (
        "subject-without-digest",
        json.dumps(
            {**load(DOCS / "rebuild-verification.identical.json"), "subject": [{"name": "x"}]}
        ),
        "/subject/0/digest: a required property is missing",
    ),
    (
        "an-envelope",
        json.dumps({"payload": "e30=", "payloadType": PAYLOAD_TYPE, "signatures": []}),
        "this is a DSSE envelope, not a Statement",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_sign_rejects_bad_input_with_one_clear_error(
    cli: Any, signing_home: Path, text: str, fragment: str
) -> None:
    r = cli(["sign", "-"], input=text)
    assert r.exit_code == 2
    assert r.stdout == ""  # nothing signed
    errors = [line for line in r.stderr.splitlines() if line.startswith("escrow: error:")]
    assert len(errors) == 1, r.stderr
    assert fragment in errors[0]
    assert "Traceback" not in r.stderr


def test_sign_json_lines_with_bad_lines_signs_nothing(cli: Any, signing_home: Path) -> None:
    good = json.dumps(load(DOCS / "rebuild-verification.identical.json"))
    no_digest = json.dumps(
        {**load(DOCS / "rebuild-verification.identical.json"), "subject": [{"name": "x"}]}
    )
    text = "\n".join([good, "{not json", good, no_digest]) + "\n"
    r = cli(["sign", "-"], input=text)
    assert r.exit_code == 2
    assert r.stdout == ""
    errors = r.stderr.splitlines()
    assert errors[0].startswith("escrow: error: line 2: not valid JSON")
    assert errors[1].startswith(
        "escrow: error: line 4: The statement document is invalid at /subject/0/digest"
    )
    assert errors[2] == "escrow: error: 2 of 4 statements are invalid; nothing was signed."


def test_sign_output_file_is_written_atomically(
    cli: Any, signing_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "envs.jsonl"
    r = cli(["sign", "-o", str(out), str(DOCS / "rebuild-verification.unknown.json")])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert Envelope.from_bytes(out.read_bytes()).read_statement() == load(
        DOCS / "rebuild-verification.unknown.json"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envs.jsonl", "home"]  # no temp left


@pytest.mark.parametrize(
    ("setup", "exit_code", "fragment"),
    [
        ("wrong-passphrase", 3, "passphrase for the signing key"),
        ("no-passphrase", 3, "is encrypted and no passphrase was given"),
        ("no-key", 3, "does not exist"),
    ],
    ids=["wrong-passphrase", "no-passphrase", "no-key"],
)
def test_sign_with_an_unusable_key_is_one_line(
    cli: Any,
    signing_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    exit_code: int,
    fragment: str,
) -> None:
    key = signing_home / "keys" / "build.key.pem"
    key.unlink()
    if setup != "no-key":
        SigningKey.generate().save(key, "right")
    if setup == "wrong-passphrase":
        monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "wrong")
    r = cli(["sign", str(DOCS / "rebuild-verification.unknown.json")])
    assert r.exit_code == exit_code
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and fragment in lines[0], r.stderr


# -- escrow schema -----------------------------------------------------------------
def test_schema_list(cli: Any) -> None:
    r = cli(["schema", "list", "--json"])
    assert r.exit_code == 0, r.stderr
    assert {s["name"]: s["id"] for s in r.json()["schemas"]} == SCHEMA_IDS


@pytest.mark.parametrize(
    "name", ["rebuild-verification", "https://escrow.dev/rebuild-verification/v1"]
)
def test_schema_show(cli: Any, name: str) -> None:
    r = cli(["schema", "show", name])
    assert r.exit_code == 0, r.stderr
    assert r.json()["$id"] == "https://escrow.dev/rebuild-verification/v1"


def test_schema_show_unknown(cli: Any) -> None:
    r = cli(["schema", "show", "nope"])
    assert r.exit_code == 2
    assert "There is no schema named 'nope'" in r.stderr and "Known schemas:" in r.stderr


def test_schema_validate_valid_files(cli: Any) -> None:
    files = [str(p) for p in sorted(DOCS.glob("rebuild-verification.*.json"))]
    r = cli(["schema", "validate", *files])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert (
        r.stdout.count(": valid rebuild-verification (https://escrow.dev/rebuild-verification/v1)")
        == 5
    )


def test_schema_validate_reports_every_problem_with_its_pointer(cli: Any, tmp_path: Path) -> None:
    doc = load(DOCS / "rebuild-verification.different.json")
    del doc["subject"][0]["digest"]
    doc["predicate"]["verdict"]["overall"] = "same"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = cli(["schema", "validate", "--json", str(bad)])
    assert r.exit_code == 1
    report = r.json()
    assert report["valid"] is False
    assert [e["pointer"] for e in report["files"][0]["errors"]] == [
        "/predicate/verdict/overall",
        "/subject/0/digest",
    ]
    r = cli(["schema", "validate", str(bad)])
    assert r.exit_code == 1
    assert "  /subject/0/digest: a required property is missing" in r.stdout


def test_schema_validate_an_envelope_checks_its_payload(
    cli: Any, signing_home: Path, tmp_path: Path
) -> None:
    r = cli(["sign", str(DOCS / "rebuild-verification.unknown.json")])
    env = tmp_path / "env.json"
    env.write_text(r.stdout)
    r = cli(["schema", "validate", "--json", str(env)])
    assert r.exit_code == 0, r.stdout
    assert r.json()["files"][0]["schema"] == "rebuild-verification"


def test_schema_validate_unreadable_is_exit_2(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    r = cli(["schema", "validate", str(bad), str(tmp_path / "missing.json")])
    assert r.exit_code == 2
    assert "bad.json: invalid" in r.stdout and "missing.json: invalid" in r.stdout


def test_schema_validate_with_a_named_schema(cli: Any) -> None:
    path = str(DOCS / "rebuild-verification.identical.json")
    r = cli(["schema", "validate", "--schema", "statement", "--json", path])
    assert r.exit_code == 0
    assert r.json()["files"][0]["schema"] == "statement"
