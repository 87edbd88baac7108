"""escrow pack and escrow pack verify, end to end on a real ledger, real PDFs and poppler."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.types import AUDIT_PACK

from .conftest import PackLedger, pdftotext
from .synth import manifest_variant

GENERATED = "2026-12-04T16:00:00Z"

# escrow/ledger/store.py (not ours) calls SQLAlchemy's deprecated Result.tuples();
# narrow exception until it is fixed there.
pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def make_pack(cli: Any, out: Path, *args: str) -> dict[str, Any]:
    r = cli(["pack", *args, "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    return dict(r.json())


def verify(cli: Any, pdf: Path, *args: str) -> Any:
    return cli(["pack", "verify", str(pdf), *args, "--json"])


def test_pack_json_result_ledger_entry_and_text(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    builds = [pack_ledger.add(i) for i in range(3)]
    other = pack_ledger.add(9, project="other")
    out = tmp_path / "out" / "pack.pdf"
    res = make_pack(cli, out, "--project", "example", "--requester", "ACME Escrow Agents")

    assert set(res) >= {"path", "pages", "sha256", "entries", "index", "leaf_hash"}
    assert Path(res["path"]) == out and out.is_file()
    assert not [p for p in out.parent.iterdir() if p.name != "pack.pdf"], "temp file left behind"
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert res["entries"] == [e.index for e in builds]
    assert res["pages"] >= 5

    # the pack statement is on record, its subject the signed file
    entry = pack_ledger.ledger.get(res["index"])
    assert entry.leaf_hash == res["leaf_hash"]
    st = entry.statement()
    assert st["predicateType"] == AUDIT_PACK
    assert st["subject"][0]["digest"]["sha256"] == res["sha256"]
    assert st["predicate"]["scope"]["entries"] == res["entries"]
    assert st["predicate"]["requester"] == "ACME Escrow Agents"

    text = pdftotext(out)
    for b in builds:
        p = b.statement()["predicate"]
        assert p["image"]["id"] in text
        for layer in p["layers"]:
            assert layer["diffId"] in text, layer["diffId"]
        assert b.leaf_hash in text
    assert other.statement()["predicate"]["image"]["id"] not in text
    assert "ACME Escrow Agents" in text
    assert st["predicate"]["packId"] in text
    for heading in (
        "2. Summary",
        "3. Control mapping",
        "4. Index of builds",
        "5. Builds",
        "6. Keys in force",
        "7. Ledger checkpoint",
        "8. How to verify this pack",
        "SOC 2 CC8.1",
        "A.8.32",
        "PS.3.1",
    ):
        assert heading in text
    assert "Not checked" in text


def test_metadata_bookmarks_and_page_numbers(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "p.pdf"
    res = make_pack(cli, out, "--project", "example")
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True).stdout
    pack_id = pack_ledger.ledger.get(res["index"]).statement()["predicate"]["packId"]
    assert re.search(rf"Title:\s+Audit pack {pack_id}", info)
    assert re.search(r"Author:\s+escrow", info)
    assert re.search(r"Subject:\s+Signed audit pack", info)
    assert "CreationDate:" in info
    assert re.search(r"Page size:\s+595.276 x 841.89 pts \(A4\)", info)
    text = pdftotext(out)
    assert f"Page 1 of {res['pages']}" in text
    assert f"Page {res['pages']} of {res['pages']}" in text
    assert text.count(pack_id) >= res["pages"]  # running header on every page but the cover
    dests = subprocess.run(
        ["pdfinfo", "-dests", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert "entry-1" in dests and "summary" in dests  # the table of contents' link targets
    titles = outline_titles(out)
    assert titles[:2] == ["1. Cover", "2. Summary"]
    assert "8. How to verify this pack" in titles
    assert "Entry 1 — example — succeeded" in titles


def outline_titles(pdf: Path) -> list[str]:
    """The titles of the PDF's bookmarks (outline), depth first."""
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils.reader import PdfFileReader

    with pdf.open("rb") as f:
        root = PdfFileReader(f, strict=False).root
        out: list[str] = []

        def walk(node: Any) -> None:
            while node is not None:
                node = node.get_object()
                out.append(str(node["/Title"]))
                if "/First" in node:
                    walk(node["/First"])
                node = node.get("/Next")

        walk(root["/Outlines"]["/First"])
    return out


def test_pdfsig_reports_valid_and_attachments_extract(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    builds = [pack_ledger.add(i) for i in range(2)]
    out = tmp_path / "p.pdf"
    make_pack(cli, out, "--project", "example")
    sig = subprocess.run(["pdfsig", str(out)], capture_output=True, text=True).stdout
    assert "Signature is Valid" in sig, sig
    assert "Total document signed" in sig

    ex = tmp_path / "x"
    ex.mkdir()
    subprocess.run(["pdfdetach", "-saveall", "-o", str(ex), str(out)], check=True)
    names = sorted(p.name for p in ex.iterdir())
    assert names == sorted(
        [
            "envelopes.jsonl",
            "inclusion-proofs.json",
            "checkpoint.txt",
            "verifier-key.txt",
            "signer-keys.json",
            "pack-statement.json",
        ]
    )
    lines = (ex / "envelopes.jsonl").read_bytes().splitlines()
    proofs = json.loads((ex / "inclusion-proofs.json").read_text())
    by_index = {p["index"]: line for p, line in zip(proofs["proofs"], lines, strict=True)}
    for b in builds:
        assert by_index[b.index] == b.envelope  # exactly the stored leaf bytes
    from escrow.ledger import checkpoint, merkle

    cp = checkpoint.verify_checkpoint(
        (ex / "checkpoint.txt").read_text(), (ex / "verifier-key.txt").read_text().strip()
    )
    # the log's leaves, recomputed from the stored bytes by RFC 9162 reference code
    from tests.ledger.test_independent_reference import leaf_hash as ref_leaf_hash
    from tests.ledger.test_independent_reference import mth as ref_mth
    from tests.ledger.test_independent_reference import path as ref_path

    leaves = [ref_leaf_hash(pack_ledger.ledger.get(i).envelope) for i in range(cp.size)]
    assert cp.root == ref_mth(leaves)
    assert {b.index for b in builds} <= {p["index"] for p in proofs["proofs"]}
    for p, line in zip(proofs["proofs"], lines, strict=True):
        leaf = merkle.leaf_hash(line)
        assert leaf == leaves[p["index"]]
        hashes = [bytes.fromhex(h) for h in p["hashes"]]
        assert hashes == ref_path(p["index"], leaves), p["index"]
        assert merkle.verify_inclusion(leaf, p["index"], cp.size, hashes, cp.root)
    keys = json.loads((ex / "signer-keys.json").read_text())
    assert builds[0].signer in {k["keyid"] for k in keys}


def test_pack_verify_passes_and_names_a_wrong_trust_anchor(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "p.pdf"
    make_pack(cli, out, "--project", "example")
    cert = pack_ledger.home / "keys" / "pack.cert.pem"
    r = verify(cli, out, "--trust", str(cert))
    assert r.exit_code == 0, r.stderr
    rep = r.json()
    assert rep["ok"] is True
    names = [c["name"] for c in rep["checks"]]
    assert names == [
        "pdf signature",
        "attachments",
        "checkpoint",
        "inclusion proofs",
        "signer keys",
        "envelope signatures",
        "pack statement",
        "printed digests",
        "verdict",
    ]
    assert all(c["ok"] for c in rep["checks"])

    # another certificate as the trust anchor: the signature is valid, but not trusted
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from escrow.pack.sign import self_signed_certificate

    other = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "someone else")
    other_pem = tmp_path / "other.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    r = verify(cli, out, "--trust", str(other_pem))
    assert r.exit_code == 1
    assert "pdf signature" in r.stderr and "does not chain" in r.stderr


def _gap(data: bytes) -> tuple[int, int]:
    m = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", data)
    assert m
    return int(m.group(2)), int(m.group(3))


@pytest.fixture(scope="module")
def signed_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One genuine signed pack, made once for the tampering cases."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    from .conftest import run_escrow

    tmp = tmp_path_factory.mktemp("signed-pack")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(tmp / "home"))
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            mp.delenv(var, raising=False)
        assert run_escrow(["init"]) == 0
        settings = load_settings()
        with Ledger.open(settings) as ledger:
            key = SigningKey.load(settings.key_path, settings.passphrase)
            ledger.append(sign_statement(manifest_variant(0), key))
        out = tmp / "p.pdf"
        assert run_escrow(["pack", "--project", "example", "-o", str(out)]) == 0
        assert run_escrow(["pack", "verify", str(out)]) == 0
        yield out


@pytest.mark.parametrize(
    "where",
    ["header", "first-third", "middle", "signature-der", "signature-padding", "last"],
)
def test_one_byte_change_anywhere_fails(
    signed_pack: Path, cli: Any, tmp_path: Path, where: str
) -> None:
    data = bytearray(signed_pack.read_bytes())
    start, end = _gap(bytes(data))
    pos = {
        "header": 5,
        "first-third": len(data) // 3,
        "middle": len(data) // 2,
        "signature-der": start + 41,
        "signature-padding": end - 3,
        "last": len(data) - 3,
    }[where]
    if start <= pos < end:  # inside the hex string: change to another hex digit
        data[pos] = ord("1") if data[pos] != ord("1") else ord("2")
    else:
        data[pos] ^= 0x01
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(data))
    r = verify(cli, bad)
    assert r.exit_code == 1, (where, r.stdout)
    assert "fails verification" in r.stderr
    assert r.json()["ok"] is False


def test_failed_build_rebuild_verdict_and_revoked_key(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = pack_ledger.add(0)
    failed = pack_ledger.add(1, status="failed")
    moved = pack_ledger.add(2, base_image_id="sha256:" + "ab" * 32)
    p = ok.statement()["predicate"]
    rebuild = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "escrow-example/app:latest", "digest": {"sha256": p["image"]["id"][7:]}}
        ],
        "predicateType": "https://escrow.dev/rebuild-verification/v1",
        "predicate": {
            "original": {"index": ok.index, "leafHash": ok.leaf_hash, "imageId": p["image"]["id"]},
            "project": "example",
            "rebuild": {
                "imageId": "sha256:" + "cd" * 32,
                "layers": [],
                "builder": {"id": "rebuilder"},
                "startedOn": "2026-12-02T10:00:00Z",
                "finishedOn": "2026-12-02T10:00:05Z",
            },
            "verdict": {
                "overall": "different",
                "layers": [
                    {
                        "index": 2,
                        "original": p["layers"][2]["diffId"],
                        "rebuilt": "sha256:" + "ef" * 32,
                        "verdict": "different",
                        "differences": [{"path": "built-marker-file", "kind": "content"}],
                    }
                ],
            },
        },
    }
    pack_ledger.add_statement(rebuild)
    pack_ledger.ledger.revoke_key(ok.signer, "laptop lost")
    # the revoked key cannot sign the pack statement: the pack is refused before it is
    # rendered (exit 3, as `escrow build` with that key; it was exit 1 after the rendering),
    # and nothing is written
    out = tmp_path / "p.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out)])
    assert r.exit_code == 3 and "is revoked in the ledger" in r.stderr, r.stderr
    assert "keys rotate --name build" in r.stderr and "make the pack again" in r.stderr
    assert not out.exists() and list(tmp_path.glob(".p.pdf*")) == []
    from escrow.signing.keys import SigningKey

    new_key = SigningKey.generate()
    new_key.save(tmp_path / "new.key.pem")
    pack_ledger.ledger.register_key(new_key.public, "build-2")
    monkeypatch.setenv("ESCROW_KEY", str(tmp_path / "new.key.pem"))
    res = make_pack(cli, out, "--project", "example")
    assert res["entries"] == [ok.index, failed.index, moved.index]
    text = pdftotext(out)
    assert "different" in text and "built-marker-file" in text
    assert "Failed builds 1" in text or re.search(r"Failed builds\s+1", text)
    assert "failed" in text
    assert "now revoked" in text
    assert "changed between entry" in text
    assert "Verified, with findings" in text
    st = pack_ledger.ledger.get(res["index"]).statement()
    assert st["predicate"]["summary"]["rebuilds"]["different"] == 1
    assert st["predicate"]["summary"]["failed"] == 1
    # the evidence still verifies: the entries were signed before the revocation
    r = verify(cli, out)
    assert r.exit_code == 0, r.stdout


def test_scope_by_entries_and_dates(pack_ledger: PackLedger, cli: Any, tmp_path: Path) -> None:
    e = [pack_ledger.add(i) for i in range(4)]
    res = make_pack(cli, tmp_path / "a.pdf", "--entries", f"{e[0].index},{e[2].index}-{e[3].index}")
    assert res["entries"] == [e[0].index, e[2].index, e[3].index]
    empty = cli(
        ["pack", "--project", "example", "--until", "2000-01-01", "-o", str(tmp_path / "b")]
    )
    assert empty.exit_code == 2, empty.stderr  # nothing in scope: refused, not an empty pack
    res = make_pack(cli, tmp_path / "c.pdf", "--project", "example", "--since", "2000-01-01")
    assert res["entries"] == [x.index for x in e]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "example"], "-o FILE.pdf"),
        (["--entries", "3-x", "-o", "x.pdf"], "entry list"),
        (["--since", "yesterday", "-o", "x.pdf"], "--since"),
        (["--entries", "999", "-o", "x.pdf"], "no entry 999"),
    ],
    ids=["no-output", "bad-entries", "bad-date", "unknown-entry"],
)
def test_usage_errors_exit_2(
    pack_ledger: PackLedger, cli: Any, args: list[str], message: str
) -> None:
    r = cli(["pack", *args])
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_verify_a_file_that_is_not_a_pack(cli: Any, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7\nnot really\n%%EOF\n")
    r = cli(["pack", "verify", str(junk)])
    assert r.exit_code == 1
    assert "pdf signature" in r.stderr
    r = cli(["pack", "verify", str(tmp_path / "missing.pdf")])
    assert r.exit_code == 2


def test_a_pack_with_no_build_in_scope_is_refused(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    """Regression: an empty scope gave a 'verified' pack of 0 builds (fail closed instead)."""
    out = tmp_path / "empty.pdf"
    r = cli(["pack", "--project", "nothing-recorded", "-o", str(out)])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "No recorded build is in the scope" in r.stderr
    assert not out.exists()
    assert cli(["log", "--json"]).json()["size"] == 1  # only the key event; nothing recorded


def test_keys_section_lists_the_keys_in_force_during_the_period(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A key revoked before the period and unused in it is not 'in force'; the signer is."""
    import time
    from datetime import UTC, datetime

    from escrow.signing.keys import SigningKey

    old = SigningKey.generate()
    pack_ledger.ledger.register_key(old.public, "old")
    pack_ledger.ledger.revoke_key(old.keyid, "replaced")
    time.sleep(0.05)
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.05)
    build = pack_ledger.add(1)
    out = tmp_path / "period.pdf"
    make_pack(cli, out, "--project", "example", "--since", since)
    text = " ".join(pdftotext(out).split())
    keys_part = text.split("Signing keys in force at some time")[1].split("7. Ledger")[0]
    assert build.signer[:16] in keys_part.replace(" ", "")
    assert old.keyid[:16] not in keys_part.replace(" ", "")
    everything = tmp_path / "all.pdf"
    make_pack(cli, everything, "--project", "example")
    all_text = " ".join(pdftotext(everything).split())
    all_keys = all_text.split("Signing keys in force at some time")[1].split("7. Ledger")[0]
    assert old.keyid[:16] in all_keys.replace(" ", "")


def test_a_pack_that_cannot_be_written_is_refused_before_rendering(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """Regression: -o under a file rendered the whole pack, then failed with a traceback."""
    pack_ledger.add(1)
    size = cli(["log", "--json"]).json()["size"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = cli(["pack", "--project", "example", "-o", str(blocker / "pack.pdf")])
    assert r.exit_code == 2
    assert f"Cannot write the pack to {blocker / 'pack.pdf'}: {blocker} is a file" in r.stderr
    assert cli(["log", "--json"]).json()["size"] == size  # nothing recorded


def test_labels_given_on_the_command_line_are_listed_with_the_inputs(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    st = manifest_variant(1)
    secret = {"name": "DEPLOY_TOKEN", "secret": True, "salt": "ab" * 16, "sha256": "cd" * 32}
    st["predicate"]["inputs"]["labels"] = [{"name": "tier", "value": "gold-tier"}, secret]
    pack_ledger.add_statement(st)
    out = tmp_path / "labels.pdf"
    make_pack(cli, out, "--project", "example")
    text = " ".join(pdftotext(out).split())
    assert "Label (--label)" in text
    assert "tier gold-tier" in text
    assert "DEPLOY_TOKEN secret salt " + "ab" * 16 in text
    assert verify(cli, out).exit_code == 0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("missing", "Cannot read the trusted certificate"),
        ("text", "is not an X.509 certificate."),
        ("public-key", "holds a key, not a certificate."),
    ],
)
def test_a_trust_anchor_that_is_not_a_certificate_is_one_sentence(
    signed_pack: Path, cli: Any, tmp_path: Path, given: str, message: str
) -> None:
    """Regression: `--trust` of a missing file, a text file or a public key passed on the
    library's own words ("[Errno 2] …", "ParseError { kind: UnexpectedTag … }")."""
    from escrow.signing.keys import SigningKey

    trust = tmp_path / f"{given}.pem"
    if given == "text":
        trust.write_text("# not a certificate\n")
    elif given == "public-key":
        trust.write_text(SigningKey.generate().public.pem())
    r = cli(["pack", "verify", str(signed_pack), "--trust", str(trust)])
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert given == "missing" or "--trust takes" in r.stderr
    assert "Errno" not in r.stderr and "ParseError" not in r.stderr and r.stdout == ""


def test_a_key_retired_then_revoked_shows_both_events_as_they_happened(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The pack's key events came from the key's last state: a key retired and later
    revoked showed the revocation first and both with the revocation's reason and index."""
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    from .synth import manifest_variant

    ci = SigningKey.generate()
    pack_ledger.ledger.register_key(ci.public, "ci")
    pack_ledger.ledger.append(sign_statement(manifest_variant(1), ci))
    retired = pack_ledger.ledger.retire_key(ci.keyid, reason="moved to an HSM")
    revoked = pack_ledger.ledger.revoke_key(ci.keyid, "old disk sold")
    out = tmp_path / "keys.pdf"
    make_pack(cli, out, "--project", "example")
    ex = tmp_path / "att"
    ex.mkdir()
    subprocess.run(["pdfdetach", "-saveall", "-o", str(ex), str(out)], check=True)
    keys = {k["keyid"]: k for k in json.loads((ex / "signer-keys.json").read_text())}
    events = [(e["event"], e["reason"], e["index"]) for e in keys[ci.keyid]["events"]]
    assert events[1:] == [
        ("retired", "moved to an HSM", retired.index),
        ("revoked", "old disk sold", revoked.index),
    ]
    assert events[0][0] == "added" and keys[ci.keyid]["status"] == "revoked"
    assert cli(["pack", "verify", str(out)]).exit_code == 0
