"""The output contract of every command (README "What it does", "Exit codes").

* with ``--json``, stdout holds exactly one JSON document, or nothing when the command
  failed before it had a result (only the commands that promise it print a JSON document
  of a failure: ``verify``, ``verify --envelope``, ``ledger consistency --from``, ``post``,
  ``schema validate``, ``pack verify``, ``deposit check``, ``rebuild``);
* without ``--json``, stdout holds the result and nothing else (an error: nothing);
* no traceback, the documented exit code, and an error that is one sentence on stderr
  (``escrow: error: …``, plus an optional hint).

The table runs on a SQLite ledger without the Docker Engine (commands that need one are
checked with ``DOCKER_HOST`` pointing nowhere); it is a regression net over the sweep of
every command made for the output-contract hunt.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, run_cli

ASSETS = Path(__file__).parent / "assets"

NO_ENGINE = "unix:///nonexistent/docker.sock"


def _one_document(text: str) -> Any:
    """The one JSON document ``text`` holds (a second one, or text around it, fails)."""
    decoder = json.JSONDecoder()
    stripped = text.strip()
    assert stripped, "stdout is empty"
    doc, end = decoder.raw_decode(stripped)
    assert stripped[end:].strip() == "", f"more than one document on stdout: {text!r}"
    return doc


def _assert_one_error(r: Result) -> None:
    """No traceback; the error is said once, on stderr."""
    assert "Traceback" not in r.stderr + r.stdout
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("escrow: error:")]
    usage = [ln for ln in r.stderr.splitlines() if ln.startswith("Error: ")]  # click's usage
    assert len(errors) + len(usage) == 1, r.stderr


def _append_example_build(home: Path) -> int:
    """Sign the example build manifest with the home's build key and append it."""
    from escrow.config import load_settings
    from escrow.documents.canonical import canonical_bytes
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import SigningKey

    statement = json.loads((ASSETS / "build-manifest.example.json").read_text())
    settings = load_settings()
    key = SigningKey.load(settings.key_path)
    with Ledger.open(settings) as lg:
        entry, _ = lg.append(Envelope(payload=canonical_bytes(statement)).signed_by(key))
    return entry.index


@pytest.fixture
def home_with_entries(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """An initialised home holding entry 1 (`escrow record`), entry 2 (a build manifest),
    the envelope of entry 1 as a file, and a saved checkpoint of another log."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.c").write_text("int main(void) { return 0; }\n")
    monkeypatch.chdir(work)
    r = run_cli(["record", "--json", "--", "true"])
    assert r.exit_code == 0, r.stderr
    assert _one_document(r.stdout)["index"] == 1
    assert _append_example_build(escrow_home) == 2
    envelope = tmp_path / "envelope.json"
    leaf = run_cli(["ledger", "leaf", "1"])
    assert leaf.exit_code == 0, leaf.stderr
    envelope.write_text(leaf.stdout)
    not_json = tmp_path / "not-json.txt"
    not_json.write_text("this is not json\n")
    other_home = tmp_path / "other-home"
    monkeypatch.setenv("ESCROW_HOME", str(other_home))
    assert run_cli(["init"]).exit_code == 0
    other_cp = tmp_path / "other.checkpoint"
    other_cp.write_text(run_cli(["ledger", "checkpoint"]).stdout)
    monkeypatch.setenv("ESCROW_HOME", str(escrow_home))
    return {
        "home": escrow_home,
        "tmp": tmp_path,
        "envelope": envelope,
        "not_json": not_json,
        "other_cp": other_cp,
    }


# (args, exit code, whether --json prints a document); {tmp}, {envelope}, {not_json},
# {other_cp} and {missing} are filled in from the fixture
SUCCESS: list[list[str]] = [
    ["log"],
    ["show", "1"],
    ["logs", "1"],
    ["ledger", "checkpoint"],
    ["ledger", "verifier-key"],
    ["ledger", "proof", "1"],
    ["ledger", "consistency", "1"],
    ["ledger", "verify"],
    ["post", "{envelope}"],
    ["keys", "list"],
    ["keys", "export", "build"],
    ["tokens", "list"],
    ["schema", "list"],
    ["schema", "show", "build-manifest"],
    ["schema", "validate", "{envelope}"],
    ["export", "--slsa", "2"],
    ["diff", "1", "1"],
    ["verify", "--envelope", "{envelope}"],
    ["init"],
]

FAILURES: list[tuple[list[str], int, bool]] = [
    # unknown index
    (["show", "99"], 2, False),
    (["logs", "99"], 2, False),
    (["ledger", "proof", "99"], 2, False),
    (["ledger", "consistency", "99"], 2, False),
    (["ledger", "checkpoint", "--tree-size", "99"], 2, False),
    (["export", "--slsa", "99"], 2, False),
    (["diff", "1", "99"], 2, False),
    (["deposit", "check", "99"], 2, False),
    (["attach", "99"], 2, False),
    (["rebuild", "99", "--context", "{tmp}"], 2, False),
    (["verify", "99"], 2, True),
    # an entry of the wrong kind
    (["export", "--slsa", "0"], 2, False),
    (["rebuild", "1", "--context", "{tmp}"], 2, False),
    (["attach", "1"], 2, False),
    # missing argument, bad value
    (["show"], 2, False),
    (["log", "--kind", "nope"], 2, False),
    (["log", "--since", ""], 2, False),
    (["log", "--diff-id", "x"], 2, False),
    (["ledger", "consistency", "2", "1"], 2, False),
    (["keys", "export", "nokey"], 2, False),
    (["keys", "retire", "nokey"], 2, False),
    (["tokens", "revoke", "nope"], 2, False),
    (["tokens", "create", "--role", "nope", "--name", "x"], 2, False),
    (["schema", "show", "nope"], 2, False),
    (["verify"], 2, False),
    # missing file, bad file
    (["post", "{missing}"], 2, False),
    (["sign", "{missing}"], 2, False),
    (["sign", "{not_json}"], 2, False),
    (["keys", "add", "{missing}", "--name", "x"], 2, False),
    (["keys", "add", "{not_json}", "--name", "x"], 2, False),
    (["deposit", "import", "{missing}"], 2, False),
    (["deposit", "import", "{not_json}"], 2, False),
    (["pack", "verify", "{missing}"], 2, False),
    (["ledger", "consistency", "--from", "{missing}"], 2, False),
    (["ledger", "consistency", "--from", "{not_json}"], 2, False),
    (["verify", "--envelope", "{not_json}"], 2, True),
    (["schema", "validate", "{not_json}"], 2, True),
    # a check failed
    (["post", "{not_json}"], 1, True),
    (["pack", "verify", "{not_json}"], 1, True),
    (["ledger", "consistency", "--from", "{other_cp}"], 1, True),
    (["deposit", "export", "2", "-o", "{tmp}/d.tar", "--since-checkpoint", "{other_cp}"], 1, False),
]

#: no ledger (`escrow init` never run): exit 3
NO_LEDGER: list[tuple[list[str], bool]] = [
    (["log"], False),
    (["show", "1"], False),
    (["logs", "1"], False),
    (["ledger", "checkpoint"], False),
    (["ledger", "verifier-key"], False),
    (["ledger", "proof", "1"], False),
    (["ledger", "consistency", "1"], False),
    (["ledger", "verify"], False),
    (["post", "{envelope}"], False),
    (["keys", "list"], False),
    (["keys", "export", "build"], False),
    (["tokens", "list"], False),
    (["export", "--slsa", "2"], False),
    (["diff", "1", "2"], False),
    (["deposit", "check", "2"], False),
    (["sign", "{statement}"], False),
    (["record", "--json", "--", "true"], False),
    (["verify", "1"], True),
]

#: the Docker Engine unreachable: exit 3
NO_ENGINE_CASES: list[tuple[list[str], bool]] = [
    (["capture", "escrow-test/none:1"], False),
    (["build", "{tmp}", "-t", "hunt-output-contract/none:1"], False),
    (["verify", "escrow-test/none:1"], True),
]


def _fill(args: list[str], where: dict[str, Any]) -> list[str]:
    values = {
        "tmp": str(where["tmp"]),
        "envelope": str(where["envelope"]),
        "not_json": str(where["not_json"]),
        "other_cp": str(where["other_cp"]),
        "missing": str(where["tmp"] / "no-such-file"),
        "statement": str(ASSETS / "build-manifest.example.json"),
    }
    return [a.format(**values) for a in args]


def _ids(args: list[str]) -> str:
    return " ".join(a.strip("{}") for a in args)


@pytest.mark.parametrize("args", SUCCESS, ids=[_ids(a) for a in SUCCESS])
def test_a_result_is_one_json_document_with_json_and_text_without(
    home_with_entries: dict[str, Any], args: list[str]
) -> None:
    args = _fill(args, home_with_entries)
    as_json = run_cli([*args, "--json"])
    assert as_json.exit_code == 0, as_json.stderr
    assert "Traceback" not in as_json.stderr
    _one_document(as_json.stdout)

    text = run_cli(args)
    assert text.exit_code == 0, text.stderr
    assert "Traceback" not in text.stderr
    assert "escrow: error:" not in text.stderr


@pytest.mark.parametrize(
    ("args", "code", "json_error"), FAILURES, ids=[_ids(a) for a, _, _ in FAILURES]
)
def test_a_failure_has_its_exit_code_one_error_and_at_most_one_document(
    home_with_entries: dict[str, Any], args: list[str], code: int, json_error: bool
) -> None:
    args = _fill(args, home_with_entries)
    for as_json in (False, True):
        r = run_cli([*args, "--json"] if as_json else args)
        assert r.exit_code == code, (as_json, r.stdout, r.stderr)
        _assert_one_error(r)
        if as_json and json_error:
            doc = _one_document(r.stdout)
            assert doc.get("ok", doc.get("valid", doc.get("consistent"))) is False or (
                doc.get("rejected")
            ), doc
        elif not json_error and (as_json or code == 2):
            assert r.stdout == "", r.stdout


@pytest.mark.parametrize(("args", "json_error"), NO_LEDGER, ids=[_ids(a) for a, _ in NO_LEDGER])
def test_without_a_ledger_every_command_exits_3_saying_so(
    home_with_entries: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    json_error: bool,
) -> None:
    args = _fill(args, home_with_entries)
    monkeypatch.setenv("ESCROW_HOME", str(home_with_entries["tmp"] / "never-initialised"))
    for as_json in (False, True):
        r = run_cli([*args, "--json"] if as_json and "--json" not in args else args)
        assert r.exit_code == 3, (r.stdout, r.stderr)
        _assert_one_error(r)
        assert "escrow init" in r.stderr
        if as_json and json_error:
            assert _one_document(r.stdout)["ok"] is False
        else:
            assert r.stdout == ""


@pytest.mark.parametrize(
    ("args", "json_error"), NO_ENGINE_CASES, ids=[_ids(a) for a, _ in NO_ENGINE_CASES]
)
def test_without_the_engine_exit_3_with_one_sentence(
    home_with_entries: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    json_error: bool,
) -> None:
    args = _fill(args, home_with_entries)
    (home_with_entries["tmp"] / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    for as_json in (False, True):
        r = run_cli([*args, "--json"] if as_json else args)
        assert r.exit_code == 3, (r.stdout, r.stderr)
        _assert_one_error(r)
        assert "The Docker Engine at" in r.stderr
        if as_json and json_error:
            assert _one_document(r.stdout)["ok"] is False
        else:
            assert r.stdout == ""


# -- escrow rebuild of an entry whose stored envelope cannot be read ----------------------


def test_rebuild_of_an_unreadable_stored_envelope_is_tampering_exit_1(
    home_with_entries: dict[str, Any],
) -> None:
    """Regression: `escrow rebuild` parsed the stored envelope itself and said "The envelope
    has no string field 'payload'." with exit 2 (an input error), where every other command
    reading a damaged entry says it was tampered with (exit 1, naming the entry)."""
    home = home_with_entries["home"]
    with sqlite3.connect(home / "ledger.db") as db:
        (data,) = db.execute("SELECT envelope FROM ledger_entry WHERE idx = 2").fetchone()
        damaged = bytes(data).replace(b'"payload"', b'"payloaX"')
        db.execute("UPDATE ledger_entry SET envelope = ? WHERE idx = 2", (damaged,))

    for json_flag in ([], ["--json"]):
        r = run_cli(["rebuild", "2", "--context", str(home_with_entries["tmp"]), *json_flag])
        assert r.exit_code == 1, (r.stdout, r.stderr)
        _assert_one_error(r)
        assert "The stored envelope of entry 2 cannot be read" in r.stderr
        assert "escrow ledger verify" in r.stderr
        assert "payload" not in r.stderr
        assert r.stdout == ""
