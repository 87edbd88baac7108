"""``pack verify`` and a key retired from a later date (``keys retire --from``).

A retirement takes effect from the later of its signed ``effectiveFrom`` and its append;
until then the key still signs, and the ledger appends what it signs.  ``pack verify``
ended the key at the retirement event's index instead, so every build signed after the
event (and before the date) failed "no signer key valid at this index" in a pack that
``escrow pack`` itself called verified.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import PackRequest, collect
from escrow.pack.evidence import PROOFS, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import _valid_at, verify_pack
from escrow.signing.keys import SigningKey
from tests.conftest import run_cli

from .conftest import PackLedger

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _pack(pack_ledger: PackLedger, path: Path, *, strip_times: bool = False) -> Path:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    collected = collect(
        pack_ledger.ledger, PackRequest(generated_at=WHEN, projects=("example",)), view
    )
    assert collected.view.overall.startswith("Verified"), collected.view.overall
    files = attachments_for(collected)
    if strip_times:  # a pack made before proofs carried integratedAt
        files = [_without_times(f) if f.name == PROOFS else f for f in files]
    pdf = render_pdf(collected.view, files, WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", path.parent / "signer.pem")
    return path


def _without_times(f: AttachmentFile) -> AttachmentFile:
    doc = json.loads(f.data)
    for p in doc["proofs"]:
        p.pop("integratedAt", None)
    return AttachmentFile(f.name, json.dumps(doc).encode(), f.description)


@pytest.fixture
def retired_later(pack_ledger: PackLedger) -> PackLedger:
    """Entry 1 is a build; the key is then retired from 2030 (entry 2) and signs two more
    builds (entries 3 and 4), as it may until then."""
    pack_ledger.add(0)
    r = run_cli(["keys", "retire", "build", "--from", "2030-01-01"])
    assert r.exit_code == 0, r.stderr
    pack_ledger.add(1)
    pack_ledger.add(2)
    return pack_ledger


def test_builds_signed_before_the_retirement_date_verify(
    retired_later: PackLedger, tmp_path: Path
) -> None:
    pdf = _pack(retired_later, tmp_path / "pack.pdf")
    report = verify_pack(pdf)
    assert report.ok, report.first_failure
    sigs = next(c for c in report.checks if c.name == "envelope signatures")
    assert sigs.ok and "each signed by a key valid when appended" in sigs.detail
    r = run_cli(["pack", "verify", str(pdf), "--trust", str(tmp_path / "signer.pem")])
    assert r.exit_code == 0, r.stderr


def test_a_pack_without_append_times_is_bounded_by_its_generation(
    retired_later: PackLedger, tmp_path: Path
) -> None:
    """Proofs without ``integratedAt`` (older packs): every entry was appended before the
    pack was generated, which is before the retirement date."""
    report = verify_pack(_pack(retired_later, tmp_path / "old.pdf", strip_times=True))
    assert report.ok, report.first_failure


def _key(until: datetime | None, *, ended: int | None = 5) -> Any:
    return (SigningKey.generate().public, 1, ended, until)


def test_a_retired_key_is_valid_only_until_the_retirement_takes_effect() -> None:
    until = datetime(2030, 1, 1, tzinfo=UTC)
    before, after = datetime(2029, 12, 31, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC)
    assert _valid_at(_key(until), 3, after)  # before the retirement event: valid
    assert _valid_at(_key(until), 7, before)
    assert not _valid_at(_key(until), 7, after)
    assert not _valid_at(_key(until), 7, until)  # in force from that instant
    assert not _valid_at(_key(until), 7, None)  # no time to go by: not valid
    assert not _valid_at(_key(None), 7, before)  # revoked: never after the event
    assert not _valid_at(_key(until), 1, before)  # not before it was added
    assert _valid_at(_key(None, ended=None), 7, None)
