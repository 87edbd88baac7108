"""A synthetic build context for the capture benchmarks: N files, S bytes in all.

Most files are small (1–16 KiB, in folders of 200); ``LARGE_SHARE`` of the bytes
are in 100 large files.  The tree is made once and reused (a marker file holds
its parameters).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

LARGE_FILES = 100
LARGE_SHARE = 0.85


def make_tree(root: Path, files: int, total_bytes: int, seed: int = 7) -> Path:
    marker = root / ".escrow-bench-tree"
    wanted = f"{files} {total_bytes} {seed}\n"
    if marker.is_file() and marker.read_text() == wanted:
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    rng = random.Random(seed)
    large_each = int(total_bytes * LARGE_SHARE) // LARGE_FILES
    small_n = files - LARGE_FILES - 1  # one Dockerfile
    small_total = total_bytes - large_each * LARGE_FILES
    sizes = [rng.randint(1024, 16384) for _ in range(small_n)]
    scale = small_total / max(1, sum(sizes))
    (root / "large").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    for i in range(LARGE_FILES):
        with open(root / "large" / f"blob-{i:03}.bin", "wb") as f:
            left = large_each
            while left:
                n = min(left, 1 << 22)
                f.write(os.urandom(n))
                left -= n
    for i, size in enumerate(sizes):
        d = root / "small" / f"d{i // 200:03}"
        if i % 200 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05}.txt").write_bytes(os.urandom(max(1, int(size * scale))))
    marker.write_text(wanted)
    return root


def tree_bytes(root: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            n += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return n, size
