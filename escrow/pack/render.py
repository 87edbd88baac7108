"""Render: view model → HTML (Jinja2, autoescaped) → PDF (WeasyPrint).

WeasyPrint gets a URL fetcher that serves only the files of the package's
``reports/`` folder and refuses everything else, so nothing recorded from a
build (labels, commands, paths) can make the renderer read a file or open a
connection.  The same view model, attachments and ``generated_at`` give the
same bytes: ``SOURCE_DATE_EPOCH`` is set while rendering, the document and
attachment dates are the generation time, and the PDF identifier is derived
from the pack ID.

A pack is laid out in parts (:func:`render_parts`): the front matter, the builds
:data:`CHUNK` at a time, the back matter, then the cover, whose contents give the page
of each section.  WeasyPrint keeps a document's whole layout in memory (some 2.5 MB a
page); each part's pages are drawn as soon as that part is laid out, and its layout is
let go, so a pack's memory no longer grows with its number of pages.  The drawn pages
are written as one document by WeasyPrint, which resolves the links between parts and
makes the bookmarks, and adds the attachments, the metadata and PDF/A-3b.  The page
furniture that depends on the whole pack (the header and "Page X of N") is drawn over
each page from a document of empty pages laid out last (``.furniture`` in pack.css).

A progress display can follow it all: :func:`render_pack` (and :func:`render_pdf`,
:func:`render_parts`) call ``progress`` with a :class:`Stage` as each phase and part
begins; it is only told, so the bytes are the same with or without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from markupsafe import Markup

from escrow import times
from escrow._resources import data_dir
from escrow.errors import EscrowError, InputError
from escrow.pack.model import PackView
from escrow.text import count

TEMPLATE = "pack.html.j2"
SOFT_HYPHEN = "\u00ad"
_DIGEST = re.compile(r"^(?:(sha256|sha512|sha384):)?([0-9a-f]{32,128})$")
_HEX_RUN = re.compile(
    r"(?<![0-9A-Za-z])(?:(sha256|sha512|sha384):)?([0-9a-f]{32,128})(?![0-9A-Za-z])"
)
# A run of separators after a letter or digit and before a letter: a line may break
# after it (``org.|opencontainers``, ``host:5000/|team/|app``), but not inside ``</``
# nor inside a number (an address, a port, a version, a date: ``127.0.0.1:5000``).
_BREAK_AFTER = re.compile(r"[0-9A-Za-z][./:@\-_]+(?=[A-Za-z])")
_ALGORITHMS = ("sha256:", "sha384:", "sha512:")
# Every character that prints nothing legible, shown as "[U+XXXX]": the explicit
# bidirectional formatting characters (embeddings, overrides, isolates), which would
# reorder what the pack prints after them ("evil\u202e" makes a heading's "failed" read
# "deliaf"); the control characters but tab, line feed and carriage return (WeasyPrint draws
# a box for them, which ``pdftotext`` drops: an ESC of a coloured log, a NUL); the format
# characters (zero-width space and joiners, direction marks, soft hyphen, BOM, tags), which
# would hide inside a recorded name ("lat\u200best" printed as "latest"); the line and
# paragraph separators (which break a one-line value into two); and the invisible fillers.
INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4"
    "\u17b5\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0"
    "\ufff0-\ufffb\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)
_ALLOWED_SUFFIXES = {".css", ".woff", ".woff2", ".ttf", ".otf", ".png", ".svg"}
_render_lock = threading.Lock()


class RenderError(EscrowError):
    """The pack could not be rendered (exit 2: nothing was written)."""


class FetchRefused(ValueError):
    """A URL the pack renderer will not fetch."""


# -- Jinja2 -----------------------------------------------------------------------


def _hex_groups(algo: str | None, hexpart: str) -> str:
    """``algo:hex`` with a soft hyphen every 8 hex characters (plain text, not escaped)."""
    groups = [hexpart[i : i + 8] for i in range(0, len(hexpart), 8)]
    return (f"{algo}:" if algo else "") + SOFT_HYPHEN.join(groups)


def digest_markup(value: Any) -> Markup:
    """A digest in monospace, with break opportunities every 8 hex characters.

    The breaks are soft hyphens: invisible unless the line breaks there, when
    WeasyPrint draws "-" — which ``pdftotext`` removes when it joins the two
    lines, so the full digest stays findable in the PDF's text.  Anything else
    (a repo digest ``host:port/name@sha256:…``) gets the break points of
    :func:`breakable`, so it wraps inside its cell too.
    """
    text = "" if value is None else str(value)
    m = _DIGEST.match(text)
    if not m:
        return Markup('<span class="dg">{}</span>').format(breakable(text, isolated=False))
    return Markup('<span class="dg">{}</span>').format(_hex_groups(m.group(1), m.group(2)))


def breakable(value: Any, *, isolated: bool = True) -> Markup:
    """Untrusted text, escaped, that may wrap only at natural points.

    A zero-width break opportunity (``<wbr>``, which ``pdftotext`` does not print)
    follows each run of ``. / : @ - _`` that comes after a letter or digit and
    before a letter, so a label name such as ``org.opencontainers.image.vendor``
    or a repo digest wraps at its dots, slashes and ``@`` rather than in the
    middle of a word.  A digest inside the text gets the soft hyphens of
    :func:`digest_markup` (and no break between ``sha256:`` and its hex).  CSS
    ``overflow-wrap`` remains the last resort for one word wider than its cell.
    ``isolated``: in a ``<bdi>``, so that a right-to-left value keeps to itself (below).
    """
    if isinstance(value, Markup):
        return value
    text = shown_controls("" if value is None else str(value))
    out: list[Markup] = []
    pos = 0
    for m in _HEX_RUN.finditer(text):
        before = text[pos : m.start()]
        out.append(_with_break_points(before))
        if _BREAK_AFTER.search(before[-2:] + text[m.start()]):  # "base@", then "sha256:…"
            out.append(Markup("<wbr>"))
        out.append(Markup.escape(_hex_groups(m.group(1), m.group(2))))
        pos = m.end()
    out.append(_with_break_points(text[pos:]))
    # isolated (<bdi>): a right-to-left value does not take the neutrals and digits of the
    # text beside it into its own run ("مشروع, 2024-app" read "2024 ,مشروع-app").  WeasyPrint
    # has no unicode-bidi (it warns of the property), but orders the text of each inline
    # box on its own, which isolates it (tests/pack/test_hunt_content.py).  Only a value with
    # a right-to-left letter is isolated: in an inline box of its own, a value whose break
    # points are <wbr> elements wraps mid-word ("very-long-p|roject-name") rather than at
    # them, as WeasyPrint lays out such a box (tests/pack/test_hunt_layout_wrap.py)
    joined = Markup("").join(out)
    if isolated and RTL_LETTER.search(text):
        return Markup("<bdi>{}</bdi>").format(joined)
    return joined


def scope_markup(scope: Any) -> Markup:
    """The scope (:class:`~escrow.pack.model.ScopeView`) as the cover prints it: the words
    of its ``describe()``, each project isolated (:func:`breakable`) from the next."""
    text = str(scope.describe())
    head = "projects " + ", ".join(scope.projects)
    if not scope.projects or not text.startswith(head):
        return breakable(text)
    names = Markup(", ").join(breakable(p) for p in scope.projects)
    rest = text[len(head) :]
    return Markup("projects ") + names + (breakable(rest) if rest else Markup(""))


def recorded_value(value: Any) -> Markup:
    """A recorded value that may be empty (a tag, a label, a build argument's value, a
    step's instruction), as :func:`breakable` prints it; but an empty string as a muted
    "(empty)", and no value at all (a build argument given without one) as "(no value)",
    so that neither is a blank cell the reader cannot tell from a value left out."""
    if value is None:
        return Markup('<span class="muted">(no value)</span>')
    if value == "":
        return Markup('<span class="muted">(empty)</span>')
    return breakable(value)


def shown_controls(text: str) -> str:
    """``text`` with each explicit bidirectional formatting character (U+202A–U+202E,
    U+2066–U+2069) written as ``[U+XXXX]``: visible, and unable to reverse or reorder
    the text printed after it (a right-to-left script itself is left as it is); and so
    every other character that prints nothing legible (:data:`INVISIBLE`: control and
    zero-width characters, direction marks, line separators)."""
    return INVISIBLE.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def _with_break_points(text: str) -> Markup:
    pieces: list[str] = []
    pos = 0
    for m in _BREAK_AFTER.finditer(text):
        if text[: m.end()].endswith(_ALGORITHMS):  # never between sha256: and its digest
            continue
        pieces.append(text[pos : m.end()])
        pos = m.end()
    pieces.append(text[pos:])
    return Markup("<wbr>").join(pieces)


#: a letter of a right-to-left script (Hebrew, Arabic, Syriac, Thaana, N'Ko, ...)
RTL_LETTER = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff]")
#: Latin text after the row :func:`cover_row_pdf` lays out: its page reads left to right
#: as the cover's does (``pdftotext`` takes a page's main direction from its letters);
#: what ``pdftotext`` extracts of the row ends before its first word
COVER_ROW_END = "ltrfiller"


def cover_row_pdf(scope: Any) -> bytes:
    """A PDF of the ``scope`` (a ScopeView) printed as the cover prints it
    (:func:`scope_markup`), its row laid out as the cover lays it out, then
    :data:`COVER_ROW_END` words.  A right-to-left name is drawn in its visual order, and
    ``pdftotext`` turns back only the runs of its letters: a name with a hyphen, a dot or
    a digit between its words (``مشروع-التطبيق``) comes out with its words in another
    order than the name's, which ``escrow pack verify`` reads from this PDF rather than
    guess."""
    import weasyprint

    markup = Markup(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="stylesheet" href="pack.css"></head><body><section class="cover">'
        '<table class="kv"><tbody><tr><th>Scope</th><td>{}</td></tr></tbody></table>'
        "<p>{}</p></section></body></html>"
    ).format(scope_markup(scope), f"{COVER_ROW_END} " * 200)
    with _render_lock:
        pdf: bytes = weasyprint.HTML(
            string=str(markup), base_url=reports_url(), url_fetcher=make_fetcher()
        ).write_pdf()
    return pdf


#: the longest project name the running footer prints whole (shorter than a 64-hex
#: digest, so a name cut there never prints a digest that is in no evidence)
RUNNING_LIMIT = 48


def running_title(value: Any) -> str:
    """A recorded name as the running footer of a build's pages prints it: on one line,
    its direction controls shown (:func:`shown_controls`), cut at :data:`RUNNING_LIMIT`
    characters with an ellipsis."""
    text = shown_controls(" ".join(("" if value is None else str(value)).split()))
    return text if len(text) <= RUNNING_LIMIT else text[: RUNNING_LIMIT - 1] + "…"


def human_bytes(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "—"
    if value < 1024:
        return f"{value} B"
    size = float(value)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    return f"{value} B"


def short_digest(value: Any) -> str:
    """Docker's short form: the first 12 hex digits."""
    text = "" if value is None else str(value)
    m = _DIGEST.match(text)
    return m.group(2)[:12] if m else text


def short_time(value: Any) -> str:
    """``2026-12-01T10:00:02.5Z`` → ``2026-12-01 10:00:02``."""
    text = "" if value is None else str(value)
    if len(text) >= 19 and text[10] == "T":
        return text[:10] + " " + text[11:19]
    return text


def human_ms(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "—"
    if value < 1000:
        return f"{value} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{value // 60_000} min {value % 60_000 / 1000:.0f} s"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("reports"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters["digest"] = digest_markup
    env.filters["wrap"] = breakable
    env.filters["value"] = recorded_value
    env.filters["scope"] = scope_markup
    env.filters["shown"] = shown_controls
    env.globals["count"] = count
    env.filters["running"] = running_title
    env.filters["bytes"] = human_bytes
    env.filters["ms"] = human_ms
    env.filters["short"] = short_digest
    env.filters["when"] = short_time
    return env


#: the parts of a pack laid out on their own (:func:`render_parts`); "all": the whole pack
PARTS = ("all", "cover", "front", "builds", "back")


def render_html(
    view: PackView,
    tsa: str | None = None,
    *,
    part: str = "all",
    builds: Sequence[Any] | None = None,
    first: bool = True,
    toc: dict[str, int] | None = None,
) -> str:
    """The pack's HTML; ``tsa``: the URL of the Time-Stamping Authority whose timestamp
    the signature will carry (the "How to verify" section says how to check it).

    ``part``: one of :data:`PARTS`; for "builds", the ``builds`` of that part (all by
    default) and whether they are the ``first`` (which print the section's heading);
    for "cover", ``toc``: the page number of each section's anchor."""
    assert part in PARTS, part
    try:
        return (
            environment()
            .get_template(TEMPLATE)
            .render(
                v=view,
                tsa=tsa,
                part=part,
                builds=view.builds if builds is None else builds,
                first=first,
                toc=toc,
            )
        )
    except jinja2.TemplateError as e:
        raise RenderError(f"The pack template failed to render: {e}.") from e


# -- WeasyPrint ------------------------------------------------------------------


def reports_url() -> str:
    return data_dir("reports").resolve().as_uri() + "/"


def make_fetcher() -> Any:
    """A WeasyPrint URL fetcher serving only files of the ``reports/`` folder."""
    from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

    root = data_dir("reports").resolve()

    class ReportsFetcher(URLFetcher):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(allowed_protocols={"file"}, fail_on_errors=True)
            self.refused: list[str] = []
            self.served: list[str] = []

        def fetch(self, url: str, headers: Any = None) -> Any:
            parts = urlsplit(url)
            path = Path(unquote(parts.path)).resolve() if parts.scheme == "file" else None
            if (
                path is None
                or parts.netloc not in ("", "localhost")
                or not path.is_relative_to(root)
                or path.suffix not in _ALLOWED_SUFFIXES
                or not path.is_file()
            ):
                self.refused.append(url)
                raise FatalURLFetchingError(f"refused to fetch {url!r}")
            self.served.append(url)
            mime = "text/css" if path.suffix == ".css" else None
            headers_out = {"Content-Type": mime} if mime else {}
            return URLFetcherResponse(path.as_uri(), path.read_bytes(), headers_out)

    return ReportsFetcher()


@dataclass(frozen=True)
class AttachmentFile:
    name: str
    data: bytes
    description: str


@dataclass
class Rendered:
    pdf: bytes
    pages: int
    warnings: list[str]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _source_date_epoch(when: datetime) -> Iterator[None]:
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(when.timestamp()))
    try:
        yield
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


#: builds laid out at a time: about two pages each, some 2.5 MB a page while laid out
CHUNK = 16
#: the phases of making a pack, in order, as :class:`Stage` names them: "sign" when it is
#: signed, then "record" when its statement is appended, else "write" (``--render-only``)
PHASES = ("collect", "render", "sign", "record", "write")


@dataclass(frozen=True)
class Stage:
    """What the making of a pack has come to, for a progress display: its ``phase`` (one of
    :data:`PHASES`) and what is being done, in words (``text``).  In the phase "render",
    the ``part`` begun (front, builds, back, cover, furniture, pdf), with the ``pages``
    laid out before it (the cover comes last: not counted) and the pack's number of
    ``builds``; for a part of builds, its ``first`` and ``last`` build, from 1."""

    phase: str
    text: str
    part: str = ""
    builds: int = 0
    pages: int = 0
    first: int = 0
    last: int = 0


#: what is told of the making of a pack (:class:`Stage`); its return is not used
OnStage = Callable[[Stage], object]


def _part(part: str, view: PackView, pages: int, first: int = 0, last: int = 0) -> Stage:
    n = len(view.builds)
    if part == "builds":
        which = (
            f"builds {first:,}–{last:,}" if last > first else f"build {first:,}" if first else ""
        )
        so_far = f" ({pages:,} {'page' if pages == 1 else 'pages'} so far)"
        text = f"laying out {which} of {n:,}{so_far}" if which else "laying out the builds"
    else:
        text = {
            "front": "laying out the front matter",
            "back": "laying out the back matter",
            "cover": "drawing the cover",
            "furniture": f"drawing the headers and page numbers of {pages:,} pages",
            "pdf": f"assembling the PDF of {pages:,} pages",
        }[part]
    return Stage("render", text, part, n, pages, first, last)


#: the sections the cover's contents list, by anchor
SECTIONS = ("summary", "controls", "index", "builds", "keys", "ledger", "how")
_SCALE = 0.75  # PDF points per CSS pixel: what WeasyPrint draws with at zoom 1


class _DrawnPage:
    """A page already drawn: what WeasyPrint's PDF writer reads of a page (its size,
    links, anchors and bookmarks) and the drawing operators of its content and of its
    furniture, without its layout."""

    def __init__(self, page: Any, ops: list[Any], drawing: _Drawing) -> None:
        self.width, self.height, self.bleed = page.width, page.height, page.bleed
        self.bookmarks, self.links, self.anchors = page.bookmarks, page.links, page.anchors
        self.forms = page.forms
        self.ops = ops
        self._drawing = drawing

    def paint(self, stream: Any, scale: float = 1) -> None:
        if scale != _SCALE:  # drawn at zoom 1; any other would need drawing again
            raise RenderError(f"A pack page drawn at scale {_SCALE} was asked at {scale}.")
        self._drawing.share_with(stream)
        stream.stream.extend(self.ops)


class _Drawing:
    """Draws laid-out pages into operator lists, with one set of fonts and graphics
    states for the whole pack, handed to the stream of each page when it is written."""

    def __init__(self) -> None:
        self.fonts: dict[Any, Any] = {}
        self.images: dict[Any, Any] = {}
        self.resources: dict[str, dict[str, Any]] = {
            k: {} for k in ("ExtGState", "XObject", "Pattern", "Shading", "ColorSpace")
        }

    def ops(self, doc: Any, page: Any) -> list[Any]:
        from weasyprint.pdf.stream import Stream

        rect = (0, 0, page.width, page.height)
        stream = Stream(
            self.fonts, rect, self.resources, self.images, None,
            doc.color_profiles, doc.output_intent, compress=True,
        )  # fmt: skip
        page.paint(stream, _SCALE)
        # what a page's operators cannot carry alone (they would name objects of this
        # stream): the pack's stylesheet uses none of them
        used = [k for k in ("XObject", "Pattern", "Shading") if self.resources[k]]
        if used or self.images:
            raise RenderError(
                f"The pack's pages use {', '.join(used) or 'images'}, which the pack "
                "renderer does not draw in parts."
            )
        ops = stream.stream  # pydyf writes them joined by newlines: one string is lighter
        return [b"\n".join(ops)] if all(isinstance(op, bytes) for op in ops) else list(ops)

    def draw(self, doc: Any) -> list[_DrawnPage]:
        """Every page of ``doc``, drawn; ``doc``'s layout may then be let go."""
        return [_DrawnPage(page, self.ops(doc, page), self) for page in doc.pages]

    def share_with(self, stream: Any) -> None:
        """Give the stream being written the fonts (with every glyph the pages used) and
        graphics states that the drawn operators name."""
        stream._fonts.update(self.fonts)
        stream._resources["ExtGState"].update(self.resources["ExtGState"])


def furniture_html(view: PackView, pages: int, cover_pages: int) -> str:
    """One empty page for each page of the pack, with its furniture (pack.css's
    ``.furniture``): the header with the pack ID and "Page X of N"."""
    from markupsafe import escape

    first = f'<div class="furniture cover-page" data-packid="{escape(view.pack_id)}"></div>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="stylesheet" href="pack.css"></head><body>'
        + first * min(cover_pages, pages)
        + f'<div class="furniture" data-packid="{escape(view.pack_id)}"></div>'
        * (pages - cover_pages)
        + "</body></html>"
    )


def render_parts(
    view: PackView,
    tsa: str | None,
    load: Callable[[str], Any],
    progress: OnStage | None = None,
) -> Any:
    """The pack laid out part by part (module docstring): a WeasyPrint document of drawn
    pages, ready for ``write_pdf``. ``load(html)``: a WeasyPrint HTML object.

    ``progress``: told as each part begins (:class:`Stage`, phase "render"): the front
    matter, each part of :data:`CHUNK` builds, the back matter, the cover, then the
    furniture of every page."""
    from weasyprint.text.fonts import FontConfiguration

    font_config = FontConfiguration()  # one for every part: the same fonts, once in the PDF
    drawing = _Drawing()
    tell: OnStage = progress or (lambda _stage: None)

    def lay_out(html: str) -> Any:
        return load(html).render(font_config=font_config)

    pages: list[_DrawnPage] = []
    tell(_part("front", view, 0))
    pages += drawing.draw(lay_out(render_html(view, tsa, part="front")))
    chunks = [view.builds[i : i + CHUNK] for i in range(0, len(view.builds), CHUNK)] or [()]
    for k, chunk in enumerate(chunks):
        first = k * CHUNK + 1 if chunk else 0
        tell(_part("builds", view, len(pages), first, first + len(chunk) - 1 if chunk else 0))
        html = render_html(view, tsa, part="builds", builds=chunk, first=k == 0)
        pages += drawing.draw(lay_out(html))
    tell(_part("back", view, len(pages)))
    pages += drawing.draw(lay_out(render_html(view, tsa, part="back")))
    tell(_part("cover", view, len(pages)))
    # the cover last: its contents give each section's page, after the cover's own pages
    found: dict[str, int] = {}
    for i, page in enumerate(pages):
        for name in page.anchors:
            found.setdefault(name, i + 1)
    cover_pages = 1
    for _ in range(3):
        names = (*SECTIONS, "supporting") if view.supporting else SECTIONS
        toc = {name: cover_pages + found[name] for name in names}
        cover = lay_out(render_html(view, tsa, part="cover", toc=toc))
        if len(cover.pages) == cover_pages:
            break
        cover_pages = len(cover.pages)
    else:
        raise RenderError("The pack's cover did not settle on a number of pages.")
    pages[:0] = drawing.draw(cover)
    tell(_part("furniture", view, len(pages)))
    furniture = lay_out(furniture_html(view, len(pages), cover_pages))
    if len(furniture.pages) != len(pages):
        raise RenderError(
            f"The pack's page furniture took {len(furniture.pages)} pages for {len(pages)}."
        )
    for page, extra in zip(pages, furniture.pages, strict=True):
        page.ops += drawing.ops(furniture, extra)
    return cover.copy(pages)


def render_pdf(
    view: PackView,
    attachments: Sequence[AttachmentFile],
    generated_at: datetime,
    *,
    strict: bool = False,
    html: str | None = None,
    tsa: str | None = None,
    progress: OnStage | None = None,
) -> Rendered:
    """Render the pack to PDF bytes (unsigned). ``strict``: any WeasyPrint warning is an error.
    ``tsa``: as for :func:`render_html`. ``progress``: told of each part laid out (as by
    :func:`render_parts`; not of a given ``html``, laid out whole) and, last, that the
    PDF is assembled (:class:`Stage`, phase "render", part "pdf")."""
    import weasyprint
    from weasyprint.urls import FatalURLFetchingError

    fetcher = make_fetcher()
    capture = _Capture()
    loggers = [logging.getLogger("weasyprint"), logging.getLogger("weasyprint.progress")]
    with _render_lock, _source_date_epoch(generated_at):
        for lg in loggers:
            lg.addHandler(capture)
        try:

            def load(text: str) -> Any:
                return weasyprint.HTML(string=text, base_url=reports_url(), url_fetcher=fetcher)

            # a given HTML is laid out whole; the pack's own, in parts
            doc = (
                load(html).render() if html is not None else render_parts(view, tsa, load, progress)
            )
            if progress is not None:
                progress(_part("pdf", view, len(doc.pages)))
            files = [
                weasyprint.Attachment(
                    string=a.data,
                    name=a.name,
                    description=a.description,
                    created=generated_at,
                    modified=generated_at,
                    relationship="Data",
                )
                for a in attachments
            ]
            identifier = hashlib.sha256(view.pack_id.encode()).hexdigest()[:32].encode()
            with warnings.catch_warnings():
                # WeasyPrint opens its sRGB ICC profile for PDF/A and never closes
                # it (weasyprint/pdf/__init__.py); that one ResourceWarning is not ours.
                warnings.filterwarnings("ignore", category=ResourceWarning, message=".*sRGB2014")
                pdf = doc.write_pdf(
                    attachments=files,
                    pdf_identifier=identifier,
                    pdf_variant="pdf/a-3b",
                )
        except FatalURLFetchingError as e:
            raise RenderError(
                f"The pack renderer refused to load {', '.join(fetcher.refused) or 'a resource'}.",
                hint="Only the package's own reports/ files may be loaded.",
            ) from e
        finally:
            for lg in loggers:
                lg.removeHandler(capture)
    said = list(capture.messages)
    if strict and said:
        raise RenderError(f"WeasyPrint warned while rendering the pack: {said[0]}")
    if not isinstance(pdf, bytes):
        raise InputError("WeasyPrint returned no PDF bytes.")
    return Rendered(pdf=pdf, pages=len(doc.pages), warnings=said)


# -- the whole pipeline ----------------------------------------------------------


@dataclass(frozen=True)
class PackResult:
    path: Path
    pack_id: str
    pages: int
    sha256: str
    rendered_sha256: str
    entries: tuple[int, ...]
    index: int | None
    leaf_hash: str | None
    overall: str
    warnings: tuple[str, ...]
    timings: tuple[tuple[str, float], ...] = ()  # seconds per phase, for benchmarks
    timestamp: tuple[datetime, str] | None = None  # the RFC 3161 timestamp's time and TSA

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "pack_id": self.pack_id,
            "pages": self.pages,
            "sha256": self.sha256,
            "rendered_sha256": self.rendered_sha256,
            "entries": list(self.entries),
            "index": self.index,
            "leaf_hash": self.leaf_hash,
            "overall": self.overall,
            "timestamp": {"time": times.rfc3339(self.timestamp[0]), "tsa": self.timestamp[1]}
            if self.timestamp
            else None,
        }


#: the name of a pack being written beside its -o path: ``.NAME.<random>`` + this
_PARTIAL = ".escrow-partial"


def _write_partial(path: Path, data: bytes) -> tuple[Path, int]:
    """``data`` in a new file beside ``path``, synced, to be renamed onto ``path`` once the
    pack is recorded: its path, and a descriptor holding it locked until then (close it).

    A write that fails (a full disk, a read-only folder) removes the file and is one
    :class:`EnvironmentProblem` naming ``path``; before, the partial file stayed beside
    the output.  The partial packs that killed ``escrow pack`` runs left beside ``path``
    are removed first (and the ``.NAME.<pid>.tmp`` of earlier versions); one another pack
    is still writing is locked, and kept."""
    import secrets

    from escrow.blobs import locked_files

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for found, _, _, in_use in locked_files(path.parent.glob(f".{glob.escape(path.name)}.*")):
            partial = re.fullmatch(
                rf"\.{re.escape(path.name)}\.([0-9a-f]{{8}}{re.escape(_PARTIAL)}|[0-9]+\.tmp)",
                found.name,
            )
            if partial and not in_use:  # not a pack in progress
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(found)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_PARTIAL}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)
        if isinstance(e, OSError):
            raise _write_error(path, e) from e
        raise
    return tmp, fd


def _write_error(path: Path, e: OSError) -> EscrowError:
    """The pack ``path`` could not be written: one sentence naming it, not the temporary
    file (``ENOSPC`` names no file at all)."""
    from escrow.errors import EnvironmentProblem

    return EnvironmentProblem(
        f"Cannot write the pack to {path}: {e.strerror or e}; nothing was written or recorded.",
        hint="Free some space there (or fix its permissions), then make the pack again.",
    )


def _append_signed(
    settings: Any,
    ledger: Any,
    statement: dict[str, Any],
    envelope: Any,
    build_key: Any,
    keep: Callable[[Any], None] | None = None,
) -> Any:
    """Append the pack's signed statement; its entry.  When ``escrow keys rotate``
    retired the build key while the pack was rendered (an operator's rotation during a
    long pack), it is signed again with the key the rotation put in its place, as a
    build is (:meth:`escrow.capture.publish.Publisher.publish`): the rendering is not lost.

    ``keep(envelope)`` is called with the envelope signed again before it is appended
    (the server's pack jobs keep it first, as they kept the first one); if it raises,
    nothing more is appended."""
    from escrow.capture.publish import _rotated
    from escrow.errors import SignatureError
    from escrow.signing.dsse import sign_statement

    try:
        entry, _ = ledger.append(envelope)
    except SignatureError:  # refused: nothing was appended
        rotated = _rotated(settings, ledger, build_key)
        if rotated is None:
            raise
        again = sign_statement(statement, rotated)
        if keep is not None:
            keep(again)
        entry, _ = ledger.append(again)
    return entry


def _check_may_record(ledger: Any) -> None:
    """The pack's own entry could be appended: a ledger the database lets this role only
    read (a read-only transaction, SQLSTATE 25006; a missing privilege; a SQLite file or
    folder that cannot be written) fails now, with the error the append would have had,
    before the rendering (half an hour for the largest packs) — checked without writing
    anything (:meth:`~escrow.ledger.store.Ledger.check_writable`)."""
    from escrow.errors import DatabaseUnavailable

    check = getattr(ledger, "check_writable", None)
    if check is None:  # not a local ledger: its server records the pack
        return
    try:
        check()
    except DatabaseUnavailable as e:
        said = e.message.rstrip(".")
        raise DatabaseUnavailable(
            f"{said}; the pack could not be recorded, so nothing was rendered or written.",
            hint=e.hint,
        ) from e


def render_pack(
    settings: Any,
    ledger: Any,
    request: Any,
    output: Path,
    *,
    sign: bool = True,
    record: bool = True,
    strict: bool = False,
    before_record: Callable[[bytes, Any], None] | None = None,
    tsa: str | None = None,
    progress: OnStage | None = None,
) -> PackResult:
    """Collect, render, embed, sign, record and write one pack.

    With ``sign=False`` the rendered PDF is written as is and nothing is
    recorded (``--render-only``: for comparing a re-rendering with a pack).
    The output appears only once the pack statement is in the ledger.

    ``before_record(pdf, envelope)`` is called with the signed PDF and the signed
    envelope of its pack statement just before that envelope is appended, so a
    caller can keep both first: signing is not reproducible (the PDF signature is
    randomised and dated), so a pack whose process dies after the append can be
    finished only from the very bytes its entry names (the server's pack jobs).
    If it raises, nothing is appended.  It is called again, with the same PDF, when the
    ledger refused the envelope because ``escrow keys rotate`` retired the build key
    meanwhile, with the statement signed again by the new key (:func:`_append_signed`).

    ``tsa``: the URL of a Time-Stamping Authority (``--tsa``; else ``ESCROW_TSA_URL``, as
    the server's pack jobs take it): the signature then carries its RFC 3161 timestamp,
    and a TSA that gives none stops the pack before anything is written or appended.

    ``progress``: told as each phase begins (:class:`Stage`: "collect", "render" with
    each of its parts, "sign" when signing, then "record" or "write"), for a display.
    """
    from escrow.config import redact_url
    from escrow.documents.schemas import validate_statement
    from escrow.pack.collect import collect
    from escrow.pack.evidence import attachments_for, statement_for
    from escrow.pack.model import SignerView
    from escrow.pack.sign import (
        TokenCheck,
        check_certificate_current,
        ensure_pack_signer,
        sign_pdf,
        timestamper_for,
        tsa_url,
    )
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    tsa = tsa_url(tsa)  # before anything else: a mistyped URL is refused at once
    signer = ensure_pack_signer(settings, ledger.origin)
    if sign:  # an expired certificate signs a pack no auditor can verify
        check_certificate_current(signer)
    signer_view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256, SHA-256")
    build_key = SigningKey.load(settings.key_path, settings.passphrase) if record and sign else None
    if build_key is not None:  # before the rendering: a key the ledger refuses fails now
        from escrow.capture.publish import check_may_sign

        check_may_sign(ledger, build_key, settings, then="make the pack again")
        _check_may_record(ledger)
    tell: OnStage = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    tell(Stage("collect", "collecting the builds"))
    collected = collect(ledger, request, signer_view)  # a scope it refuses is said first
    tokens: list[TokenCheck] = []  # the TSA's tokens: the last timestamps the signature
    stamper = None
    if sign and tsa:
        # a TSA that gives no timestamp fails now, not after the rendering (half an hour
        # for the largest packs); what it is asked now, signing would have asked it first
        tell(Stage("collect", f"asking the Time-Stamping Authority {redact_url(tsa)}"))
        stamper = timestamper_for(tsa, tokens)
    t1 = time.perf_counter()
    rendered = render_pdf(
        collected.view,
        attachments_for(collected),
        request.generated_at,
        strict=strict,
        tsa=redact_url(tsa) if tsa else None,
        progress=progress,
    )
    t2 = time.perf_counter()
    rendered_sha = hashlib.sha256(rendered.pdf).hexdigest()
    data = rendered.pdf
    if sign:
        tell(
            Stage("sign", f"signing and timestamping with {redact_url(tsa)}" if tsa else "signing")
        )
        data = sign_pdf(rendered.pdf, signer, settings.passphrase, tsa, tokens, stamper)
    stamp = (tokens[-1].time, tokens[-1].tsa) if tokens else None
    t3 = time.perf_counter()
    sha = hashlib.sha256(data).hexdigest()
    if build_key is not None:
        tell(Stage("record", "recording the pack in the ledger"))
    else:
        tell(Stage("write", f"writing {output}"))
    tmp, held = _write_partial(output, data)
    index: int | None = None
    leaf: str | None = None
    try:
        if build_key is not None:
            statement = statement_for(collected.predicate, sha, rendered_sha)
            validate_statement(statement)
            envelope = sign_statement(statement, build_key)
            keep: Callable[[Any], None] | None = None
            if before_record is not None:  # kept first: the very bytes appended next
                keep = functools.partial(before_record, data)
                keep(envelope)
            entry = _append_signed(settings, ledger, statement, envelope, build_key, keep)
            index, leaf = entry.index, entry.leaf_hash
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
        os.close(held)
    t4 = time.perf_counter()
    return PackResult(
        path=output,
        pack_id=collected.view.pack_id,
        pages=rendered.pages,
        sha256=sha,
        rendered_sha256=rendered_sha,
        entries=collected.view.scope.entries,
        index=index,
        leaf_hash=leaf,
        overall=collected.view.overall,
        warnings=tuple(rendered.warnings),
        timings=(("collect", t1 - t0), ("render", t2 - t1), ("sign", t3 - t2), ("record", t4 - t3)),
        timestamp=stamp,
    )
