"""A build whose envelope signature has no key ID (DSSE makes ``keyid`` optional; cosign
writes ``""``).  The ledger appends it (the signature is tried against every registered
key) and `escrow pack` packs it as verified; `pack verify` looked its key up by that empty
ID only and failed the pack it had just made: "no signer key valid at this index"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.collect import PackRequest, collect
from escrow.pack.evidence import attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import verify_pack
from escrow.signing.dsse import sign_statement
from escrow.signing.keys import SigningKey

from .conftest import PackLedger
from .synth import manifest_variant

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _pack(pack_ledger: PackLedger, path: Path) -> Path:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    collected = collect(
        pack_ledger.ledger, PackRequest(generated_at=WHEN, projects=("example",)), view
    )
    assert collected.view.overall.startswith("Verified"), collected.view.overall
    pdf = render_pdf(collected.view, attachments_for(collected), WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def _without_key_id(pack_ledger: PackLedger, n: int, key: SigningKey) -> None:
    env = sign_statement(manifest_variant(n), key)
    env = replace(env, signatures=[replace(s, keyid="") for s in env.signatures])
    pack_ledger.ledger.append(env)


def test_a_build_signed_without_a_key_id_verifies_in_its_pack(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    _without_key_id(pack_ledger, 1, pack_ledger.key)
    report = verify_pack(_pack(pack_ledger, tmp_path / "pack.pdf"))
    assert report.ok, report.first_failure
    sigs = next(c for c in report.checks if c.name == "envelope signatures")
    assert sigs.ok and "each signed by a key valid when appended" in sigs.detail
