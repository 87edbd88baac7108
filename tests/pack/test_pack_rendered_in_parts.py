"""A pack laid out in parts (front matter, builds a few at a time, back matter, then the
cover) prints the pages of the pack laid out whole, with the page numbers, contents,
running footers, bookmarks and links of one document; and only one part's layout is
alive at a time (escrow/pack/render.py ``render_parts``)."""

from __future__ import annotations

import gc
import re
import subprocess
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack import render
from escrow.pack.render import render_html, render_pdf

from .conftest import example_view
from .test_pack_cli import outline_titles

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
BUILDS = 5  # in parts of 2: three parts of builds, the last of one

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _pages(pdf: Path) -> list[list[str]]:
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return [[line for line in page.splitlines() if line.strip()] for page in text.split("\f")[:-1]]


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """The same view rendered in parts of 2 builds, and laid out whole in one document."""
    tmp = tmp_path_factory.mktemp("parts")
    view = example_view(BUILDS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "CHUNK", 2)
        parts = render_pdf(view, [], WHEN, strict=True)
    whole = render_pdf(view, [], WHEN, strict=True, html=render_html(view))
    (tmp / "parts.pdf").write_bytes(parts.pdf)
    (tmp / "whole.pdf").write_bytes(whole.pdf)
    assert parts.pages == whole.pages
    return view, tmp / "parts.pdf", tmp / "whole.pdf"


def test_every_page_prints_what_the_pack_laid_out_whole_prints(
    packs: tuple[Any, Path, Path],
) -> None:
    """Page by page the same text; the parts add the furniture the whole document (laid out
    without it) lacks: the header from page 2 on, and "Page X of N" on every page."""
    view, parts, whole = packs
    a, b = _pages(parts), _pages(whole)
    assert len(a) == len(b) > BUILDS
    n = len(a)
    for i, (page, same) in enumerate(zip(a, b, strict=True), start=1):
        furniture = [f"Page {i} of {n}"] + (["escrow audit pack", view.pack_id] if i > 1 else [])
        for line in furniture:
            assert line in page, (i, line, page)
            page.remove(line)
        assert "escrow audit pack" not in page and not any(x.startswith("Page ") for x in page)
        assert sorted(page) == sorted(same), i  # pdftotext's reading order may differ


def test_contents_and_running_footers_name_the_pages_of_the_whole_pack(
    packs: tuple[Any, Path, Path],
) -> None:
    view, parts, _ = packs
    pages = _pages(parts)
    toc = {
        m.group(1): int(m.group(2))
        for line in pages[0]
        if (m := re.match(r"(\d\. [A-Z][\w ]+?) ?[ .]+ (\d+)$", line))
    }
    assert len(toc) == 8 and toc.pop("1. Cover") == 1, pages[0]
    for title, number in toc.items():  # each section's heading is on the page listed
        assert title in pages[number - 1], (title, number)
        assert title not in pages[number - 2] or number == 2
    # a build of every part of builds: its pages' footer names the section and the entry
    for b in view.builds:
        heading = next(
            i for i, p in enumerate(pages) if f"Entry {b.index} — example — " in "".join(p)
        )
        footer = f"5. Builds · Entry {b.index} — example"
        assert footer in pages[heading], (b.index, pages[heading])


def test_bookmarks_and_links_lead_to_the_pages_of_the_whole_pack(
    packs: tuple[Any, Path, Path],
) -> None:
    """The same bookmarks, and every internal link (the cover's contents, the index of
    builds: links from the first part into the others) goes where it goes in the whole."""
    _, parts, whole = packs
    titles = outline_titles(parts)
    assert titles == outline_titles(whole)
    assert [t for t in titles if t.startswith("Entry ")] == [
        f"Entry {i} — example — succeeded" for i in range(BUILDS)
    ]
    links = _links(parts)
    assert links == _links(whole)
    targets = {name: page for _, name, page in links}
    assert set(targets) >= {"summary", "builds", "how"} | {f"entry-{i}" for i in range(BUILDS)}
    assert len(set(targets.values())) > BUILDS  # links into every part


def _links(pdf: Path) -> list[tuple[int, str, int]]:
    """Each link annotation: the page it is on, its destination name, and that
    destination's page (named destinations resolved)."""
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils.reader import PdfFileReader

    with pdf.open("rb") as f:
        root = PdfFileReader(f, strict=False).root
        kids = root["/Pages"]["/Kids"]
        number = {kids.raw_get(i).idnum: i + 1 for i in range(len(kids))}
        names = root["/Names"]["/Dests"]["/Names"]
        dests = {
            str(names[i]): number[names[i + 1].raw_get(0).idnum] for i in range(0, len(names), 2)
        }
        out = []
        for i in range(len(kids)):
            for annot in kids[i].get("/Annots", []):
                a = annot.get_object()
                d = a.get("/Dest") or a["/A"]["/D"]
                out.append((i + 1, str(d), dests[str(d)]))
    return out


def test_only_one_part_is_laid_out_at_a_time() -> None:
    """Each part's layout is let go once its pages are drawn: when a part is laid out, no
    earlier part's document is alive (the cover's, laid out last, until the furniture)."""
    import weasyprint

    alive: list[weakref.ref[Any]] = []
    most: list[int] = []

    class Counted:
        def __init__(self, html: Any) -> None:
            self.html = html

        def render(self, **kw: Any) -> Any:
            gc.collect()
            most.append(sum(ref() is not None for ref in alive))
            doc = self.html.render(**kw)
            alive.append(weakref.ref(doc))
            return doc

    def load(text: str) -> Any:
        return Counted(
            weasyprint.HTML(
                string=text, base_url=render.reports_url(), url_fetcher=render.make_fetcher()
            )
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "CHUNK", 2)
        doc = render.render_parts(example_view(BUILDS), None, load)
    # front, 3 parts of builds, back, cover, furniture
    assert len(most) == 7
    assert most[:-1] == [0] * 6 and most[-1] <= 1, most
    assert len(doc.pages) > BUILDS
