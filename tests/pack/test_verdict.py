"""``escrow pack verify`` recomputes the verdict and anomalies from the evidence.

The pack key is the operator's, so an operator can re-render a pack whose builds show
findings as "Verified", with a pack statement to match, and sign both.  The "verdict"
check recomputes the summary, the overall verdict and the anomalies from the embedded
envelopes with the function ``escrow pack`` computes them with
(:func:`escrow.pack.collect.assess`), and refuses a pack that states others, in its
statement or on its pages.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import Collected, PackRequest, collect
from escrow.pack.evidence import PACK_STATEMENT, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import CHECK_NAMES, verify_pack
from tests.conftest import run_cli

from .conftest import PackLedger

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
OTHER_BASE = "sha256:" + "ab" * 32

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _make(pack_ledger: PackLedger) -> tuple[Any, Collected]:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    request = PackRequest(generated_at=WHEN, projects=("example",))
    return signer, collect(pack_ledger.ledger, request, view)


def _statement(collected: Collected) -> dict[str, Any]:
    doc = next(f for f in attachments_for(collected) if f.name == PACK_STATEMENT)
    return dict(json.loads(doc.data))


def _write(
    path: Path,
    signer: Any,
    collected: Collected,
    *,
    view: Any = None,
    statement: dict[str, Any] | None = None,
) -> Path:
    """Render and sign with the operator's own pack key, as a dishonest operator can."""
    files = attachments_for(collected)
    if statement is not None:
        files = [
            AttachmentFile(f.name, json.dumps(statement).encode(), f.description)
            if f.name == PACK_STATEMENT
            else f
            for f in files
        ]
    pdf = render_pdf(view or collected.view, files, WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def _verify(pdf: Path) -> Any:
    return run_cli(["pack", "verify", str(pdf), "--trust", str(pdf.parent / "signer.pem")])


@pytest.fixture
def findings(pack_ledger: PackLedger, tmp_path: Path) -> tuple[Any, Collected]:
    """A pack of three builds (entries 1-3; entry 0 registered the key): the base image
    changed under its reference at entries 2 and 3 (anomalies that make the verdict
    "Verified, with findings"), each records a secret build argument (an anomaly that
    does not), and entry 3 failed (a finding too, by verdict rules 4)."""
    pack_ledger.add(0)
    pack_ledger.add(1, base_image_id=OTHER_BASE)
    pack_ledger.add(2, status="failed")
    signer, collected = _make(pack_ledger)
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "signer.pem")
    return signer, collected


def _cleaned(collected: Collected) -> tuple[Any, dict[str, Any]]:
    """The cover and statement of the same pack, as the operator would like them: no
    anomaly, no failed build, "Verified"."""
    v = collected.view
    summary = dataclasses.replace(v.summary, anomalies=(), failed=0)
    builds = tuple(dataclasses.replace(b, anomalies=()) for b in v.builds)
    view = dataclasses.replace(v, summary=summary, builds=builds, overall="Verified")
    st = _statement(collected)
    st["predicate"]["summary"].update(overall="Verified", anomalies=0, failed=0)
    return view, st


def test_an_honest_pack_with_findings_verifies(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    signer, collected = findings
    assert collected.view.overall == "Verified, with findings"
    kinds = [a.kind for a in collected.view.summary.anomalies]
    assert kinds == ["secret", "base", "secret", "failed", "base", "secret"]
    assert collected.view.summary.failed == 1
    pdf = _write(tmp_path / "honest.pdf", signer, collected)
    report = verify_pack(pdf)
    assert report.ok, report.first_failure
    assert [c.name for c in report.checks][-1] == "verdict" == CHECK_NAMES[-1]
    verdict = report.checks[-1]
    assert verdict.ok and verdict.detail == (
        "Verified, with findings, 3 findings and 3 notes: as recomputed from the evidence"
    )
    r = _verify(pdf)
    assert r.exit_code == 0, r.stderr


def test_a_pack_re_rendered_as_verified_is_refused(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    signer, collected = findings
    view, st = _cleaned(collected)
    r = _verify(_write(tmp_path / "clean.pdf", signer, collected, view=view, statement=st))
    assert r.exit_code == 1
    assert (
        'verdict: the pack statement states the verdict "Verified", '
        'but its evidence gives "Verified, with findings"' in r.stderr
    )
    assert "Traceback" not in r.stderr
    rep = _verify_json(tmp_path / "clean.pdf")
    assert [c["name"] for c in rep["checks"] if not c["ok"]] == ["verdict"]


def test_a_statement_that_hides_the_findings_is_refused(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    """The pages honest, the signed statement (what a tool reads) cleaned."""
    signer, collected = findings
    _, st = _cleaned(collected)
    report = verify_pack(_write(tmp_path / "st.pdf", signer, collected, statement=st))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == (
        'the pack statement states the verdict "Verified", '
        'but its evidence gives "Verified, with findings"'
    )

    # only the anomaly count or the failed builds changed
    st = _statement(collected)
    st["predicate"]["summary"]["anomalies"] = 0
    report = verify_pack(_write(tmp_path / "count.pdf", signer, collected, statement=st))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == (
        "the pack statement states 0 anomalies, but its evidence gives 6 anomalies "
        "(base image escrow-example/base:latest changed between entry 1 and entry 2)"
    )
    st = _statement(collected)
    st["predicate"]["summary"]["failed"] = 0
    report = verify_pack(_write(tmp_path / "failed.pdf", signer, collected, statement=st))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == (
        "the pack statement's summary states failed 0, but its evidence gives 1"
    )


def test_a_cover_that_hides_the_findings_is_refused(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    """The signed statement honest, the printed cover and summary cleaned."""
    signer, collected = findings
    view, _ = _cleaned(collected)
    report = verify_pack(_write(tmp_path / "cover.pdf", signer, collected, view=view))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == (
        'the cover states the verdict "Verified", but its evidence gives "Verified, with findings"'
    )

    # the verdict left, the anomaly dropped from the cover and the summary page
    v = collected.view
    dropped = dataclasses.replace(v, summary=dataclasses.replace(v.summary, anomalies=()))
    report = verify_pack(_write(tmp_path / "list.pdf", signer, collected, view=dropped))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == (
        "the cover does not count the 3 findings and 3 notes its evidence gives "
        "(base image escrow-example/base:latest changed between entry 1 and entry 2)"
    )


def test_an_honest_clean_pack_verifies(pack_ledger: PackLedger, tmp_path: Path) -> None:
    pack_ledger.add(0)
    pack_ledger.add(1)
    signer, collected = _make(pack_ledger)
    # the example build records a secret argument: an anomaly that is no finding
    assert collected.view.overall == "Verified"
    assert {a.kind for a in collected.view.summary.anomalies} == {"secret"}
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "signer.pem")
    pdf = _write(tmp_path / "clean.pdf", signer, collected)
    r = _verify(pdf)
    assert r.exit_code == 0, r.stderr
    report = verify_pack(pdf)
    assert report.ok, report.first_failure
    assert report.checks[-1].name == "verdict"
    assert report.checks[-1].detail == (
        "Verified, 0 findings and 2 notes: as recomputed from the evidence"
    )


def _verify_json(pdf: Path) -> dict[str, Any]:
    r = run_cli(["pack", "verify", str(pdf), "--trust", str(pdf.parent / "signer.pem"), "--json"])
    return dict(json.loads(r.stdout))


def test_an_entry_signed_by_a_key_revoked_since_is_a_finding_it_recomputes(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """The key's status comes from the embedded key events, replayed as ``escrow pack``
    replays them."""
    pack_ledger.add(0)
    revoked = run_cli(["keys", "revoke", "build", "--reason", "the private key leaked"])
    assert revoked.exit_code == 0, revoked.stderr
    signer, collected = _make(pack_ledger)
    assert collected.view.overall == "Verified, with findings"
    assert [a.kind for a in collected.view.summary.anomalies] == ["key", "secret"]
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "signer.pem")
    honest = verify_pack(_write(tmp_path / "honest.pdf", signer, collected))
    assert honest.ok, honest.first_failure

    view, st = _cleaned(collected)
    st["predicate"]["summary"]["anomalies"] = 1  # the secret argument left
    r = _verify(_write(tmp_path / "clean.pdf", signer, collected, view=view, statement=st))
    assert r.exit_code == 1
    assert (
        'verdict: the pack statement states the verdict "Verified", '
        'but its evidence gives "Verified, with findings"' in r.stderr
    )
