"""Benchmark of escrow pack (issue 8): time and pages for 10, 100 and 300 builds.

Each figure is printed beside its reference measured in the same run: WeasyPrint
rendering a plain table (digests, sizes, short text; ``table-layout: fixed``) of the
same number of pages.  Target: the pack's seconds per page at most 1.5x the
table's; the pack's cost should grow linearly with the number of builds.

The builds are synthesised: signed variants of tests/assets/build-manifest.example.json
(each with its own image ID, diff IDs and times) appended to a real SQLite ledger —
not 300 Docker builds.  The pack is the real thing: collected from the ledger,
proofs checked, rendered, attachments embedded, signed and recorded.

    .venv/bin/python bench/pack_bench.py [--sizes 10,100,300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pack"))

from synth import manifest_variant  # noqa: E402

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


def table_html(rows: int) -> str:
    body = "".join(
        f"<tr><td>{i}</td><td class=dg>sha256:{(f'{i:08x}' * 8)}</td>"
        f"<td>{i * 37 % 100000} B</td><td>/bin/sh -c echo step {i} &gt; /out</td></tr>"
        for i in range(rows)
    )
    return (
        "<html><head><style>@page{size:A4;margin:20mm 16mm 18mm 16mm}"
        "html{font-family:'DejaVu Sans';font-size:8.5pt}"
        "table{width:100%;table-layout:fixed;border-collapse:collapse}"
        "td{padding:0.8mm 1.2mm;border-bottom:0.3pt solid #ccc;overflow-wrap:anywhere}"
        ".dg{font-family:'DejaVu Sans Mono';font-size:6.5pt}</style></head><body>"
        "<table><colgroup><col style=width:6%><col style=width:58%><col style=width:10%>"
        "<col style=width:26%></colgroup><thead><tr><th>#</th><th>digest</th><th>size</th>"
        f"<th>text</th></tr></thead><tbody>{body}</tbody></table></body></html>"
    )


def plain_table(pages: int) -> tuple[float, int]:
    """Seconds and pages of WeasyPrint rendering a plain table of about ``pages`` pages."""
    import weasyprint

    probe = weasyprint.HTML(string=table_html(400)).render()
    per_page = 400 / len(probe.pages)
    rows = max(1, round(pages * per_page))
    t = time.perf_counter()
    doc = weasyprint.HTML(string=table_html(rows)).render()
    doc.write_pdf()
    return time.perf_counter() - t, len(doc.pages)


def fill(n: int, home: Path) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    os.environ["ESCROW_HOME"] = str(home)
    subprocess.run(
        [sys.executable, "-m", "escrow.cli.main", "init"], check=True, capture_output=True
    )
    settings = load_settings()
    key = SigningKey.load(settings.key_path, settings.passphrase)
    with Ledger.open(settings) as ledger:
        results = list(
            ledger.append_many(sign_statement(manifest_variant(i), key) for i in range(n))
        )
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors[0]


def pack(n: int, home: Path) -> dict[str, float]:
    """One real pack: collected, rendered, embedded, signed and recorded."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.pack.collect import PackRequest
    from escrow.pack.render import render_pack

    os.environ["ESCROW_HOME"] = str(home)
    settings = load_settings()
    request = PackRequest(generated_at=WHEN, projects=("example",))
    out = home / "pack.pdf"
    with Ledger.open(settings) as ledger:
        t = time.perf_counter()
        result = render_pack(settings, ledger, request, out)
        total = time.perf_counter() - t
    assert len(result.entries) == n
    return {
        "total": total,
        **dict(result.timings),
        "pages": float(result.pages),
        "bytes": float(out.stat().st_size),
    }


def warm_up(home: Path) -> None:
    """Load fonts and code once, so that the first size measured is not penalised."""
    fill(2, home)
    pack(2, home)
    plain_table(2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,300")
    sizes = [int(x) for x in ap.parse_args().sizes.split(",")]
    print(
        f"{'builds':>6} {'pages':>6} {'pack s':>8} {'s/page':>7} {'table s':>8} "
        f"{'t pages':>7} {'t s/page':>8} {'ratio':>6} {'collect':>8} {'render':>7} {'sign':>6} "
        f"{'record':>6} {'MB':>6}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="escrow-pack-bench-") as tmp:
        warm_up(Path(tmp) / "warm")
        for n in sizes:
            home = Path(tmp) / f"h{n}"
            fill(n, home)
            r = pack(n, home)
            ts, tp = plain_table(int(r["pages"]))
            spp, tspp = r["total"] / r["pages"], ts / tp
            rows.append((n, r))
            print(
                f"{n:>6} {int(r['pages']):>6} {r['total']:>8.2f} {spp:>7.3f} {ts:>8.2f} {tp:>7} "
                f"{tspp:>8.3f} {spp / tspp:>6.2f} {r['collect']:>8.2f} {r['render']:>7.2f} "
                f"{r['sign']:>6.2f} {r['record']:>6.2f} {r['bytes'] / 1e6:>6.2f}",
                flush=True,
            )
    if len(rows) >= 2:
        (n0, a), (n1, b) = rows[0], rows[-1]
        print(
            f"growth {n0}->{n1} builds: x{n1 / n0:.0f} builds, "
            f"x{b['total'] / a['total']:.1f} time, "
            f"x{b['pages'] / a['pages']:.1f} pages; per build {a['total'] / n0:.3f} s -> "
            f"{b['total'] / n1:.3f} s"
        )


if __name__ == "__main__":
    main()
