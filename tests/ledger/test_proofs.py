"""escrow's proofs, leaves and checkpoints, checked by code escrow did not write.

The log is filled through ``escrow post`` with envelopes made by hand (test_independent_reference),
then every answer of ``escrow ledger leaf/proof/consistency/checkpoint/verifier-key`` is
recomputed from the leaf bytes with the RFC 9162 and C2SP reference code, across the
64-entry batch boundary the ledger stores subtree hashes at.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from ledger_helpers import LedgerEnv, manifest
from test_independent_reference import (
    consistency,
    dsse,
    leaf_hash,
    mth,
    note_key_hash,
    open_checkpoint,
    parse_verifier_key,
    path,
    public_pem,
    statement_bytes,
    verify_consistency,
    verify_inclusion,
)

SIZE = 70
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 66, 69, 70]


def _run(cli: Any, *args: str, input: bytes | None = None) -> Any:
    r = cli(list(args), input=input)
    assert r.exit_code == 0, (args, r.stdout, r.stderr)
    return r


@pytest.fixture
def filled(cli_env: LedgerEnv, cli: Any, tmp_path: Path) -> list[bytes]:
    """A log of SIZE entries appended by `escrow post`; the leaf hashes, recomputed."""
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    for name, key in (("other-ed", ed), ("other-p256", p256)):
        pem = tmp_path / f"{name}.pub.pem"
        pem.write_bytes(public_pem(key))
        _run(cli, "keys", "add", str(pem), "--name", name)
    start = int(_run(cli, "ledger", "checkpoint", "--json").json()["size"])
    lines = [
        json.dumps(dsse(ed if n % 2 else p256, statement_bytes(manifest(n, tag="r9"))))
        for n in range(SIZE - start)
    ]
    src = tmp_path / "envelopes.jsonl"
    src.write_text("\n".join(lines) + "\n")
    doc = _run(cli, "post", str(src), "--json").json()
    assert doc["appended"] == SIZE - start and doc["rejected"] == 0
    leaves = []
    for i in range(SIZE):
        raw = _run(cli, "ledger", "leaf", str(i)).stdout.encode("utf-8")
        leaves.append(leaf_hash(raw))
    for r in doc["results"]:
        assert bytes.fromhex(r["leaf_hash"]) == leaves[r["index"]]
    return leaves


def _indices(size: int) -> list[int]:
    if size <= 17:
        return list(range(size))
    return sorted({0, 1, size // 2, 31, 32, 62, 63, 64, size - 2, size - 1} & set(range(size)))


def test_inclusion_proofs_match_rfc_9162(filled: list[bytes], cli: Any) -> None:
    for size in SIZES:
        root = mth(filled[:size])
        for i in _indices(size):
            args = ["ledger", "proof", str(i), "--json"]
            if size != SIZE:
                args += ["--tree-size", str(size)]
            doc = _run(cli, *args).json()
            proof = [bytes.fromhex(h) for h in doc["proof"]]
            assert (doc["index"], doc["tree_size"]) == (i, size)
            assert bytes.fromhex(doc["leaf_hash"]) == filled[i]
            assert bytes.fromhex(doc["root"]) == root, (i, size)
            assert proof == path(i, filled[:size]), (i, size)
            assert verify_inclusion(i, size, filled[i], proof, root)


def test_consistency_proofs_match_rfc_9162(filled: list[bytes], cli: Any) -> None:
    for b in SIZES:
        for a in [0, *(s for s in SIZES if s <= b)]:
            doc = _run(cli, "ledger", "consistency", str(a), str(b), "--json").json()
            proof = [bytes.fromhex(h) for h in doc["proof"]]
            old, new = mth(filled[:a]), mth(filled[:b])
            assert (doc["old_size"], doc["new_size"]) == (a, b)
            assert bytes.fromhex(doc["old_root"]) == old and bytes.fromhex(doc["new_root"]) == new
            assert proof == consistency(a, filled[:b]), (a, b)
            assert verify_consistency(a, b, old, new, proof), (a, b)


def test_checkpoints_are_signed_notes_over_the_recomputed_roots(
    filled: list[bytes], cli: Any
) -> None:
    key = _run(cli, "ledger", "verifier-key").stdout.strip()
    name, khash, raw = parse_verifier_key(key)
    assert khash == hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    assert (
        key
        == f"{name}+{note_key_hash(name, raw).hex()}+" + base64.b64encode(b"\x01" + raw).decode()
    )
    latest = _run(cli, "ledger", "checkpoint", "--json").json()
    assert latest["verifier_key"] == key
    for size in SIZES:
        args = ["ledger", "checkpoint", "--json"]
        if size != SIZE:
            args += ["--tree-size", str(size)]
        doc = _run(cli, *args).json()
        origin, n, root, ext = open_checkpoint(doc["note"], key)
        assert (origin, n, root, ext) == (name, size, mth(filled[:size]), [])
        assert (doc["origin"], doc["size"], doc["root"]) == (origin, n, root.hex())
        # the text form is the note itself, byte for byte
        text = _run(cli, *[a for a in args if a != "--json"]).stdout
        assert text == doc["note"]
        sig_line = doc["note"].split("\n\n", 1)[1]
        assert sig_line.startswith("\u2014 " + name + " ") and sig_line.count("\n") == 1
        assert base64.b64decode(sig_line.split(" ")[2])[:4] == khash


def test_a_saved_checkpoint_is_extended(filled: list[bytes], cli: Any, tmp_path: Path) -> None:
    for size in (1, 16, 64, 65, SIZE):
        note = _run(cli, "ledger", "checkpoint", "--tree-size", str(size)).stdout
        saved = tmp_path / f"{size}.checkpoint"
        saved.write_text(note)
        doc = _run(cli, "ledger", "consistency", "--from", str(saved), "--json").json()
        assert doc["consistent"] is True
        proof = [bytes.fromhex(h) for h in doc["proof"]]
        assert verify_consistency(size, SIZE, mth(filled[:size]), mth(filled), proof)


GOPATH = "/usr/share/gocode"


def test_go_note_verifier_accepts_every_checkpoint_size(
    filled: list[bytes], cli: Any, tmp_path: Path
) -> None:
    # scripts/test.sh installs Go and golang.org/x/mod: without them this fails, never skips
    assert shutil.which("go"), "Go is not installed (scripts/test.sh installs golang-go)"
    assert Path(GOPATH, "src/golang.org/x/mod/sumdb/note").is_dir(), (
        "golang.org/x/mod is not installed (scripts/test.sh installs golang-golang-x-mod-dev)"
    )
    source = Path(__file__).resolve().parent.parent / "assets" / "noteverify" / "main.go"
    exe = tmp_path / "noteverify"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": ""}
    env["GOCACHE"] = str(tmp_path / "gocache")
    subprocess.run(["go", "build", "-o", str(exe), str(source)], check=True, env=env)
    key = _run(cli, "ledger", "verifier-key").stdout.strip()
    for size in (1, 2, 63, 64, 65, SIZE):
        note = _run(cli, "ledger", "checkpoint", "--tree-size", str(size)).stdout
        r = subprocess.run([str(exe), key], input=note.encode(), capture_output=True)
        assert r.returncode == 0, r.stderr
        origin, n, root = r.stdout.decode().splitlines()
        assert int(n) == size and base64.b64decode(root) == mth(filled[:size])
