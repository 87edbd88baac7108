"""What a pack says of a failed build (``status: failed``): a finding, named on the cover.

A pack with a failed build in scope read "Verified" with "0 findings": the cover did not
name it (the summary page only counted it), its rebuild read "not checked: no rebuild of
this build is recorded", as if one were due, and the summary counted it among the builds
whose rebuild was not checked.  A failed build made no image: there is nothing to rebuild
(`escrow rebuild` refuses it).  By verdict rules 4, each failed build is a finding that
names it and where it failed ("entry 2: the build failed at step 3 with exit code 1 and
produced no image"), the cover names the failed builds under the verdict, and their
rebuild reads "not applicable" (counted apart, ``not-applicable`` in the statement's
``summary.rebuilds``).  ``escrow pack verify`` recomputes all of it, and a pack judged by
rules 3, kept in ``tests/pack/data``, still verifies as it was made.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import BuildFacts, PackRequest, assess, collect
from escrow.pack.evidence import attachments_for
from escrow.pack.model import VERDICT_RULES, SignerView
from escrow.pack.render import render_html, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import verify_pack
from tests.conftest import run_cli

from .conftest import PackLedger, pdftotext
from .synth import manifest_variant

RULES_3_FAILED = Path(__file__).parent / "data" / "pack-verdict-rules-3-failed.pdf"
FINDING = "entry 2: the build failed at step 3 with exit code 1 and produced no image"

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _page(pdf: Path, first: int, last: int | None = None) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-f", str(first), "-l", str(last or first), str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_a_failed_build_is_a_finding_named_on_the_cover(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)  # entry 1, succeeded
    pack_ledger.add(1, status="failed")  # entry 2: step 3, exit code 1
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", "-o", str(out), "--json"])

    assert r.exit_code == 0, r.stderr  # a finding is no failed check
    assert r.json()["overall"] == "Verified, with findings"
    cover = _flat(_page(out, 1))
    assert "Overall verdict: Verified, with findings" in cover
    assert "; 1 finding; 2 notes (" in cover
    assert "Failed build, a finding: entry 2." in cover
    text = pdftotext(out)
    flat = _flat(text)
    findings = flat.split('Anomalies that make the verdict "Verified, with findings":')[1]
    assert findings.split("Notes")[0].strip() == f"• {FINDING}"
    # the index and the build's section: its rebuild is not applicable, not "not checked"
    layout = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    index = next(page for page in layout.split("\f") if "Index Date (UTC)" in _flat(page))
    rows = [ln.split() for ln in index.splitlines() if ln.split()[:1] in (["1"], ["2"])]
    assert [(r[0], r[-2:]) for r in rows] == [
        ("1", ["not", "checked"]),
        ("2", ["not", "applicable"]),
    ], index
    section = flat.split("Entry 2 — example — failed")[1].split("6. Keys in force")[0]
    assert "Not applicable: the build failed and produced no image, so there is nothing" in (
        section
    )
    assert "Not checked" not in section
    assert f"Findings • {FINDING}" in section
    assert flat.count("Not checked: no rebuild of this build is recorded") == 1  # entry 1's
    assert "Rebuilds not checked 1 Rebuilds not applicable (failed builds) 1" in flat

    statement = pack_ledger.ledger.get(r.json()["index"]).statement()["predicate"]
    assert statement["verdictRules"] == 4
    summary = statement["summary"]
    assert (summary["failed"], summary["findings"], summary["notes"]) == (1, 1, 2)
    assert summary["rebuilds"]["not-checked"] == 1
    assert summary["rebuilds"]["not-applicable"] == 1
    v = run_cli(["pack", "verify", str(out), "--json"])
    assert v.exit_code == 0, v.stderr
    assert v.json()["verdict"] == {
        "overall": "Verified, with findings",
        "findings": 1,
        "rebuilds_failed": 0,
        "notes": 2,
        "rules": 4,
    }


def test_a_cover_that_leaves_the_failed_builds_out_is_refused(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """The operator's own pack key signs a re-rendering whose cover drops the line naming
    the failed builds (the counts, the findings and the statement left honest)."""
    from escrow.config import load_settings

    pack_ledger.add(0)
    pack_ledger.add(1, status="failed")
    signer = ensure_pack_signer(load_settings())
    when = datetime.now(UTC)
    collected = collect(
        pack_ledger.ledger,
        PackRequest(generated_at=when, projects=("example",)),
        SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256"),
    )
    html = render_html(collected.view)
    line = '<small class="failed">Failed build, a finding: entry 2.</small>'
    assert html.count(line) == 1
    pdf = render_pdf(
        collected.view, attachments_for(collected), when, html=html.replace(line, "")
    ).pdf
    forged = tmp_path / "forged.pdf"
    forged.write_bytes(sign_pdf(pdf, signer))

    report = verify_pack(forged)

    failed = report.first_failure
    assert failed is not None and failed.name == "verdict", failed
    assert failed.detail == (
        "the cover does not name the failed builds its evidence gives "
        "(Failed build, a finding: entry 2.)"
    )


def _facts(n: int, status: str = "failed") -> BuildFacts:
    return BuildFacts(
        index=n,
        statement=manifest_variant(n, status=status),
        signer="ab" * 32,
        signer_status="active",
        signature_verified=True,
        inclusion_verified=True,
    )


def test_the_cover_names_the_first_failed_builds_and_counts_the_others() -> None:
    from escrow.pack.model import COVER_FAILED

    builds = [_facts(1, "succeeded")] + [_facts(n) for n in range(2, COVER_FAILED + 5)]
    a = assess(builds, note_ok=True)
    assert a.overall == "Verified, with findings"
    assert a.summary.failed_builds == tuple(range(2, COVER_FAILED + 5))
    shown = ", ".join(str(n) for n in range(2, COVER_FAILED + 2))
    assert a.summary.failed_line() == (
        f"Failed builds, each a finding: entries {shown} and 3 more (section 2)."
    )
    assert dict(a.summary.verdicts)["not applicable"] == COVER_FAILED + 3
    assert dict(a.summary.verdicts)["not checked"] == 1
    assert a.summary_doc()["findings"] == COVER_FAILED + 3


def test_the_rules_a_pack_states_judge_its_failed_builds() -> None:
    """By rules 3 (and before) a failed build was no finding and its rebuild "not
    checked": a pack stating them is recomputed so, and verifies as made."""
    builds = [_facts(1, "succeeded"), _facts(2)]
    old = assess(builds, note_ok=True, rules=VERDICT_RULES[3])
    assert (old.overall, old.summary.failed, old.summary.failed_builds) == ("Verified", 1, ())
    assert old.summary.failed_line() == ""
    assert dict(old.summary.verdicts) == {
        "identical": 0,
        "equivalent": 0,
        "different": 0,
        "not-reproduced": 0,
        "unknown": 0,
        "not checked": 2,
    }
    # made by escrow at commit c4f6c1d (verdict rules 3): a succeeded and a failed build
    st = json.loads(
        subprocess.run(
            ["pdfdetach", "-savefile", "pack-statement.json", "-o", "/dev/stdout"]
            + [str(RULES_3_FAILED)],
            check=True,
            capture_output=True,
        ).stdout
    )
    assert st["predicate"]["verdictRules"] == 3
    assert st["predicate"]["summary"]["failed"] == 1
    r = run_cli(["pack", "verify", str(RULES_3_FAILED), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["verdict"] == {
        "overall": "Verified",
        "findings": 0,
        "rebuilds_failed": 0,
        "notes": 2,
        "rules": 3,
    }


@pytest.mark.parametrize(
    ("build", "said"),
    [
        (
            {"kind": "dockerfile", "failure": {"step": 4, "exitCode": 2}},
            "entry 7: the build failed at step 4 with exit code 2 and produced no image",
        ),
        (
            {"kind": "command", "failure": {"step": None, "exitCode": 127}},
            "entry 7: the recorded command failed with exit code 127 and produced no image",
        ),
        (
            {"kind": "image", "failure": {"step": None, "exitCode": None}},
            "entry 7: the build failed and produced no image",
        ),
    ],
    ids=["dockerfile", "escrow-record", "no-step-no-code"],
)
def test_the_finding_says_where_the_build_failed(build: dict[str, Any], said: str) -> None:
    from escrow.pack.collect import failed_finding

    assert failed_finding(7, {"build": {"status": "failed", **build}}) == said
