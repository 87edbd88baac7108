"""pack verify checks the pages against the evidence, not only the PDF signature.

These packs are signed with the genuine pack key, so the PDF signature is valid:
what must fail is the comparison of what is printed with what is embedded.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import Collected, PackRequest, collect
from escrow.pack.evidence import attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import verify_pack

from .conftest import PackLedger

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _collect(pack_ledger: PackLedger) -> tuple[Any, Collected]:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    collected = collect(
        pack_ledger.ledger, PackRequest(generated_at=WHEN, projects=("example",)), view
    )
    return signer, collected


def _write(path: Path, signer: Any, view: Any, collected: Collected) -> Path:
    pdf = render_pdf(view, attachments_for(collected), WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def test_genuine_pack_made_by_the_library_verifies(pack_ledger: PackLedger, tmp_path: Path) -> None:
    pack_ledger.add(0)
    signer, collected = _collect(pack_ledger)
    out = _write(tmp_path / "ok.pdf", signer, collected.view, collected)
    report = verify_pack(out)
    assert report.ok, report.first_failure


def test_a_printed_image_id_that_is_not_the_recorded_one_fails(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _collect(pack_ledger)
    b = collected.view.builds[0]
    fake = dataclasses.replace(b, image_id="sha256:" + "66" * 32)
    view = dataclasses.replace(collected.view, builds=(fake,))
    report = verify_pack(_write(tmp_path / "bad.pdf", signer, view, collected))
    assert not report.ok
    failed = report.first_failure
    assert failed is not None and failed.name == "printed digests"
    assert b.image_id in failed.detail  # the recorded image ID is not shown


def test_a_printed_digest_found_in_no_evidence_fails(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _collect(pack_ledger)
    b = collected.view.builds[0]
    extra = dataclasses.replace(b.layers[0], diff_id="sha256:" + "77" * 32, index=9)
    fake = dataclasses.replace(b, layers=(*b.layers, extra))
    view = dataclasses.replace(collected.view, builds=(fake,))
    report = verify_pack(_write(tmp_path / "bad.pdf", signer, view, collected))
    failed = report.first_failure
    assert failed is not None and failed.name == "printed digests"
    assert "77" * 32 in failed.detail


def test_an_envelope_replaced_in_the_evidence_fails(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    e = pack_ledger.add(0)
    signer, collected = _collect(pack_ledger)
    forged = sign_statement(e.statement(), SigningKey.generate()).to_bytes()
    envelopes = tuple(
        (i, forged if i == e.index else env) for i, env in collected.evidence.envelopes
    )
    evidence = dataclasses.replace(collected.evidence, envelopes=envelopes)
    bad = dataclasses.replace(collected, evidence=evidence)
    report = verify_pack(_write(tmp_path / "bad.pdf", signer, collected.view, bad))
    failed = report.first_failure
    assert failed is not None and failed.name == "inclusion proofs"
    assert f"entry {e.index}" in failed.detail
