"""Rendered-pack fixes found in review.

1. The cover said "Overall verdict: Verified" beside "40 anomalies", every one of them a
   secret build argument recorded as its salted digest — no finding.  The cover and the
   summary page now count findings (the anomalies that make the verdict "with findings")
   apart from notes (secret values recorded as salted digests), the pack statement states
   both counts, and ``pack verify`` checks both against the evidence.
2. A pack of ``--entries N`` listed on its "Keys in force" page a key added after entry N
   that signed nothing in it: an entry list has no ``--since``/``--until``, so every key
   not ended counted as "in force during the period".  The period of an entry list is now
   that of its entries; the pack still embeds every key event below its checkpoint.
3. The continuation pages of a build's section said only "5. Builds" in their running
   footer; they now name the entry ("5. Builds · Entry 12 — project").
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import Collected, PackRequest, collect
from escrow.pack.evidence import PACK_STATEMENT, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_html, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import verify_pack
from escrow.signing.keys import SigningKey

from .conftest import PackLedger, example_view, pdftotext

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
OTHER_BASE = "sha256:" + "ab" * 32
NOTES = (
    "base images rebuilt by builds this pack shows, retired signing keys, "
    "secret values recorded as salted digests, not findings"
)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _flat(text: str) -> str:
    return re.sub(r"[\s\u00ad-]", "", text)


def _make(pack_ledger: PackLedger, request: PackRequest) -> tuple[Any, Collected]:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
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
    html: str | None = None,
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
    pdf = render_pdf(view or collected.view, files, WHEN, html=html, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def _page(pdf: Path, n: int) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-f", str(n), "-l", str(n), str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _pages(pdf: Path) -> list[str]:
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True)
    n = int(re.search(r"Pages:\s+(\d+)", info.stdout).group(1))  # type: ignore[union-attr]
    return [_page(pdf, i) for i in range(1, n + 1)]


# -- 1. findings and notes ------------------------------------------------------------


def test_secret_values_are_counted_as_notes_not_anomalies(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """A clean pack whose builds record secret build arguments: "Verified", with no
    finding and one note per build, on the cover, the summary page and in the statement."""
    pack_ledger.add(0)
    pack_ledger.add(1)
    signer, collected = _make(pack_ledger, PackRequest(generated_at=WHEN))
    assert collected.view.overall == "Verified"
    pdf = _write(tmp_path / "clean.pdf", signer, collected)
    pages = _pages(pdf)
    cover, summary = _flat(pages[0]), _flat(pages[1])
    assert "anomal" not in cover.lower()
    assert _flat(f"; 0 findings; 2 notes ({NOTES}).") in cover
    assert _flat(f"Findings 0 Notes 2 ({NOTES})") in summary
    assert "Findings" in pages[1] and "Notes" in pages[1] and "Anomalies" not in pages[1]
    assert "entry 1: secret build args recorded as salted digests" in pages[1]
    st = _statement(collected)["predicate"]["summary"]
    assert (st["anomalies"], st["findings"], st["notes"]) == (2, 0, 2)
    report = verify_pack(pdf)
    assert report.ok, report.first_failure


@pytest.fixture
def findings(pack_ledger: PackLedger, tmp_path: Path) -> tuple[Any, Collected]:
    """Entries 1-3: the base image changed under its reference at entries 2 and 3 (two
    findings), each records a secret build argument (three notes)."""
    pack_ledger.add(0)
    pack_ledger.add(1, base_image_id=OTHER_BASE)
    pack_ledger.add(2)
    return _make(pack_ledger, PackRequest(generated_at=WHEN, projects=("example",)))


def test_findings_and_notes_are_counted_apart_and_verified(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    signer, collected = findings
    v = collected.view
    assert v.overall == "Verified, with findings"
    assert (len(v.summary.findings), len(v.summary.notes)) == (2, 3)
    pdf = _write(tmp_path / "honest.pdf", signer, collected)
    text = _flat(pdftotext(pdf))
    assert _flat(f"; 2 findings; 3 notes ({NOTES}).") in text
    assert _flat(f"Findings 2 Notes 3 ({NOTES})") in text
    report = verify_pack(pdf)
    assert report.ok, report.first_failure


def test_a_cover_that_counts_a_finding_as_a_note_is_refused(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    """The anomalies all still listed, but a base-image change re-labelled a note: the
    cover then counts 1 finding and 4 notes, which the evidence does not give."""
    signer, collected = findings
    v = collected.view
    relabelled = tuple(
        dataclasses.replace(a, kind="secret") if a.kind == "base" and i == 1 else a
        for i, a in enumerate(v.summary.anomalies)
    )
    view = dataclasses.replace(v, summary=dataclasses.replace(v.summary, anomalies=relabelled))
    assert len(view.summary.findings) == 1
    report = verify_pack(_write(tmp_path / "cover.pdf", signer, collected, view=view))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail.startswith("the cover does not count the 2 findings and 3 notes its")


def test_a_summary_page_with_a_false_count_is_refused(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    """The cover honest, the summary page's findings count forged."""
    signer, collected = findings
    html = render_html(collected.view)
    row = "<tr><th>Findings</th><td>2</td></tr>"
    assert html.count(row) == 1
    forged = html.replace(row, "<tr><th>Findings</th><td>0</td></tr>")
    report = verify_pack(_write(tmp_path / "summary.pdf", signer, collected, html=forged))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == (
        "the summary page does not count the 2 findings and 3 notes its evidence gives "
        "(base image escrow-example/base:latest changed between entry 1 and entry 2)"
    )


def test_a_statement_with_a_false_notes_count_is_refused(
    findings: tuple[Any, Collected], tmp_path: Path
) -> None:
    signer, collected = findings
    st = _statement(collected)
    assert st["predicate"]["summary"]["notes"] == 3
    st["predicate"]["summary"]["notes"] = 0
    report = verify_pack(_write(tmp_path / "st.pdf", signer, collected, statement=st))
    failed = report.first_failure
    assert failed is not None and failed.name == "verdict"
    assert failed.detail == "the pack statement's summary states notes 0, but its evidence gives 3"


# -- 2. the keys of an --entries pack ----------------------------------------------------


def _later_key(pack_ledger: PackLedger) -> SigningKey:
    """A key registered after the builds so far, which signs a build of another project."""
    from escrow.signing.dsse import sign_statement

    from .synth import manifest_variant

    ci = SigningKey.generate()
    pack_ledger.ledger.register_key(ci.public, "ci")
    pack_ledger.ledger.append(sign_statement(manifest_variant(9, project="other"), ci))
    return ci


def test_an_entries_pack_lists_the_keys_of_its_entries_not_later_ones(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    build = pack_ledger.add(0)  # entry 1, signed by the build key (entry 0)
    ci = _later_key(pack_ledger)  # entry 2 adds "ci", entry 3 is signed by it
    signer, collected = _make(
        pack_ledger,
        PackRequest(generated_at=WHEN, entries=(build.index,), entries_text=str(build.index)),
    )
    keys = [(k.name, k.entries_signed) for k in collected.view.keys]
    assert keys == [("build", 1)]
    assert ci.keyid not in {k.keyid for k in collected.evidence.keys}
    # every key event of the log is still embedded: the checkpoint commits to them all
    assert collected.view.ledger.key_events == 2
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "signer.pem")
    pdf = _write(tmp_path / "one.pdf", signer, collected)
    report = verify_pack(pdf, trust=tmp_path / "signer.pem")
    assert report.ok, report.first_failure
    text = pdftotext(pdf)
    keys_page = text[text.index("Signing keys in force at some time") :]
    keys_page = keys_page[: keys_page.index("7. Ledger checkpoint")]
    assert ci.keyid not in _flat(keys_page)
    assert "(from its first entry to its last)" in keys_page

    # a pack of the period (no entry list) still lists the key, in force in it
    _, period = _make(pack_ledger, PackRequest(generated_at=WHEN))
    assert [k.name for k in period.view.keys] == ["build", "ci"]


def test_an_entries_pack_keeps_the_events_that_judge_its_entries(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """The signer's revocation after the entry is kept (it makes the entry a finding); a
    key in force when the entry was appended is listed though it signed nothing."""
    ci = SigningKey.generate()
    pack_ledger.ledger.register_key(ci.public, "ci")  # entry 1, in force at entry 2
    build = pack_ledger.add(0)  # entry 2
    later = _later_key(pack_ledger)  # entries 3 and 4
    revoked = pack_ledger.ledger.revoke_key(pack_ledger.key.keyid, "the private key leaked")
    signer, collected = _make(
        pack_ledger,
        PackRequest(generated_at=WHEN, entries=(build.index,), entries_text=str(build.index)),
    )
    keys = {k.name: k for k in collected.view.keys}
    assert sorted(keys) == ["build", "ci"]
    assert later.keyid not in {k.keyid for k in collected.view.keys}
    assert [(e.event, e.index) for e in keys["build"].events][-1] == ("revoked", revoked.index)
    assert collected.view.overall == "Verified, with findings"
    assert [a.kind for a in collected.view.summary.findings] == ["key"]
    pdf = _write(tmp_path / "rev.pdf", signer, collected)
    report = verify_pack(pdf)
    assert report.ok, report.first_failure


# -- 3. the entry in the running footer --------------------------------------------------


def test_the_running_footer_names_the_entry_of_each_build_page(tmp_path: Path) -> None:
    view = example_view(4)
    builds = list(view.builds)
    long_name = "f" * 100  # hex: cut in the footer, it must not print a 64-hex digest
    builds[2] = dataclasses.replace(builds[2], project=long_name)
    view = dataclasses.replace(view, builds=tuple(builds))
    pdf = tmp_path / "footer.pdf"
    pdf.write_bytes(render_pdf(view, [], WHEN, strict=True).pdf)
    pages = _pages(pdf)
    first = next(i for i, p in enumerate(pages) if "Entry 0 — example — succeeded" in p)
    keys = next(i for i, p in enumerate(pages) if "6. Keys in force" in p and i > first)
    current = None
    continuation = 0
    for text in pages[first:keys]:
        heading = re.findall(r"^Entry (\d+) — ", text, re.M)
        if heading:
            current = int(heading[-1])
        else:
            continuation += 1
        name = "example" if current != 2 else long_name[:47] + "…"
        assert f"5. Builds · Entry {current} — {name}" in text, text[-300:]
    assert continuation >= 4  # each build of the example runs over two pages
    for text in pages[:first] + pages[keys:]:
        assert "· Entry" not in text
    # the cut name is no digest: only the heading prints the whole name
    assert not re.search(r"(?<![0-9a-f])f{64}(?![0-9a-f])", "".join(pages).replace("\u00ad", ""))
