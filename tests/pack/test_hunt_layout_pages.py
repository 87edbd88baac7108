"""The pack as an auditor pages through it: the verdict is the first thing on the cover,
however long the scope and requester run; and a pack with supporting builds has no blank
page before them (the back matter, laid out on its own, began with a forced page break)."""

from __future__ import annotations

import dataclasses
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.model import SupportingBuildView
from escrow.pack.render import render_html, render_pdf

from .conftest import example_view

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

#: what every page prints besides its content: header, pack ID, footer
FURNITURE = ("escrow audit pack", "EP-0000-1111-2222-3333", "Page ")


def words(pdf: Path) -> list[list[tuple[str, float, float]]]:
    """Each page's words with their top-left corner (``pdftotext -bbox-layout``), in
    reading order."""
    out = subprocess.run(
        ["pdftotext", "-bbox-layout", "-enc", "UTF-8", str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    root = ET.fromstring(out)
    xhtml = "{http://www.w3.org/1999/xhtml}"
    return [
        [
            (w.text or "", float(w.attrib["xMin"]), float(w.attrib["yMin"]))
            for w in page.iter(xhtml + "word")
        ]
        for page in root.iter(xhtml + "page")
    ]


def page_texts(pdf: Path) -> list[list[str]]:
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return [[ln for ln in page.splitlines() if ln.strip()] for page in text.split("\f")[:-1]]


def _supporting(index: int, used_by: tuple[int, ...]) -> SupportingBuildView:
    return SupportingBuildView(
        index=index,
        leaf_hash=f"{index:02x}" * 32,
        integrated_at="2026-12-04T15:00:00Z",
        project="example-base",
        build_id="b" * 32,
        image_id="sha256:" + "aa" * 32,
        tags=("example/base:latest",),
        finished_on="2026-12-04T15:00:02Z",
        signer="cd" * 32,
        signer_name="build",
        signature_verified=True,
        inclusion_verified=True,
        used_by=used_by,
    )


def test_supporting_builds_follow_the_last_build_without_a_blank_page(tmp_path: Path) -> None:
    """The back matter of a pack with supporting builds began with an empty marker and a
    heading that forces a page break: laid out on its own, it began with a page that held
    nothing but the header and footer.  Now every page holds content, the supporting builds
    start on the page after the last build's, and the pack has the pages it has laid out
    whole in one document."""
    view = dataclasses.replace(example_view(2), supporting=(_supporting(7, (0, 1)),))
    parts = render_pdf(view, [], WHEN, strict=True)
    whole = render_pdf(view, [], WHEN, strict=True, html=render_html(view))
    pdf = tmp_path / "pack.pdf"
    pdf.write_bytes(parts.pdf)
    pages = page_texts(pdf)
    assert len(pages) == parts.pages == whole.pages
    for n, page in enumerate(pages, start=1):
        content = [ln for ln in page if not ln.startswith(FURNITURE)]
        assert content and content != ["5. Builds"], (n, page)
    starts = [n for n, page in enumerate(pages, start=1) if n > 1 and "Supporting builds" in page]
    last_build = max(
        n for n, page in enumerate(pages, start=1) if "5. Builds · Entry 1 —" in " ".join(page)
    )
    # (the contents on page 1 name it too) its section is on the page after the last build's
    assert starts == [last_build + 1]


def test_the_verdict_is_on_the_first_page_above_a_scope_that_runs_long(tmp_path: Path) -> None:
    """A pack asked for many long-named projects and by a long-named requester: the cover's
    table ran over a page and pushed the verdict to page 3, after a page 1 holding only the
    title.  The verdict now comes right under the pack ID, first thing on page 1, above the
    scope."""
    projects = tuple(f"team-{i}-" + "component-" * 18 + "end" for i in range(25))
    view = example_view(1)
    view = dataclasses.replace(
        view,
        scope=dataclasses.replace(view.scope, projects=("example", *projects)),
        requester="Jane Auditor, External Audit LLP, for the board audit committee " * 3,
    )
    pdf = tmp_path / "pack.pdf"
    pdf.write_bytes(render_pdf(view, [], WHEN, strict=True).pdf)
    first = words(pdf)[0]
    said = [w for w in first if w[0] == "verdict:"]
    assert said, [w[0] for w in first]
    pack_id = next(w for w in first if w[0] == view.pack_id)
    scope = [w for w in first if w[0] == "Scope"]
    # below the pack ID, and above the scope (when the scope starts on this page at all)
    assert pack_id[2] < said[0][2]
    assert all(said[0][2] < s[2] for s in scope)
    assert "Verified" in [w[0] for w in first]


def test_the_verdict_comes_before_the_scope_in_the_text(tmp_path: Path) -> None:
    """``pdftotext`` reads the cover as an auditor does: title, pack ID, the verdict, then
    the scope and the other facts of the pack."""
    pdf = tmp_path / "pack.pdf"
    pdf.write_bytes(render_pdf(example_view(1), [], WHEN, strict=True).pdf)
    cover = page_texts(pdf)[0]
    at = {
        key: next(i for i, ln in enumerate(cover) if ln.startswith(key))
        for key in (
            "Audit pack",
            "EP-0000-1111-2222-3333",
            "Overall verdict: Verified",
            "Scope",
            "Contents",
        )
    }
    assert list(at.values()) == sorted(at.values()), cover
