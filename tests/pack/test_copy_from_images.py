"""A build's page lists the images its ``COPY --from`` copied files from, and the pack
still verifies (their image IDs are vouched for by the embedded manifest)."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.collect import PackRequest

from .conftest import PackLedger, pdftotext
from .synth import manifest_variant
from .test_pack_verify_scope import _make, _verify, _write

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
COPIED = "sha256:" + "c0" * 32


def test_copy_from_images_are_on_the_build_page(pack_ledger: PackLedger, tmp_path: Path) -> None:
    statement = manifest_variant(0)
    statement["predicate"]["inputs"]["copyFromImages"] = [
        {
            "stage": 1,
            "line": 4,
            "reference": "registry.example/team/data:7",
            "imageId": COPIED,
            "repoDigest": None,
        }
    ]
    project = statement["predicate"]["build"]["project"]
    pack_ledger.add_statement(statement)
    signer, collected = _make(
        pack_ledger,
        PackRequest(
            generated_at=WHEN,
            projects=(project,),
            since=datetime(2026, 12, 1, tzinfo=UTC),
            until=datetime(2027, 1, 1, tzinfo=UTC),
        ),
    )
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "copy.pdf", signer, collected)
    text = re.sub(r"\s+", " ", pdftotext(pdf))
    assert "Images COPY --from copied files from" in text
    assert "1, line 4" in text and "registry.example/team/data:7" in text
    assert COPIED.removeprefix("sha256:") in re.sub(r"\s", "", pdftotext(pdf))
    r = _verify(pdf, "--project", project)
    assert r.exit_code == 0, r.stderr + r.stdout
