"""The printed-scope check of ``escrow pack verify`` must not refuse an honest pack whose
cover wraps a hyphenated project name at its hyphen (``pdftotext`` joins the two lines
and drops the hyphen, as it does for any line that ends with one)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.collect import PackRequest

from .conftest import PackLedger, pdftotext
from .test_pack_verify_scope import _make, _verify, _write

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

PROJECTS = (
    "payments-gateway-settlement-reconciliation-service",
    "customer-identity-verification-and-onboarding-frontend",
    "warehouse-inventory-forecasting-batch-pipeline-worker",
)


def test_a_cover_scope_wrapped_at_a_hyphen_still_verifies(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    for i, project in enumerate(PROJECTS):
        pack_ledger.add(i, project=project)
    signer, collected = _make(
        pack_ledger,
        PackRequest(
            generated_at=WHEN,
            projects=PROJECTS,
            since=datetime(2026, 12, 1, tzinfo=UTC),
            until=datetime(2027, 1, 1, tzinfo=UTC),
        ),
    )
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "wrapped.pdf", signer, collected)
    text = "".join(pdftotext(pdf).split())
    # the premise: the cover's Scope cell wrapped at a hyphen, which pdftotext dropped
    assert "".join(collected.view.scope.describe().split()) not in text
    r = _verify(pdf, *[a for p in PROJECTS for a in ("--project", p)])
    assert r.exit_code == 0, r.stderr
