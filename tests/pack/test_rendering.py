"""Rendered packs in hard cases: a build heading with a long project name
ran off the right edge of the page, and a right-to-left override recorded in a project
name (or a recipe) reversed what the pack printed after it ("failed" read "deliaf")."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.render import render_html, render_pdf

from .conftest import example_view, pdftotext

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
# A4 is 595.28 pt wide and the right page margin 16 mm (45.35 pt): no word may end past it.
RIGHT_EDGE = 595.28 - 16 / 25.4 * 72
# 200 characters, no space, and not hex (a hex run is wrapped as a digest)
LONG_PROJECT = "project-" + "wxyz" * 48
RLO = "\u202e"

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _pdf(tmp_path: Path, **manifest: str) -> Path:
    out = tmp_path / "pack.pdf"
    out.write_bytes(render_pdf(example_view(1, **manifest), [], WHEN).pdf)
    return out


def _words_past_the_margin(pdf: Path) -> list[str]:
    html = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-bbox", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = re.findall(
        r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"[^>]*>([^<]*)</word>', html
    )
    assert words
    return [w for x, w in words if float(x) > RIGHT_EDGE + 0.5]


def test_a_long_project_name_wraps_inside_its_build_heading(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path, project=LONG_PROJECT)
    assert _words_past_the_margin(pdf) == []
    # and it is still there whole, wrapped over lines of the heading (pdftotext drops
    # the hyphen of "project-" when a line breaks after it)
    flat = re.sub(r"[\s-]", "", pdftotext(pdf))
    assert "Entry0—" + LONG_PROJECT.replace("-", "") + "—succeeded" in flat


def test_a_bidi_override_in_a_project_name_cannot_reverse_the_heading(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path, project=f"evil{RLO}-app", status="failed")
    text = pdftotext(pdf)
    assert "Entry 0 — evil[U+202E]-app — failed" in text
    assert "deliaf" not in text


def test_bidi_controls_are_shown_not_obeyed_in_names_and_recipes() -> None:
    view = example_view(1, label=f"note{RLO}reversed")
    b = view.builds[0]
    b = dataclasses.replace(b, recipe_text=f"FROM base\nRUN echo {RLO}dlrow\n")
    html = render_html(dataclasses.replace(view, builds=(b,)))
    assert RLO not in html
    assert "RUN echo [U+202E]dlrow" in html
    assert "note[U+202E]reversed" in html.replace("<wbr>", "")


def test_chinese_japanese_korean_and_emoji_names_are_drawn_with_real_glyphs(
    tmp_path: Path,
) -> None:
    """With only DejaVu installed, a project named in CJK script or with an emoji was
    drawn as empty boxes; scripts/setup.sh installs fonts that have those glyphs."""
    pdf = _pdf(tmp_path, project="支付-決済-결제-🚀")
    fonts = subprocess.run(
        ["pdffonts", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "WenQuanYi-Zen-Hei" in fonts, fonts
    assert "Symbola" in fonts, fonts
    assert "支付" in pdftotext(pdf)
