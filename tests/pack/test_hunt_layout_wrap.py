"""A long recorded name wraps at its own separators, never mid-word: in the index of
builds' narrow Project column and in a build's heading alike.  Every value went into an
inline box of its own (``<bdi>``), and WeasyPrint wraps such a box whose break points
are ``<wbr>`` elements mid-word ("very-long-p" / "roject-name"), whatever the break
points, as soon as a cell or heading may break words (``overflow-wrap``)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.render import render_html, render_pdf

from .conftest import example_view

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
NAME = "very-long-project-name-" * 8 + "end"  # 187 characters, a hyphen every few letters
XHTML = "{http://www.w3.org/1999/xhtml}"

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def lines_by_page(pdf: Path) -> list[list[str]]:
    """Each page's lines as ``pdftotext -bbox-layout`` finds them, words joined by a space."""
    out = subprocess.run(
        ["pdftotext", "-bbox-layout", "-enc", "UTF-8", str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    root = ET.fromstring(out)
    return [
        [
            " ".join(w.text or "" for w in line.iter(XHTML + "word"))
            for line in page.iter(XHTML + "line")
        ]
        for page in root.iter(XHTML + "page")
    ]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    pdf = tmp_path_factory.mktemp("wrap") / "pack.pdf"
    pdf.write_bytes(render_pdf(example_view(1, project=NAME), [], WHEN, strict=True).pdf)
    return lines_by_page(pdf)


def _wrapped_at_hyphens(parts: list[str]) -> None:
    assert len(parts) >= 2, parts  # it does wrap
    assert "".join(parts) == NAME, parts
    for part in parts[:-1]:
        assert part.endswith("-"), parts  # each line ends at one of the name's hyphens


def test_the_index_wraps_a_long_project_name_at_its_hyphens(pages: list[list[str]]) -> None:
    index = next(p for p in pages if "4. Index of builds" in p)
    parts = [ln for ln in index if len(ln) > 3 and ln in NAME]
    _wrapped_at_hyphens(parts)


def test_a_builds_heading_wraps_a_long_project_name_at_its_hyphens(
    pages: list[list[str]],
) -> None:
    page = next(p for p in pages if any(ln.startswith("Entry 0 — ") for ln in p))
    first = next(i for i, ln in enumerate(page) if ln.startswith("Entry 0 — "))
    last = next(i for i, ln in enumerate(page) if ln.endswith(" — succeeded"))
    heading = page[first : last + 1]
    heading[0] = heading[0].removeprefix("Entry 0 — ")
    heading[-1] = heading[-1].removesuffix(" — succeeded")
    _wrapped_at_hyphens(heading)


def test_a_right_to_left_name_is_still_isolated_in_the_html() -> None:
    """The isolation (``<bdi>``) the values had is kept for a value with a right-to-left
    letter, which needs it, and only there."""
    html = render_html(example_view(1, project="مشروع-app"))
    assert "<bdi>مشروع-app</bdi>" in html
    assert "<bdi>" not in render_html(example_view(1, project=NAME))
