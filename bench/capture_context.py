"""Context capture throughput: escrow's archive + hashes against a plain hashlib walk.

    .venv/bin/python bench/capture_context.py [--files 20000] [--gib 1.0] [--runs 3]

For each tree (small files only, large files only, the whole tree) it times,
in the same run and alternating, after one warm-up pass (page cache warm):

* reference — ``os.walk`` + ``hashlib.file_digest(f, "sha256")`` of every file;
* escrow build: streamed — what ``escrow build`` does: the SDK's .dockerignore
  selection, the tar archive produced while it is uploaded (here: discarded),
  every file and the archive hashed (``ContextStream``);
* escrow archive spooled — the same archive kept (in memory up to 128 MiB,
  then a temporary file), as ``make_context`` does for library callers;
* escrow record: no archive — file hashes and tree digest only (``escrow record``,
  ``escrow capture --context``).

Target (issue 5): escrow at least 0.5x the reference throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from capture_tree import make_tree, tree_bytes  # noqa: E402

from escrow.capture.context import ContextStream, make_context  # noqa: E402


def reference(root: Path) -> None:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                hashlib.file_digest(f, "sha256")


def escrow_streamed(root: Path) -> None:
    stream = ContextStream(root, None)
    for _ in stream.chunks():  # what `escrow build` uploads, here discarded
        pass
    stream.result()


def escrow_spooled(root: Path) -> None:
    with make_context(root, require_dockerfile=False):
        pass


def escrow_digest_only(root: Path) -> None:
    with make_context(root, require_dockerfile=False, keep_archive=False):
        pass


def parallel_capacity(root: Path) -> float:
    """Speed-up of hashing two copies of the work on two threads against one
    (about 2.0 on an idle 2-core machine, 1.0 when no second core is free)."""
    import threading

    t = time.perf_counter()
    reference(root)
    single = time.perf_counter() - t
    threads = [threading.Thread(target=reference, args=(root,)) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return 2 * single / (time.perf_counter() - t)


def timed(fn: Callable[[Path], None], root: Path) -> float:
    t = time.perf_counter()
    fn(root)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/escrow-bench-context"))
    args = ap.parse_args()
    root = make_tree(args.dir, args.files, int(args.gib * (1 << 30)))
    for sub in ("small", "large"):  # each case is a build context of its own
        if not (root / sub / "Dockerfile").is_file():
            (root / sub / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    cases = [("small files", root / "small"), ("large files", root / "large"), ("whole tree", root)]
    fns = [
        ("reference hashlib walk", reference),
        ("escrow build: streamed", escrow_streamed),
        ("escrow archive spooled", escrow_spooled),
        ("escrow record: no archive", escrow_digest_only),
    ]
    print(f"# context capture, {args.runs} runs each (median), page cache warm")
    print(
        f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"parallel capacity (2 hashing threads) {parallel_capacity(root / 'large'):.2f}x"
    )
    print(
        f"{'tree':<12} {'files':>7} {'MiB':>7}  {'method':<26} {'s':>7} "
        f"{'MiB/s':>8} {'files/s':>9} {'vs ref':>7}"
    )
    for label, path in cases:
        n, size = tree_bytes(path)
        reference(path)  # warm-up: page cache
        times: dict[str, list[float]] = {name: [] for name, _ in fns}
        for _ in range(args.runs):
            for name, fn in fns:
                times[name].append(timed(fn, path))
        ref = statistics.median(times[fns[0][0]])
        for name, _ in fns:
            t = statistics.median(times[name])
            print(
                f"{label:<12} {n:>7} {size / 2**20:>7.0f}  {name:<26} {t:>7.2f} "
                f"{size / 2**20 / t:>8.0f} {n / t:>9.0f} {ref / t:>6.2f}x"
            )


if __name__ == "__main__":
    main()
