"""Benchmark of escrow deposits (issue 7), every figure beside its reference from the same run.

1. Thirty daily phoenix builds of an example sharing one base image: stored
   bytes of the deposit store ÷ the sum of the sizes of the thirty images.
2. Depositing a build (into an empty store: the base and the image are saved
   layer by layer) against ``docker save -o`` of the same image; best of
   interleaved runs.

Run: ``.venv/bin/python bench/deposit_bench.py [--days 30] [--base-mib 64]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DOCKER = "/usr/bin/docker"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--base-mib", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="escrow-deposit-bench-"))
    os.environ["ESCROW_HOME"] = str(work / "home")
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_DEPOSIT_STORE", "ESCROW_SERVER"):
        os.environ.pop(var, None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from escrow.blobs import BlobStore
    from escrow.capture.build import BuildRequest, phoenix_build
    from escrow.capture.engine import DockerEngine
    from escrow.capture.publish import Publisher
    from escrow.cli.main import main as escrow_main
    from escrow.config import load_settings
    from escrow.deposit.deposit import deposit_build
    from escrow.deposit.gc import store_stats
    from escrow.deposit.store import FileDepositStore, open_store

    try:
        escrow_main(["init"])
    except SystemExit as e:
        assert e.code == 0, e.code
    run = uuid.uuid4().hex[:8]
    tags: list[str] = []
    try:
        base = work / "base"
        base.mkdir()
        shutil.copy2("/bin/busybox", base / "busybox")
        (base / "data.bin").write_bytes(os.urandom(opts.base_mib << 20))
        (base / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY data.bin /opt/data.bin\nENV PATH=/bin\n"
        )
        base_tag = f"escrow-bench/deposit-base-{run}:1"
        tags.append(base_tag)
        sh(DOCKER, "build", "-q", "-t", base_tag, str(base))

        settings = load_settings()
        engine = DockerEngine()
        publisher = Publisher.open(settings)
        blobs = BlobStore(settings.blobs_dir)
        ctx = work / "app"
        ctx.mkdir()
        (ctx / "shared.txt").write_text("library code that does not change\n" * 2000)
        (ctx / "Dockerfile").write_text(
            f"FROM {base_tag}\nCOPY . /app\n"
            'RUN ["/bin/busybox", "sh", "-c", "date > /app/built-at"]\n'
        )
        image_sizes = 0
        deposit_times: list[float] = []
        indexes: list[int] = []
        for day in range(opts.days):
            (ctx / "today.txt").write_text(f"day {day}\n" + os.urandom(32 << 10).hex())
            tag = f"escrow-bench/deposit-{run}:day{day}"
            tags.append(tag)
            outcome = phoenix_build(
                BuildRequest(context=ctx, tags=(tag,), project="bench"),
                engine=engine,
                blobs=blobs,
            )
            entry, _ = publisher.publish(outcome.statement)
            indexes.append(entry.index)
            image_sizes += int(engine.api.inspect_image(tag)["Size"])
            t0 = time.perf_counter()
            result = deposit_build(settings, entry.index, context_dir=ctx, engine=engine)
            deposit_times.append(time.perf_counter() - t0)
            assert result.complete, result.missing
        stats = store_stats(open_store(settings.home))
        stored = stats["bytesOnDisk"]

        # 2. deposit into an empty store vs docker save of the same image, interleaved
        last_tag = tags[-1]
        save_best = deposit_best = float("inf")
        for i in range(opts.repeats):
            out = work / f"save-{i}.tar"
            t0 = time.perf_counter()
            sh(DOCKER, "save", "-o", str(out), last_tag)
            save_best = min(save_best, time.perf_counter() - t0)
            save_size = out.stat().st_size
            out.unlink()
            fresh = FileDepositStore(work / f"fresh-{i}")
            t0 = time.perf_counter()
            deposit_build(settings, indexes[-1], context_dir=ctx, engine=engine, store=fresh)
            deposit_best = min(deposit_best, time.perf_counter() - t0)
            shutil.rmtree(fresh.root)

        # diagnostic: the same without fsync (docker save -o does not fsync its output)
        real_fsync = os.fsync
        os.fsync = lambda fd: None  # type: ignore[assignment]
        nosync_best = float("inf")
        try:
            for i in range(opts.repeats):
                fresh = FileDepositStore(work / f"nosync-{i}")
                t0 = time.perf_counter()
                deposit_build(settings, indexes[-1], context_dir=ctx, engine=engine, store=fresh)
                nosync_best = min(nosync_best, time.perf_counter() - t0)
                shutil.rmtree(fresh.root)
        finally:
            os.fsync = real_fsync

        mib = 1 << 20
        print(f"# escrow deposit benchmark ({opts.days} daily builds, base {opts.base_mib} MiB)")
        print()
        print("| figure | escrow | reference |")
        print("|---|---|---|")
        print(
            f"| deposit store after {opts.days} builds | {stored / mib:.1f} MiB stored | "
            f"{image_sizes / mib:.1f} MiB = sum of the {opts.days} image sizes |"
        )
        print(
            f"| stored ÷ sum of image sizes | {stored / image_sizes:.3f} | "
            f"{1 / opts.days:.3f} = one image's share (1/{opts.days}) |"
        )
        print(
            f"| dedup saved (logical − stored) | {stats['bytesSavedByDedup'] / mib:.1f} MiB | "
            f"{stats['bytesLogical'] / mib:.1f} MiB logical |"
        )
        print(
            f"| daily deposit, base already stored (median) | "
            f"{sorted(deposit_times)[len(deposit_times) // 2] * 1000:.0f} ms | "
            f"first day {deposit_times[0] * 1000:.0f} ms |"
        )
        print(
            f"| deposit into an empty store (best of {opts.repeats}) | {deposit_best:.2f} s "
            f"({deposit_best / save_best:.2f}×) | docker save -o of the same image "
            f"{save_best:.2f} s ({save_size / mib:.0f} MiB) |"
        )
        print(
            f"| the same without fsync (diagnostic) | {nosync_best:.2f} s "
            f"({nosync_best / save_best:.2f}×) | docker save -o {save_best:.2f} s |"
        )
    finally:
        for tag in reversed(tags):
            subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
