"""Peak memory of ``escrow pack`` against the size of the pack, beside a reference.

For each size N: a ledger is filled with N synthetic builds (signed variants of
tests/assets/build-manifest.example.json, tests/pack/synth.py, as bench/pack_bench.py
fills it), then ``escrow pack --project example`` runs as its own process: the real
command (collect, proofs, render, attachments, sign, record).  Its peak RSS is the
child's own ``ru_maxrss`` (``os.wait4`` of that one child; the parent that forks it
stays small: it imports neither WeasyPrint nor escrow).  The reference, measured in
the same run as its own process: WeasyPrint rendering a plain table (digests, sizes,
short text; bench/pack_bench.py's) of the same number of pages, to PDF.

The slopes are least-squares fits of peak MB against pages over the sizes: what one
more page costs in memory, the pack's and the plain table's.

    .venv/bin/python bench/pack_memory.py [--sizes 25,50,100,200] [--no-table]

``--no-table`` skips the reference (for one large size: the plain table of 2,000 pages
takes some 5 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
ESCROW = str(ROOT / ".venv" / "bin" / "escrow")
WHEN = "2026-12-04T16:00:00Z"


def child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run one process: its seconds, its own peak RSS in MB, and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, said = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{said}")
    return secs, usage.ru_maxrss / 1024, text


# -- what the children run -------------------------------------------------------------


def do_fill(n: int, home: Path) -> None:
    """A ledger of ``n`` synthetic builds, filled as bench/pack_bench.py fills its own."""
    sys.path.insert(0, str(ROOT / "bench"))
    from pack_bench import fill

    fill(n, home)


def do_table(rows: int) -> None:
    """WeasyPrint rendering bench/pack_bench.py's plain table of ``rows`` rows, to PDF."""
    sys.path.insert(0, str(ROOT / "bench"))
    import weasyprint
    from pack_bench import table_html

    doc = weasyprint.HTML(string=table_html(rows)).render()
    pdf = doc.write_pdf()
    print(json.dumps({"pages": len(doc.pages), "bytes": len(pdf)}))


# -- the driver ------------------------------------------------------------------------


def fit(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y against x."""
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="25,50,100,200")
    ap.add_argument("--no-table", action="store_true", help="skip the plain-table reference")
    ap.add_argument("--fill", nargs=2, metavar=("N", "HOME"), help=argparse.SUPPRESS)
    ap.add_argument("--table", type=int, metavar="ROWS", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.fill:
        return do_fill(int(a.fill[0]), Path(a.fill[1]))
    if a.table is not None:
        return do_table(a.table)

    me = [PY, str(Path(__file__).resolve())]
    sizes = [int(x) for x in a.sizes.split(",")]
    # rows of the plain table per page, from a probe (its own process, not measured)
    probe = json.loads(child([*me, "--table", "400"])[2])
    rows_per_page = 400 / probe["pages"]
    # an empty interpreter with WeasyPrint imported: the floor of every figure below
    floor = child([PY, "-c", "import weasyprint, escrow.pack.render"])[1]
    print(f"python + weasyprint imported: {floor:.0f} MB peak")
    print(
        f"{'builds':>6} {'pages':>6} {'pack s':>7} {'pack MB':>8} {'MB/page':>7} "
        f"{'PDF MB':>6} {'table pages':>11} {'table s':>7} {'table MB':>8}"
    )
    pack_pts: list[tuple[float, float]] = []
    table_pts: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="escrow-pack-memory-") as tmp:
        for n in sizes:
            home = Path(tmp) / f"h{n}"
            child([*me, "--fill", str(n), str(home)])
            env = {**os.environ, "ESCROW_HOME": str(home)}
            out = home / "pack.pdf"
            args = ["pack", "--project", "example", "--generated-at", WHEN, "-o", str(out)]
            secs, mb, text = child([ESCROW, *args, "--json"], env)
            pages = json.loads(text)["pages"]
            tsecs, tmb, tpages = 0.0, 0.0, 0
            if not a.no_table:
                rows = max(1, round(pages * rows_per_page))
                tsecs, tmb, ttext = child([*me, "--table", str(rows)])
                tpages = json.loads(ttext)["pages"]
                table_pts.append((tpages, tmb))
            pack_pts.append((pages, mb))
            print(
                f"{n:>6} {pages:>6} {secs:>7.1f} {mb:>8.0f} {(mb - floor) / pages:>7.2f} "
                f"{out.stat().st_size / 1e6:>6.2f} {tpages:>11} {tsecs:>7.1f} {tmb:>8.0f}",
                flush=True,
            )
    if len(sizes) >= 2:
        print(
            f"slope (least squares, peak MB per page): pack {fit(pack_pts):.2f}"
            + (f", plain table {fit(table_pts):.2f}" if table_pts else "")
        )


if __name__ == "__main__":
    main()
