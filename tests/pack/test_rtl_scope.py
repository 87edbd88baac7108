"""``escrow pack verify`` checks that the cover shows the scope the pack statement states.
A project named in a right-to-left script failed that check on an honest pack:
``pdftotext`` wraps right-to-left runs in U+202B … U+202C, which the check did not
ignore; and a project whose name holds a direction override is printed with the
override made visible (``[U+202E]``), which the check did not expect either."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.collect import PackRequest

from .conftest import PackLedger
from .test_pack_verify_scope import _make, _verify, _write

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("project", ["مشروع", "evil\u202e-app", "אב-app"])
def test_a_pack_of_a_right_to_left_project_verifies(
    pack_ledger: PackLedger, tmp_path: Path, project: str
) -> None:
    pack_ledger.add(0, project=project)
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
    pdf = _write(tmp_path / "rtl.pdf", signer, collected)
    r = _verify(pdf, "--project", project)
    assert r.exit_code == 0, r.stderr + r.stdout
