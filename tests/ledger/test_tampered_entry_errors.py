"""Commands that read a tampered entry say so: one sentence naming the entry, exit 1 and
the hint to audit the ledger; `escrow log` shows a rebuild verification's verdict.

Each tampering case edits the database directly, as an operator with database access
could (see test_ledger_tamper.py); every case runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import ASSETS, LedgerEnv, q, raw_sign, raw_sql

from escrow.errors import InputError, LedgerTamperError
from escrow.ledger.store import MAX_INDEX

DOCUMENTS = ASSETS / "documents"
VERDICTS = ("identical", "equivalent", "different", "not-reproduced", "unknown")


def append_builds(env: LedgerEnv, n: int, *, project: str = "app") -> list[int]:
    """Append ``n`` build manifests of ``project``; their indexes (entry 0 is the key event)."""
    with env.open() as lg:
        return [lg.append(env.envelope(i, project=project))[0].index for i in range(n)]


def set_envelope(env: LedgerEnv, index: int, data: bytes) -> None:
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "UPDATE ledger_entry SET envelope = :e WHERE idx = :i", e=data, i=index)


def delete_entry(env: LedgerEnv, index: int) -> None:
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "DELETE FROM ledger_entry WHERE idx = :i", i=index)


def assert_tamper_message(r: Any, index: int) -> None:
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "not valid JSON" not in r.stderr
    assert (
        f"The stored envelope of entry {index} cannot be read: it was tampered with or corrupted."
        in r.stderr
    )
    assert "escrow ledger verify" in r.stderr


# -- 1. an entry whose stored envelope is not JSON any more ---------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["pack", "--project", "app", "-o", "{tmp}/p.pdf"],
        ["logs", "1"],
        ["diff", "1", "2"],
        ["export", "--slsa", "1"],
    ],
    ids=["pack", "logs", "diff", "export-slsa"],
)
def test_commands_reading_a_non_json_envelope_report_tampering(
    cli_env: LedgerEnv, cli: Any, tmp_path: Path, args: list[str]
) -> None:
    """Regression: each exited 2 with `The envelope is not valid JSON (…)`."""
    assert append_builds(cli_env, 2) == [1, 2]
    set_envelope(cli_env, 1, b"this is not json")

    r = cli([a.replace("{tmp}", str(tmp_path)) for a in args])

    assert_tamper_message(r, 1)
    assert r.stdout == ""
    assert not (tmp_path / "p.pdf").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"this is not json",
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: json.dumps({**json.loads(data), "payload": "/w=="}).encode(),  # not JSON
    ],
    ids=["not-json", "truncated", "payload-not-json"],
)
def test_statement_of_a_damaged_stored_envelope_is_a_tamper_error(
    env: LedgerEnv, damage: Any
) -> None:
    (index,) = append_builds(env, 1)
    with env.open() as lg:
        data = lg.get(index).envelope
    set_envelope(env, index, damage(data))

    with env.open() as lg:
        entry = lg.get(index)
    with pytest.raises(LedgerTamperError) as caught:
        entry.statement()

    assert caught.value.exit_code == 1
    assert caught.value.index == index
    assert caught.value.kind == "edited"
    assert f"entry {index}" in caught.value.diagnostics()
    assert "escrow ledger verify" in caught.value.diagnostics()


def test_statement_of_an_intact_entry_is_unchanged(env: LedgerEnv) -> None:
    (index,) = append_builds(env, 1)
    with env.open() as lg:
        entry = lg.get(index)
    assert entry.statement()["predicate"]["build"]["project"] == "app"


# -- 2. a row deleted from the middle of the log --------------------------------------------


def test_show_of_a_deleted_entry_is_tampering(cli_env: LedgerEnv, cli: Any) -> None:
    """Regression: exit 2, `The ledger has no entry 5 (it holds 13 entries, from 0).`"""
    append_builds(cli_env, 12)  # entries 0..12
    delete_entry(cli_env, 5)

    for args in (["show", "5"], ["show", "5", "--json"]):
        r = cli(args)
        assert r.exit_code == 1, r.stdout + r.stderr
        assert r.stdout == ""
        assert "has no entry" not in r.stderr
        missing = "Entry 5 is missing from the ledger's log of 13 entries: its row was deleted."
        assert missing in r.stderr
        assert "escrow ledger verify" in r.stderr


def test_get_of_a_deleted_entry_raises_a_tamper_error(env: LedgerEnv) -> None:
    append_builds(env, 12)
    delete_entry(env, 5)
    with env.open() as lg:
        with pytest.raises(LedgerTamperError) as caught:
            lg.get(5)
        assert lg.get(6).index == 6  # its neighbours are still read
    assert caught.value.index == 5
    assert caught.value.kind == "deleted"


@pytest.mark.parametrize("index", [13, 14, MAX_INDEX, MAX_INDEX + 1, 2**64])
def test_an_index_at_or_past_the_size_stays_an_input_error(
    cli_env: LedgerEnv, cli: Any, index: int
) -> None:
    append_builds(cli_env, 12)
    delete_entry(cli_env, 5)  # tampering elsewhere does not change the answer
    with cli_env.open() as lg:
        with pytest.raises(InputError, match=r"has no entry"):
            lg.get(index)
    r = cli(["show", str(index)])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert f"The ledger has no entry {index} (it holds 13 entries, from 0)." in r.stderr


# -- 3. `escrow log` shows the verdict of a rebuild verification ----------------------------


def rebuild_statement(verdict: str, original: int, leaf_hash: str, image_id: str) -> Any:
    doc = json.loads((DOCUMENTS / f"rebuild-verification.{verdict}.json").read_text())
    st = copy.deepcopy(doc)
    st["predicate"]["original"].update(index=original, leafHash=leaf_hash, imageId=image_id)
    st["predicate"]["project"] = "app"
    st["subject"][0]["digest"]["sha256"] = image_id.removeprefix("sha256:")
    assert st["predicate"]["verdict"]["overall"] == verdict
    return st


def test_log_shows_the_verdict_of_rebuild_verifications(cli_env: LedgerEnv, cli: Any) -> None:
    """Regression: the STATUS column was empty for rebuild verifications."""
    (build,) = append_builds(cli_env, 1)
    with cli_env.open() as lg:
        original = lg.get(build)
        assert original.image_id is not None
        for verdict in VERDICTS:
            st = rebuild_statement(verdict, build, original.leaf_hash, original.image_id)
            lg.append(raw_sign(st, cli_env.build_key))

    r = cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    rows = r.json()["entries"]
    assert [row["status"] for row in rows[build:]] == ["succeeded", *VERDICTS]
    # the JSON rows keep every field they had
    assert set(rows[-1]) == {
        "index",
        "leaf_hash",
        "kind",
        "project",
        "image_id",
        "status",
        "signer",
        "integrated_at",
    }

    r = cli(["log", "--kind", "rebuild-verification"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("STATUS")
    assert [line.split()[-1] for line in lines[1:]] == list(VERDICTS)


def test_log_still_lists_a_damaged_rebuild_verification(cli_env: LedgerEnv, cli: Any) -> None:
    (build,) = append_builds(cli_env, 1)
    with cli_env.open() as lg:
        original = lg.get(build)
        assert original.image_id is not None
        st = rebuild_statement("identical", build, original.leaf_hash, original.image_id)
        rb = lg.append(raw_sign(st, cli_env.build_key))[0].index
    set_envelope(cli_env, rb, b"this is not json")

    r = cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"][rb]["status"] == "unreadable"
