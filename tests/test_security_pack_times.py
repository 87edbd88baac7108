"""``pack verify`` and the operator-stated times of a pack (hostile-input review).

An entry's ``integratedAt`` (``inclusion-proofs.json``) and a key event's
``effectiveFrom`` in ``signer-keys.json`` are written by whoever made the pack, and the
pack key is the operator's: neither is signed by the log.  A key retired by the log
(a signed ``effectiveFrom``) must not be kept signing past that date by a pack that
states a later retirement in ``signer-keys.json``; stated append times that go back in
log order (the ledger's integration times never decrease) are a failed check; malformed
times are failed checks, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import PackRequest, collect
from escrow.pack.evidence import PROOFS, SIGNER_KEYS, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import verify_pack
from tests.conftest import run_cli
from tests.pack import conftest as _pack_conftest
from tests.pack.conftest import PackLedger

pack_ledger = _pack_conftest.pack_ledger  # the fixture: a ledger with the build key

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

Edit = Callable[[Any], Any]


def _pack(pl: PackLedger, path: Path, edits: dict[str, Edit]) -> Path:
    """A pack of ``pl``, with attachments changed by ``edits`` and re-signed with the
    operator's own pack key, as a dishonest operator can."""
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    collected = collect(pl.ledger, PackRequest(generated_at=WHEN, projects=("example",)), view)
    files = []
    for f in attachments_for(collected):
        if f.name in edits:
            doc = edits[f.name](json.loads(f.data))
            f = AttachmentFile(f.name, json.dumps(doc).encode(), f.description)
        files.append(f)
    pdf = render_pdf(collected.view, files, WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    shutil.copy(pl.home / "keys" / "pack.cert.pem", path.parent / "signer.pem")
    return path


@pytest.fixture
def retired_later(pack_ledger: PackLedger) -> PackLedger:
    """Entry 1 a build; the key retired from 2030 (entry 2, signed by the log key); two
    more builds (entries 3 and 4) signed by it before then."""
    pack_ledger.add(0)
    r = run_cli(["keys", "retire", "build", "--from", "2030-01-01"])
    assert r.exit_code == 0, r.stderr
    pack_ledger.add(1)
    pack_ledger.add(2)
    return pack_ledger


def _times(when: dict[int, Any]) -> Edit:
    def edit(doc: Any) -> Any:
        for p in doc["proofs"]:
            if p["index"] in when:
                p["integratedAt"] = when[p["index"]]
        return doc

    return edit


def _retirement_stated(value: Any) -> Edit:
    def edit(doc: Any) -> Any:
        for k in doc:
            for e in k["events"]:
                if e["event"] == "retired":
                    e["effectiveFrom"] = value
        return doc

    return edit


def _check(report: Any, name: str) -> Any:
    return next(c for c in report.checks if c.name == name)


def test_the_pack_cannot_move_a_signed_retirement_later(
    retired_later: PackLedger, tmp_path: Path
) -> None:
    """Entries 3 and 4 appended in 2031, after the signed retirement date: no
    ``effectiveFrom`` that ``signer-keys.json`` states keeps the key valid for them."""
    after = {3: "2031-01-01T00:00:00Z", 4: "2031-01-02T00:00:00Z"}
    plain = verify_pack(_pack(retired_later, tmp_path / "a.pdf", {PROOFS: _times(after)}))
    assert not _check(plain, "envelope signatures").ok
    moved = _pack(
        retired_later,
        tmp_path / "b.pdf",
        {PROOFS: _times(after), SIGNER_KEYS: _retirement_stated("2099-01-01T00:00:00Z")},
    )
    report = verify_pack(moved)
    sigs = _check(report, "envelope signatures")
    assert not sigs.ok, sigs.detail
    assert "entry 3" in sigs.detail
    r = run_cli(["pack", "verify", str(moved), "--trust", str(tmp_path / "signer.pem")])
    assert r.exit_code == 1, r.stderr


def test_stated_append_times_that_go_back_are_a_failed_check(
    retired_later: PackLedger, tmp_path: Path
) -> None:
    """The retirement event appended in 2031 (after its own date), the builds after it
    stated as appended in 2029: the ledger's integration times never decrease."""
    when = {2: "2031-01-01T00:00:00Z", 3: "2029-01-01T00:00:00Z", 4: "2029-01-02T00:00:00Z"}
    report = verify_pack(_pack(retired_later, tmp_path / "c.pdf", {PROOFS: _times(when)}))
    assert not report.ok
    inclusion = _check(report, "inclusion proofs")
    assert not inclusion.ok and "entry 3" in inclusion.detail, inclusion.detail


@pytest.mark.parametrize(
    "value",
    [
        12345,
        ["2029-01-01"],
        {"t": 1},
        True,
        "x" * 1_000_000,
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00",
        "2029-01-01T00:00:00",  # no time zone: UTC
        "",
    ],
    ids=["int", "list", "dict", "bool", "huge", "past-9999", "before-1", "naive", "empty"],
)
def test_malformed_times_are_checks_never_a_traceback(
    retired_later: PackLedger, tmp_path: Path, value: Any
) -> None:
    pdf = _pack(
        retired_later,
        tmp_path / "d.pdf",
        {PROOFS: _times({3: value, 4: value}), SIGNER_KEYS: _retirement_stated(value)},
    )
    r = run_cli(["pack", "verify", str(pdf), "--trust", str(tmp_path / "signer.pem")])
    assert r.exit_code in (0, 1), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
