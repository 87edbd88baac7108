"""Benchmark: compare two 1 GiB layers that differ in one file.

Target (issue 6): within 2x the time of hashing the same bytes with hashlib in
one loop, with peak memory under 200 MiB.

Each measurement runs in a fresh Python process (so its peak RSS is its own):

* ``hash``    — reference: SHA-256 over both layer files in one loop (1 MiB reads);
* ``compare`` — ``LayerIndex.of_file`` on both layers + ``compare_indexes``;
* ``engine``  — (``--engine``) the same two layers as images in the Docker Engine
  (``docker import``), saved with ``docker save`` through the SDK, spooled,
  indexed and compared by :class:`escrow.rebuild.engine.EngineLayers`.

Usage: ``.venv/bin/python bench/rebuild_bench.py [--size-mib 1024] [--engine]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

FILE_MIB = 16
CHUNK = 1 << 20


def write_layer(path: Path, size_mib: int, block: bytes, changed: int | None) -> None:
    """A layer of ``size_mib // FILE_MIB`` files of FILE_MIB MiB each; file ``changed``
    (if any) differs in one byte."""
    count = max(1, size_mib // FILE_MIB)
    with open(path, "wb") as out:
        for i in range(count):
            info = tarfile.TarInfo(f"data/file{i:04d}.bin")
            info.size = FILE_MIB * CHUNK
            info.mode = 0o644
            info.mtime = 1_700_000_000
            out.write(info.tobuf(tarfile.PAX_FORMAT))
            for j in range(FILE_MIB):
                chunk = block
                if j == 0:
                    first = bytes([i & 0xFF, (i >> 8) & 0xFF, 1 if i == changed else 0])
                    chunk = first + block[len(first) :]
                out.write(chunk)
        out.write(bytes(1024))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_hash(paths: list[str]) -> dict[str, float]:
    t = time.perf_counter()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    h = hashlib.sha256()
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
                total += n
    return {"seconds": time.perf_counter() - t, "bytes": total, "peak_rss_mib": rss_mib()}


def phase_compare(paths: list[str]) -> dict[str, object]:
    from escrow.rebuild.compare import compare_indexes
    from escrow.rebuild.layers import LayerIndex

    t = time.perf_counter()
    a = LayerIndex.of_file(paths[0])
    b = LayerIndex.of_file(paths[1])
    c = compare_indexes(a, b)
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "differences": [(d.path, str(d.kind)) for d in c.differences],
        "peak_rss_mib": rss_mib(),
    }


def phase_engine(images: list[str], workdir: str) -> dict[str, object]:
    import docker

    from escrow.rebuild.compare import compare_indexes
    from escrow.rebuild.engine import EngineLayers

    api = docker.APIClient(version="auto")
    ids = [api.inspect_image(i)["RootFS"]["Layers"][0] for i in images]
    t = time.perf_counter()
    with EngineLayers(
        api,
        {"original": images[0], "rebuilt": images[1]},
        {"original": {ids[0]}, "rebuilt": {ids[1]}},
        workdir=workdir,
    ) as src:
        c = compare_indexes(src.index("original", ids[0]), src.index("rebuilt", ids[1]))
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "differences": [(d.path, str(d.kind)) for d in c.differences],
        "peak_rss_mib": rss_mib(),
    }


def phase_save_raw(images: list[str]) -> dict[str, object]:
    """Reference for the engine path: both ``docker save`` streams read and discarded."""
    from concurrent.futures import ThreadPoolExecutor

    import docker

    api = docker.APIClient(version="auto")

    def drain(image: str) -> int:
        return sum(len(c) for c in api.get_image(image))

    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        total = sum(pool.map(drain, images))
    return {"seconds": time.perf_counter() - t, "bytes": total, "peak_rss_mib": rss_mib()}


def run_phase(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--engine", action="store_true", help="also go through the Docker Engine")
    parser.add_argument("--dir", default=None, help="where to write the layers")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        if name == "hash":
            print(json.dumps(phase_hash(rest)))
        elif name == "compare":
            print(json.dumps(phase_compare(rest)))
        elif name == "save-raw":
            print(json.dumps(phase_save_raw(rest)))
        else:
            print(json.dumps(phase_engine(rest[:2], rest[2])))
        return

    with tempfile.TemporaryDirectory(prefix="escrow-bench-", dir=args.dir) as tmp:
        a, b = Path(tmp) / "a.tar", Path(tmp) / "b.tar"
        block = os.urandom(CHUNK)
        t = time.perf_counter()
        write_layer(a, args.size_mib, block, None)
        write_layer(b, args.size_mib, block, changed=args.size_mib // FILE_MIB // 2)
        gen = time.perf_counter() - t
        size = a.stat().st_size
        print(
            f"two layers of {size / CHUNK:.0f} MiB each, differing in one file "
            f"(written in {gen:.1f} s)"
        )
        run_phase("hash", str(a), str(b))  # warm the page cache for both measurements
        refs, cmps = [], []
        for _ in range(args.repeat):  # interleaved, so load from elsewhere hits both alike
            refs.append(run_phase("hash", str(a), str(b)))
            cmps.append(run_phase("compare", str(a), str(b)))
        ref = min(refs, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
        cmp_ = min(cmps, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
        ratio = float(cmp_["seconds"]) / float(ref["seconds"])  # type: ignore[arg-type]
        print(
            f"  hashlib sha256, one loop over both : {ref['seconds']:.2f} s  "
            f"({2 * size / CHUNK / float(ref['seconds']):.0f} MiB/s)  "  # type: ignore[arg-type]
            f"peak RSS {ref['peak_rss_mib']:.0f} MiB"
        )
        print(
            f"  escrow compare (index both + diff) : {cmp_['seconds']:.2f} s  "
            f"= {ratio:.2f}x hashlib (target <= 2x)  peak RSS {cmp_['peak_rss_mib']:.0f} MiB "
            "(target < 200 MiB)"
        )
        print(f"  differences found: {cmp_['differences']}")
        if args.engine:
            import docker

            client = docker.from_env()
            images = []
            try:
                for p in (a, b):
                    client.api.import_image(src=str(p), repository="escrow-bench/layer", tag=p.stem)
                    images.append(f"escrow-bench/layer:{p.stem}")
                raws, engs = [], []
                for _ in range(args.repeat):
                    raws.append(run_phase("save-raw", *images))
                    engs.append(run_phase("engine", *images, tmp))
                raw = min(raws, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
                eng = min(engs, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
                print(
                    f"  docker save of both images, bytes discarded: {raw['seconds']:.2f} s "
                    f"({float(raw['bytes']) / CHUNK / float(raw['seconds']):.0f} MiB/s)"
                )  # type: ignore[arg-type]
                print(
                    f"  through the engine (docker save, spool, index, diff): "
                    f"{eng['seconds']:.2f} s = "
                    f"{float(eng['seconds']) / float(raw['seconds']):.2f}x docker save alone, "  # type: ignore[arg-type]
                    f"{float(eng['seconds']) / float(ref['seconds']):.2f}x hashlib  "  # type: ignore[arg-type]
                    f"peak RSS {eng['peak_rss_mib']:.0f} MiB; differences {eng['differences']}"
                )
            finally:
                for image in images:
                    client.images.remove(image, force=True)


if __name__ == "__main__":
    main()
