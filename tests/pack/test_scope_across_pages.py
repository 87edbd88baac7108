"""A scope long enough to run from the cover onto a second page still verifies.

Regression: `escrow pack --project app --project <25 long names>` wrote a pack that
`escrow pack verify` failed ("printed digests: the pages do not show the scope the pack
statement states"): the scope's row split across the cover's pages, and the footer's
"Page 1 of N" and the form feed that `pdftotext` puts between them stood in the middle
of the scope it compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import PackLedger, pdftotext


def test_a_scope_split_across_pages_verifies(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(1, project="app")
    long = [f"proj{i:02d}-very-long-project-name-" + "x" * 150 for i in range(25)]
    out = tmp_path / "pack.pdf"
    args = ["pack", "--project", "app"]
    for name in long:
        args += ["--project", name]
    r = cli([*args, "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    pages = pdftotext(out).split("\f")
    first = next(i for i, page in enumerate(pages) if "proj00-very" in page)
    last = next(i for i, page in enumerate(pages) if "proj24-very" in page)
    assert last > first  # the scope does run on from one page to the next
    r = cli(["pack", "verify", str(out)])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "ok   printed digests" in r.stdout + r.stderr


def test_a_scope_the_pages_do_not_show_still_fails(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The page furniture read across is only the footer, form feed and header: a scope
    name missing from the pages is still named."""
    from escrow.pack.verify import _shows

    phrase = "projects app, very-long-name"
    split = "projects app, very-\n\nPage 1 of 9\n\n\fescrow audit pack\n\nEP-1234-ABCD\n\nlong-name"
    assert _shows(split, phrase, None)
    assert not _shows(split.replace("long-name", "short"), phrase, None)
    assert not _shows("projects app, very-\nPage one\n\flong-name", phrase, None)
