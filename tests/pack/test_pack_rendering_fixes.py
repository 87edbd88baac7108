"""Fixes from a user review of rendered packs: wrapping of long names and values, the
ledger heading, singular/plural, the scope on the cover and ``pack verify``'s summary."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.model import ConsistencyView, PackView, ScopeView
from escrow.pack.render import render_html, render_pdf

from .conftest import PackLedger, example_view, pdftotext

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
VENDOR = "org.opencontainers.image.vendor"
TITLE = "org.opencontainers.image.title"
REPO_DIGEST = "127.0.0.1:50457/base@sha256:" + "fac98443" * 8
# A4 is 595.28 pt wide and the right page margin 16 mm (45.35 pt): no word may end past it.
RIGHT_EDGE = 595.28 - 16 / 25.4 * 72

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _view_with_long_values(**build_changes: Any) -> PackView:
    view = example_view(1)
    b = view.builds[0]
    base = dataclasses.replace(b.base_images[0], repo_digest=REPO_DIGEST)
    changes: dict[str, Any] = {
        "labels": ((TITLE, "escrow example app"), (VENDOR, "escrow")),
        "base_images": (base,),
        **build_changes,
    }
    return dataclasses.replace(view, builds=(dataclasses.replace(b, **changes),))


def _render(tmp_path: Path, view: PackView, name: str = "v.pdf") -> Path:
    rendered = render_pdf(view, [], WHEN, strict=True)
    assert rendered.warnings == []
    out = tmp_path / name
    out.write_bytes(rendered.pdf)
    return out


def _raw_lines(pdf: Path) -> list[str]:
    raw = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-raw", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in raw.splitlines()]


def _words_past_the_margin(pdf: Path) -> list[str]:
    """Words whose right edge is beyond the page's right margin (pdftotext -bbox)."""
    html = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-bbox", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = re.findall(
        r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"[^>]*>([^<]*)</word>', html
    )
    assert words  # otherwise this test proves nothing
    return [w for x, w in words if float(x) > RIGHT_EDGE + 0.5]


def _label_lines(lines: list[str], name: str) -> list[str]:
    """The lines the label ``name`` was drawn on (after the word "Label")."""
    start = next(i for i, line in enumerate(lines) if line.endswith("Label") or "Label org" in line)
    parts: list[str] = []
    first = lines[start].split("Label", 1)[1].strip()
    if first:
        parts.append(first)
    i = start + 1
    while "".join(parts) != name and len("".join(parts)) < len(name):
        parts.append(lines[i])
        i += 1
    return parts


# -- 1. label names wrap at their dots, never inside a word ----------------------------


def test_a_long_label_name_wraps_at_its_dots_only(tmp_path: Path) -> None:
    lines = _raw_lines(_render(tmp_path, _view_with_long_values()))
    for name in (TITLE, VENDOR):
        at = [i for i, line in enumerate(lines) if line.endswith("Label") or "Label org" in line]
        assert at, lines
        found = False
        for start in at:
            parts = _label_lines(lines[start:], name)
            if "".join(parts) == name:
                found = True
                assert all(p.endswith(".") for p in parts[:-1]), parts
        assert found, f"{name} is not drawn whole: {lines}"


def test_the_html_marks_break_points_in_label_names() -> None:
    html = render_html(_view_with_long_values())
    assert "org.<wbr>opencontainers.<wbr>image.<wbr>vendor" in html


# -- 2. long values stay inside their cells ----------------------------------------------


def test_a_repo_digest_wraps_inside_its_cell_and_stays_findable(tmp_path: Path) -> None:
    out = _render(tmp_path, _view_with_long_values())
    assert _words_past_the_margin(out) == []
    text = pdftotext(out)
    assert "sha256:" + "fac98443" * 8 in text  # the digest's hex is still whole for pdftotext
    assert "127.0.0.1:50457/" in text


def test_no_long_value_anywhere_runs_past_the_margin(tmp_path: Path) -> None:
    long_path = "/".join(["a-very-long-folder-name"] * 8) + "/Dockerfile"
    long_url = "https://git.example.org/" + "/".join(["group.subgroup"] * 8) + "/app.git"
    view = _view_with_long_values(
        tags=("registry.example.org:5000/" + "team.subteam/" * 6 + "app:1.2.3-rc.4",),
        recipe_path=long_path,
        source=(("remote", long_url), ("commit", "4b825dc642cb6eb9a060e54bf8d69288fbee4904")),
        subjects=(("registry.example.org:5000/" + "x.y/" * 20 + "app:1", "ab" * 32),),
    )
    view = dataclasses.replace(view, requester="auditor@" + "sub.domain." * 10 + "example")
    out = _render(tmp_path, view)
    assert _words_past_the_margin(out) == []


# -- 3. the ledger heading says what the contents say --------------------------------------


def _consistency_view() -> PackView:
    view = example_view(1)
    c = ConsistencyView(1, "34" * 32, 1, "12" * 32, (), True, True)
    return dataclasses.replace(view, ledger=dataclasses.replace(view.ledger, consistency=c))


@pytest.mark.parametrize("consistency", [False, True], ids=["plain", "since-checkpoint"])
def test_every_heading_matches_its_contents_line(consistency: bool) -> None:
    html = render_html(_consistency_view() if consistency else example_view(1))
    toc = html.split('<ul class="toc">', 1)[1].split("</ul>", 1)[0]
    entries = re.findall(r'<a href="#([\w-]+)">([^<]*)</a>', toc)
    assert len(entries) == 7
    for anchor, title in entries:
        m = re.search(rf'<h1[^>]*\bid="{anchor}"[^>]*>([^<]*)</h1>', html)
        assert m is not None, anchor
        assert m.group(1) == title
    if consistency:
        assert ">7. Ledger checkpoint and consistency</h1>" in html


# -- 4. singular and plural ------------------------------------------------------------------


def test_one_file_one_hash_one_entry_are_singular() -> None:
    view = _consistency_view()
    b = dataclasses.replace(
        view.builds[0], context_files=1, context_size=197, inclusion_proof=("ef" * 32,)
    )
    c = dataclasses.replace(view.ledger.consistency, proof=("56" * 32,))  # type: ignore[arg-type]
    view = dataclasses.replace(
        view, builds=(b,), ledger=dataclasses.replace(view.ledger, size=1, consistency=c)
    )
    html = render_html(view)
    assert "1 file, 197 B" in html
    assert "1 files" not in html
    assert "proof of 1 hash:" in html
    assert "Proof (1 hash)" in html
    assert "1 entry<" in html and "1 entries" not in html


# -- 5. the scope on the cover, in the user's terms ---------------------------------------------


@pytest.mark.parametrize(
    ("since", "until", "shown", "not_shown"),
    [
        (
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "from 2026-12-01 to 2026-12-31 (inclusive)",
            "2027",
        ),
        ("", "2027-01-01T00:00:00Z", "from the start to 2026-12-31 (inclusive)", "2027"),
        (
            "2026-12-01T08:30:00Z",
            "2026-12-31T12:00:00Z",
            "from 2026-12-01T08:30:00Z until 2026-12-31T12:00:00Z (exclusive)",
            "inclusive",
        ),
        (
            "2026-12-01T00:00:00Z",
            "",
            "from 2026-12-01 up to the checkpoint of the pack",
            "exclusive",
        ),
    ],
)
def test_the_cover_states_the_period_unambiguously(
    since: str, until: str, shown: str, not_shown: str
) -> None:
    scope = ScopeView(("example",), since, until, (0,), "")
    assert shown in scope.describe()
    assert not_shown not in scope.describe()
    html = render_html(dataclasses.replace(example_view(1), scope=scope))
    cover = html.split('<section class="cover"', 1)[1].split("</section>", 1)[0]
    assert shown in cover.replace("<wbr>", "")


def test_until_a_bare_date_prints_that_day_and_keeps_the_exclusive_scope(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    args = ["pack", "--project", "example", "--until", "2099-12-31"]
    args += ["--generated-at", "2026-12-04T16:00:00Z", "--tree-size", "2"]
    r = cli([*args, "-o", str(tmp_path / "s.pdf"), "--json"])
    assert r.exit_code == 0, r.stderr
    text = pdftotext(tmp_path / "s.pdf")
    assert "to 2099-12-31 (inclusive)" in text
    assert "2100-01-01" not in text
    ex = tmp_path / "ex"
    ex.mkdir()
    subprocess.run(["pdfdetach", "-saveall", "-o", str(ex), str(tmp_path / "s.pdf")], check=True)
    scope = json.loads((ex / "pack-statement.json").read_text())["predicate"]["scope"]
    assert scope["until"] == "2100-01-01T00:00:00Z"  # machine-readable: unchanged, exclusive
    v = cli(["pack", "verify", str(tmp_path / "s.pdf"), "--json"])
    assert v.exit_code == 0, v.stderr
    again = cli([*args, "--render-only", "-o", str(tmp_path / "r.pdf"), "--json"])
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "s.pdf").read_bytes().startswith((tmp_path / "r.pdf").read_bytes())
    assert v.json()["rendered_sha256"] == r.json()["rendered_sha256"]


# -- 6. pack verify: the summary says when nothing anchors the signer; skipped checks listed -----


def test_verify_without_trust_says_so_in_its_summary_line(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "p.pdf"
    assert cli(["pack", "--project", "example", "-o", str(out)]).exit_code == 0
    r = cli(["pack", "verify", str(out)])
    assert r.exit_code == 0, r.stderr
    summary = r.stdout.strip().splitlines()[-1]
    assert "verified" in summary
    assert "not anchored" in summary and "--trust" in summary
    j = cli(["pack", "verify", str(out), "--json"])
    assert j.exit_code == 0 and j.json()["anchored"] is False
    cert = pack_ledger.home / "keys" / "pack.cert.pem"
    t = cli(["pack", "verify", str(out), "--trust", str(cert)])
    assert t.exit_code == 0, t.stderr
    assert "not anchored" not in t.stdout
    assert cli(["pack", "verify", str(out), "--trust", str(cert), "--json"]).json()["anchored"]


def test_a_broken_signature_lists_the_printed_digests_check_as_skipped(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "p.pdf"
    assert cli(["pack", "--project", "example", "-o", str(out)]).exit_code == 0
    good = cli(["pack", "verify", str(out), "--json"]).json()
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(data))
    r = cli(["pack", "verify", str(bad), "--json"])
    assert r.exit_code == 1
    rep = r.json()
    assert rep["ok"] is False
    assert [c["name"] for c in rep["checks"]] == [c["name"] for c in good["checks"]]
    printed = next(c for c in rep["checks"] if c["name"] == "printed digests")
    assert printed["ok"] is False and printed["skipped"] is True
    assert "pdf signature" in printed["detail"]
    assert rep["checks"][0]["name"] == "pdf signature" and rep["checks"][0]["skipped"] is False
    human = cli(["pack", "verify", str(bad)])
    assert human.exit_code == 1
    assert "printed digests: skipped" in human.stderr + human.stdout
    assert "fails verification: pdf signature" in human.stderr
