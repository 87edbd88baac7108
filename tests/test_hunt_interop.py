"""Interop hunt: what escrow emits, read by implementations escrow did not write.

- Checkpoints (C2SP signed-note) with Go's golang.org/x/mod/sumdb/note: a witness
  cosignature added by Go, origins Go accepts, and origins no signed note may hold
  (an ASCII control character: Go's ``note.Open`` refuses the whole note as malformed).
- RFC 9162 inclusion proofs recomputed here against the root Go opened.
- A signed pack made against a Go-cosigned checkpoint, validated by pyHanko and pdfsig.
- The ``date-time`` format of escrow's schemas, decided as ``jsonschema_rs`` decides it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.dsse import pae

ASSETS = Path(__file__).parent / "assets"
GOPATH = "/usr/share/gocode"

# A note tool on Go's golang.org/x/mod/sumdb/note (no escrow code):
#   generate NAME            print a signer key and its verifier key
#   cosign SKEY < note       add a signature, keeping the note's own (note.Sign)
#   open VKEY... < note      print the text when every key's signature verifies
NOTETOOL = r"""
package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	msg, _ := io.ReadAll(os.Stdin)
	switch os.Args[1] {
	case "generate":
		skey, vkey, err := note.GenerateKey(nil, os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(skey)
		fmt.Println(vkey)
	case "cosign":
		s, err := note.NewSigner(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "signer:", err)
			os.Exit(2)
		}
		n, err := note.Open(msg, note.VerifierList())
		if u, ok := err.(*note.UnverifiedNoteError); ok {
			n, err = u.Note, nil
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			os.Exit(1)
		}
		out, err := note.Sign(n, s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sign:", err)
			os.Exit(1)
		}
		os.Stdout.Write(out)
	case "open":
		var vs []note.Verifier
		for _, k := range os.Args[2:] {
			v, err := note.NewVerifier(k)
			if err != nil {
				fmt.Fprintln(os.Stderr, "verifier:", err)
				os.Exit(2)
			}
			vs = append(vs, v)
		}
		n, err := note.Open(msg, note.VerifierList(vs...))
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			os.Exit(1)
		}
		if len(n.Sigs) != len(vs) {
			fmt.Fprintln(os.Stderr, "verified", len(n.Sigs), "of", len(vs))
			os.Exit(1)
		}
		fmt.Print(n.Text)
	}
}
"""


@pytest.fixture(scope="module")
def notetool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not Path(GOPATH, "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail("Go and golang.org/x/mod are missing; scripts/test.sh installs them.")
    d = tmp_path_factory.mktemp("notetool")
    (d / "main.go").write_text(NOTETOOL)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(d / "cache")}
    env["GOFLAGS"] = ""
    subprocess.run(
        [go, "build", "-o", str(d / "notetool"), str(d / "main.go")], check=True, env=env
    )
    return d / "notetool"


def go(tool: Path, *args: str, note: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool), *args], input=note, capture_output=True, text=True)


# -- RFC 9162 §2.1.3.2, written from the RFC ----------------------------------------------
def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return r


# -- origins ------------------------------------------------------------------------------
def _home_with_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    # json.dumps writes a lone surrogate as the escape "\ud800", as a hand-edit would
    (home / "config.json").write_text(json.dumps({"origin": origin}))
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    return home


BAD_ORIGINS = [
    pytest.param("escrow.test/a\x01b", id="control-character"),
    pytest.param("escrow.test/\x7f", id="delete"),  # printed escaped: the key shown is not it
    pytest.param("escrow.test/\u202eevil", id="bidi-override"),
    pytest.param("escrow.test/\x1b[31mred", id="escape-sequence"),
    pytest.param("escrow.test/\ud800", id="lone-surrogate"),
]


@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_init_refuses_an_origin_no_signed_note_may_hold(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str
) -> None:
    """Before: a control character made checkpoints Go's note.Open refuses as malformed
    (escrow itself verified them), and a lone surrogate was a traceback (exit 1)."""
    home = _home_with_origin(tmp_path, monkeypatch, origin)
    r = cli(["init"])
    assert r.exit_code == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "log origin" in r.stderr and "control characters" in r.stderr, r.stderr
    assert sorted(p.name for p in home.iterdir()) == ["config.json"]  # nothing made


@pytest.fixture
def pg_url() -> Iterator[str]:
    from pgkit import fresh_pg_database

    yield from fresh_pg_database("escrow_hunt_interop")


def test_a_bad_origin_leaves_a_postgresql_ledger_unbound(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    """Before: the origin was stored in the database's ledger_meta before it was found
    unusable, so every later `escrow init` of that database failed on it, even with
    config.json corrected."""
    home = _home_with_origin(tmp_path, monkeypatch, "escrow.test/bad origin")
    monkeypatch.setenv("ESCROW_DB_URL", pg_url)
    r = cli(["init"])
    assert r.exit_code == 2, r.stderr
    assert "'escrow.test/bad origin'" in r.stderr
    (home / "config.json").write_text(json.dumps({"origin": "escrow.test/good"}))
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    assert cli(["ledger", "verifier-key"]).stdout.startswith("escrow.test/good+")


@pytest.mark.parametrize(
    "origin",
    ["escrow.例え.test/ledger", "escrow.test:8443/a~b;c=d@e%20f", "ledger"],
    ids=["non-ascii", "punctuation", "no-slash"],
)
def test_go_opens_checkpoints_of_unusual_valid_origins(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notetool: Path, origin: str
) -> None:
    _home_with_origin(tmp_path, monkeypatch, origin)
    assert cli(["init"]).exit_code == 0
    cp = cli(["ledger", "checkpoint", "--json"]).json()
    key = cli(["ledger", "verifier-key"]).stdout.strip()
    assert key == cp["verifier_key"]  # as printed, the key itself
    r = go(notetool, "open", key, note=cp["note"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [origin, str(cp["size"])]


# -- a witness cosignature, proofs, and a pack against the cosigned checkpoint -----------
def test_a_go_cosigned_checkpoint_proofs_and_the_pack_made_against_it(
    escrow_home: Path, cli: Any, tmp_path: Path, notetool: Path
) -> None:
    with warnings.catch_warnings():  # pyHanko's import-time deprecation warnings
        warnings.simplefilter("ignore")
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.validation import validate_pdf_signature
        from pyhanko_certvalidator import ValidationContext

    r = cli(["record", "--project", "interop", "-q", "--", "true"])
    assert r.exit_code == 0, r.stderr
    cp = cli(["ledger", "checkpoint", "--json"]).json()
    log_key = cli(["ledger", "verifier-key"]).stdout.strip()
    skey, witness_key = go(notetool, "generate", "witness.example/w1").stdout.split()

    text, sigs = go(notetool, "cosign", skey, note=cp["note"]).stdout.split("\n\n")
    log_sig, witness_sig = sigs.splitlines()
    assert log_sig.startswith("— " + cp["origin"] + " ")
    cosigned = f"{text}\n\n{witness_sig}\n{log_sig}\n"  # the log's last: order is not signed
    r = go(notetool, "open", witness_key, log_key, note=cosigned)
    assert r.returncode == 0, r.stderr
    origin, size, root_b64 = r.stdout.splitlines()
    root = base64.b64decode(root_b64)

    # every entry's leaf and inclusion proof lead to the root Go opened
    for index in range(int(size)):
        leaf = cli(["ledger", "leaf", str(index)]).stdout.encode()
        proof = cli(["ledger", "proof", str(index), "--json"]).json()
        leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
        assert proof["leaf_hash"] == leaf_hash.hex()
        path = [bytes.fromhex(h) for h in proof["proof"]]
        assert inclusion_root(index, int(size), leaf_hash, path) == root
        # the stored envelope, read as DSSE without escrow
        env = json.loads(leaf)
        payload = base64.b64decode(env["payload"], validate=True)
        assert base64.b64encode(payload).decode() == env["payload"]  # standard, padded
        assert env["payloadType"] == "application/vnd.in-toto+json"
        assert json.loads(payload)["_type"] == "https://in-toto.io/Statement/v1"
        expected = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
        assert pae(env["payloadType"], payload) == expected

    saved = tmp_path / "cosigned.txt"
    saved.write_text(cosigned)
    pdf = tmp_path / "pack.pdf"
    r = cli(["pack", "-q", "--since-checkpoint", str(saved), "-o", str(pdf)])
    assert r.exit_code == 0, r.stderr

    with pdf.open("rb") as f:
        (sig,) = PdfFileReader(f).embedded_signatures
        status = validate_pdf_signature(sig, ValidationContext(trust_roots=[sig.signer_cert]))
        assert status.intact and status.valid, status.pretty_print_details()
        assert status.coverage.name == "ENTIRE_FILE"
        assert status.modification_level.name == "NONE"
    out = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True).stdout
    assert "Signature is Valid" in out and "Total document signed" in out, out
    ex = tmp_path / "x"
    ex.mkdir()
    subprocess.run(["pdfdetach", "-saveall", "-o", str(ex), str(pdf)], check=True)
    # the pack's own checkpoint (with its key-events line) opens with Go too
    r = go(notetool, "open", log_key, note=(ex / "checkpoint.txt").read_text())
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == origin
    assert r.stdout.splitlines()[3].startswith("key-events ")


# -- the date-time format of the schemas --------------------------------------------------
def _manifest_with_start(started: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    doc["predicate"]["build"]["startedOn"] = started
    return doc


@pytest.mark.parametrize(
    ("started", "valid"),
    [
        ("2026-13-45T25:61:99Z", False),
        ("2026-02-30T10:00:00Z", False),
        ("2026-12-04T24:00:00Z", False),
        ("2026-12-04T15:44:33.123456Z", True),
        ("2026-12-31T23:59:60Z", True),  # a leap second (RFC 3339 §5.7)
        ("2028-02-29T00:00:00Z", True),
    ],
)
def test_date_time_format_is_checked_as_independent_validators_check_it(
    cli: Any, tmp_path: Path, escrow_home: Path, started: str, valid: bool
) -> None:
    """Before: jsonschema checks ``date-time`` only with rfc3339-validator installed, and
    escrow's verdict came from it: `escrow sign` signed a build manifest started on
    month 13, and `escrow export --slsa` then gave SLSA a startedOn no RFC 3339 reader
    takes."""
    import jsonschema_rs

    doc = _manifest_with_start(started)
    r = cli(["schema", "show", "build-manifest"])
    assert r.exit_code == 0
    rust = jsonschema_rs.Draft202012Validator(json.loads(r.stdout), validate_formats=True)
    assert rust.is_valid(doc) is valid
    src = tmp_path / "m.json"
    src.write_text(json.dumps(doc))
    r = cli(["schema", "validate", str(src)])
    assert r.exit_code == (0 if valid else 1), r.stdout + r.stderr
    out = tmp_path / "m.dsse.json"
    r = cli(["sign", str(src), "-o", str(out)])
    if valid:
        assert r.exit_code == 0, r.stderr
    else:
        assert r.exit_code == 2, r.stderr
        assert "/predicate/build/startedOn" in r.stderr and "date-time" in r.stderr
        assert not out.exists()
