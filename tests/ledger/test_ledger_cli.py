"""``escrow ledger …`` and ``escrow post`` through the CLI, on both databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, raw_sign
from test_independent_reference import consistency as ref_consistency
from test_independent_reference import leaf_hash as ref_leaf_hash
from test_independent_reference import mth as ref_mth
from test_independent_reference import path as ref_path

from escrow.ledger import merkle
from escrow.ledger.checkpoint import sign_checkpoint, verify_checkpoint
from escrow.signing.keys import SigningKey


@pytest.fixture
def home(cli_env: LedgerEnv) -> LedgerEnv:
    env = cli_env
    with env.open() as lg:
        for n in range(1, 6):
            lg.append(env.envelope(n))
    return env


def test_checkpoint_and_verifier_key(home: LedgerEnv, cli: Any) -> None:
    r = cli(["ledger", "checkpoint", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert set(doc) == {"origin", "size", "root", "note", "verifier_key"}
    with home.open() as lg:
        assert doc["size"] == lg.size() == 6 and doc["root"] == lg.root().hex()
        assert doc["verifier_key"] == lg.verifier_key()
    cp = verify_checkpoint(doc["note"], doc["verifier_key"])
    assert cp.root.hex() == doc["root"]
    r = cli(["ledger", "checkpoint"])
    assert r.exit_code == 0 and r.stdout == doc["note"]
    r = cli(["ledger", "verifier-key"])
    assert r.exit_code == 0 and r.stdout.strip() == doc["verifier_key"]


def test_the_checkpoint_of_an_earlier_size(home: LedgerEnv, cli: Any) -> None:
    """Every entry keeps the checkpoint it made: the one printed at size 3 is printed
    again, the same note, once the log has grown."""
    with home.open() as lg:
        at_3 = lg.checkpoint(3)
        assert (at_3.size, at_3.root) == (3, lg.root(3))
    r = cli(["ledger", "checkpoint", "--tree-size", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["note"] == at_3.note and r.json()["size"] == 3
    r = cli(["ledger", "checkpoint", "--tree-size", "3"])
    assert r.exit_code == 0 and r.stdout == at_3.note
    r = cli(["ledger", "checkpoint", "--tree-size", "99"])
    assert r.exit_code == 2 and "not between 1 and the log's size 6" in r.stderr


def test_leaf_prints_exact_bytes(home: LedgerEnv, cli: Any) -> None:
    with home.open() as lg:
        want = lg.get(3).envelope
    r = cli(["ledger", "leaf", "3"])
    assert r.exit_code == 0 and r.stdout.encode() == want
    escrow = Path(sys.executable).with_name("escrow")
    out = subprocess.run(
        [str(escrow), "ledger", "leaf", "3"], capture_output=True, env=dict(os.environ), check=True
    )
    assert out.stdout == want
    r = cli(["ledger", "leaf", "99"])
    assert r.exit_code == 2 and "no entry 99" in r.stderr


def _ref_leaves(home: LedgerEnv) -> list[bytes]:
    """The log's leaf hashes, recomputed from its entries' bytes (no escrow code)."""
    with home.open() as lg:
        return [ref_leaf_hash(lg.get(i).envelope) for i in range(lg.size())]


def test_proof(home: LedgerEnv, cli: Any) -> None:
    leaves = _ref_leaves(home)
    assert len(leaves) == 6
    for args, size in (
        (["ledger", "proof", "2", "--json"], 6),
        (["ledger", "proof", "2", "--tree-size", "4", "--json"], 4),
    ):
        r = cli(args)
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert set(doc) == {"index", "tree_size", "leaf_hash", "root", "proof"}
        assert doc["index"] == 2 and doc["tree_size"] == size
        # against an independent recomputation (RFC 9162 reference code)
        assert doc["leaf_hash"] == leaves[2].hex()
        assert doc["root"] == ref_mth(leaves[:size]).hex()
        assert doc["proof"] == [h.hex() for h in ref_path(2, leaves[:size])]
        assert merkle.verify_inclusion(
            bytes.fromhex(doc["leaf_hash"]),
            2,
            size,
            [bytes.fromhex(h) for h in doc["proof"]],
            bytes.fromhex(doc["root"]),
        )
    assert cli(["ledger", "proof", "7", "--json"]).exit_code == 2


def test_consistency(home: LedgerEnv, cli: Any, tmp_path: Path) -> None:
    r = cli(["ledger", "consistency", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert set(doc) == {"old_size", "new_size", "old_root", "new_root", "proof"}
    assert (doc["old_size"], doc["new_size"]) == (3, 6)
    # against an independent recomputation (RFC 9162 reference code)
    leaves = _ref_leaves(home)
    assert doc["old_root"] == ref_mth(leaves[:3]).hex()
    assert doc["new_root"] == ref_mth(leaves[:6]).hex()
    assert doc["proof"] == [h.hex() for h in ref_consistency(3, leaves[:6])]
    assert merkle.verify_consistency(
        3,
        6,
        bytes.fromhex(doc["old_root"]),
        bytes.fromhex(doc["new_root"]),
        [bytes.fromhex(h) for h in doc["proof"]],
    )
    doc = cli(["ledger", "consistency", "2", "5", "--json"]).json()
    assert (doc["old_size"], doc["new_size"]) == (2, 5)
    assert doc["old_root"] == ref_mth(leaves[:2]).hex()
    assert doc["new_root"] == ref_mth(leaves[:5]).hex()
    assert doc["proof"] == [h.hex() for h in ref_consistency(2, leaves[:5])]
    # an auditor's saved checkpoint, then the log grows
    saved = tmp_path / "saved.checkpoint"
    saved.write_text(cli(["ledger", "checkpoint"]).stdout)
    with home.open() as lg:
        lg.append(home.envelope(50))
        origin = lg.origin
    r = cli(["ledger", "consistency", "--from", str(saved), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["consistent"] is True and (doc["old_size"], doc["new_size"]) == (6, 7)
    # a checkpoint signed by another key
    other = tmp_path / "other.checkpoint"
    other.write_text(sign_checkpoint(origin, 6, bytes(32), SigningKey.generate(), origin))
    r = cli(["ledger", "consistency", "--from", str(other), "--json"])
    assert r.exit_code == 1 and "not signed by the log key" in r.stderr
    # a genuine signature over another history (a fork): the log does not extend it
    fork = tmp_path / "fork.checkpoint"
    fork.write_text(sign_checkpoint(origin, 6, bytes(32), home.log_key, origin))
    r = cli(["ledger", "consistency", "--from", str(fork), "--json"])
    assert r.exit_code == 1 and r.json()["consistent"] is False
    bigger = tmp_path / "bigger.checkpoint"
    bigger.write_text(sign_checkpoint(origin, 99, bytes(32), home.log_key, origin))
    assert cli(["ledger", "consistency", "--from", str(bigger)]).exit_code == 1
    assert cli(["ledger", "consistency"]).exit_code == 2


def test_verify_ok_then_tampered(home: LedgerEnv, cli: Any) -> None:
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["ok"] is True and r.json()["entries_checked"] == 6
    text_out = cli(["ledger", "verify"]).stdout
    assert text_out.startswith("OK: 6 entries, 6 signatures, 1 checkpoint; root "), text_out
    from sqlalchemy import create_engine, text

    engine = create_engine(home.settings.db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entry WHERE idx = 2"))
    engine.dispose()
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 1
    doc = r.json()
    assert doc["ok"] is False and doc["first_bad_index"] == 2
    assert doc["first_problem"]["kind"] == "deleted"
    r = cli(["ledger", "verify"])
    assert r.exit_code == 1 and "entry 2" in r.stderr and "deleted" in r.stdout


def test_post_mixed_input(home: LedgerEnv, cli: Any, tmp_path: Path) -> None:
    good = [home.envelope(100 + i).to_bytes().decode() for i in range(3)]
    stranger = home.envelope(200, key=SigningKey.generate()).to_bytes().decode()
    lines = [good[0], "{not json", good[1], stranger, "", good[2]]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    r = cli(["post", str(src)])
    assert r.exit_code == 1, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 5
    assert out[0].startswith("appended 6 ") and out[2].startswith("appended 7 ")
    assert out[1].startswith("rejected line 2:") and out[3].startswith("rejected line 4:")
    assert "not signed by a key registered" in out[3]
    assert out[4].startswith("appended 8 ")
    with home.open() as lg:
        assert lg.size() == 9
    # posting again: the same entries, nothing new; JSON output; stdin
    r = cli(["post", "--json", "-"], input="\n".join(good) + "\n")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert [x["status"] for x in doc["results"]] == ["exists"] * 3
    assert [x["index"] for x in doc["results"]] == [6, 7, 8]
    assert (doc["appended"], doc["existing"], doc["rejected"]) == (0, 3, 0)
    # one pretty-printed JSON document
    single = json.dumps(json.loads(home.envelope(300).to_bytes()), indent=2)
    r = cli(["post", "--json"], input=single)
    assert r.exit_code == 0, r.stderr
    assert r.json()["results"][0]["status"] == "appended"
    invalid = manifest_without_project(home)
    r = cli(["post", "--json"], input=invalid)
    assert r.exit_code == 1
    res = r.json()["results"][0]
    assert res["status"] == "rejected" and "/predicate/build" in res["error"]
    assert cli(["post"], input="").exit_code == 2


def manifest_without_project(env: LedgerEnv) -> str:
    from ledger_helpers import manifest

    st = manifest(400)
    del st["predicate"]["build"]["project"]
    return raw_sign(st, env.build_key).to_bytes().decode()


def test_log_filters_by_every_indexed_column(home: LedgerEnv, cli: Any) -> None:
    """`escrow log` offers the ledger's queries: project, image, diff ID, signer, period."""
    from datetime import UTC, datetime, timedelta

    from ledger_helpers import diff_ids, manifest

    other = SigningKey.generate()
    with home.open() as lg:
        lg.register_key(other.public, "other")
        before = datetime.now(UTC)
        made = [
            lg.append(home.envelope(10, project="gamma"))[0],
            lg.append(home.envelope(11, project="gamma", key=other))[0],
        ]
        after = datetime.now(UTC)
        size = lg.size()

    def indexes(*args: str) -> list[int]:
        r = cli(["log", "--json", *args])
        assert r.exit_code == 0, r.stderr
        return [e["index"] for e in r.json()["entries"]]

    assert indexes("--project", "gamma") == [e.index for e in made]
    assert indexes("--image", made[0].image_id) == [made[0].index]
    assert indexes("--image", made[0].image_id.removeprefix("sha256:")) == [made[0].index]
    bare_diff = diff_ids(manifest(11))[1].removeprefix("sha256:")
    assert indexes("--diff-id", bare_diff) == [made[1].index]
    r = cli(["log", "--image", "abcdef123456"])  # no such short ID in the engine either
    assert r.exit_code == 2, r.stderr
    assert "no image ID recorded in the ledger begins with it" in r.stderr
    assert indexes("--diff-id", diff_ids(manifest(11))[1]) == [made[1].index]
    assert len(indexes("--diff-id", diff_ids(manifest(11))[0])) == 7  # the shared base layer
    assert indexes("--signer", other.keyid) == [made[1].index]
    assert indexes("--signer", home.build_key.keyid, "--project", "gamma") == [made[0].index]
    assert indexes("--kind", "key-event") == [0, made[0].index - 1]
    assert indexes("--kind", "build-manifest", "--project", "gamma") == [e.index for e in made]
    assert indexes("--kind", "audit-pack") == []
    stamp = before.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert indexes("--since", stamp, "--project", "gamma") == [e.index for e in made]
    # --until is exclusive; a bare date includes its whole day
    assert indexes("--since", stamp, "--until", made[1].integrated_at.isoformat()) == [
        made[0].index
    ]
    today = after.strftime("%Y-%m-%d")
    assert indexes("--since", stamp, "--until", today) == list(range(made[0].index, size))
    tomorrow = (after + timedelta(days=1)).strftime("%Y-%m-%d")
    assert indexes("--since", tomorrow) == []
    r = cli(["log", "--since", "yesterday"])
    assert r.exit_code == 2 and "--since 'yesterday' is not a date" in r.stderr
    later = (after + timedelta(days=2)).strftime("%Y-%m-%d")
    r = cli(["log", "--since", later, "--until", today])
    assert r.exit_code == 2 and "--since is after --until" in r.stderr


def test_log_prints_a_table_with_a_header(home: LedgerEnv, cli: Any) -> None:
    r = cli(["log", "--limit", "2"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "INDEX",
        "INTEGRATED",
        "(UTC)",
        "KIND",
        "PROJECT",
        "IMAGE",
        "STATUS",
    ]
    assert len(lines) == 3
    assert lines[1].split()[:3] == ["0", lines[1].split()[1], "key-event"]
    with home.open() as lg:
        first = lg.get(1)
    row = lines[2].split()
    assert row[0] == "1" and row[2:4] == ["build-manifest", "proj"]
    assert row[4] == first.image_id.removeprefix("sha256:")[:12] and row[5] == "succeeded"
    r = cli(["log", "--project", "nobody"])
    assert r.exit_code == 0 and r.stdout == "" and "No entries." in r.stderr


def test_counts_in_messages_agree_with_their_number(home: LedgerEnv, cli: Any) -> None:
    from escrow.text import count

    assert count(1, "entry", "entries") == "1 entry" and count(0, "build") == "0 builds"
    r = cli(["post", "-"], input='{"payload": "x"}\n')
    assert r.exit_code == 1 and "1 of 1 envelope was rejected." in r.stderr
    r = cli(["show", "99"])
    assert r.exit_code == 2 and "(it holds 6 entries, from 0)" in r.stderr
