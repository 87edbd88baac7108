"""Benchmark of the registry-backed deposit store (issue 10), each figure beside its
reference measured in the same run.

Thirty daily phoenix builds of an example sharing one base image (random bytes,
so compression cannot help either side).  Each build is deposited into
``oci://REGISTRY/bench/deposits`` (a docker-registry of its own, started with
``scripts/registry.sh``) and, as the reference, the same image is pushed with
``docker push`` to a second registry of its own.  Figures:

1. bytes each deposit adds to the registry's storage directory, against the
   size of the image (the sum of the thirty image sizes is what storing them
   whole would take), and against what ``docker push`` adds to its registry;
2. time of each deposit against ``docker push`` of the same image (medians
   and first day; both are incremental: the base is already there after day 1).

Run: ``.venv/bin/python bench/registry_bench.py [--days 30] [--base-mib 64]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DOCKER = "/usr/bin/docker"
ROOT = Path(__file__).resolve().parent.parent


def sh(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout.strip()


def du(path: Path) -> int:
    """Bytes of the regular files under ``path`` (the registry's storage)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def start_registry(folder: Path) -> str:
    env = {**os.environ, "ESCROW_REGISTRY_DIR": str(folder)}
    return sh("bash", str(ROOT / "scripts" / "registry.sh"), env=env)


def stop_registry(folder: Path) -> None:
    env = {**os.environ, "ESCROW_REGISTRY_DIR": str(folder)}
    subprocess.run(["bash", str(ROOT / "scripts" / "registry.sh"), "stop"], env=env, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--base-mib", type=int, default=64)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="escrow-registry-bench-"))
    os.environ["ESCROW_HOME"] = str(work / "home")
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_DEPOSIT_STORE", "ESCROW_SERVER"):
        os.environ.pop(var, None)
    sys.path.insert(0, str(ROOT))
    from escrow.blobs import BlobStore
    from escrow.capture.build import BuildRequest, phoenix_build
    from escrow.capture.engine import DockerEngine
    from escrow.capture.publish import Publisher
    from escrow.cli.main import main as escrow_main
    from escrow.config import load_settings
    from escrow.deposit.deposit import deposit_build
    from escrow.deposit.oci import OciDepositStore

    try:
        escrow_main(["init"])
    except SystemExit as e:
        assert e.code == 0, e.code
    run = uuid.uuid4().hex[:8]
    tags: list[str] = []
    dep_dir, push_dir = work / "deposit-registry", work / "push-registry"
    try:
        dep_reg, push_reg = start_registry(dep_dir), start_registry(push_dir)
        dep_storage, push_storage = dep_dir / "storage", push_dir / "storage"
        base = work / "base"
        base.mkdir()
        shutil.copy2("/bin/busybox", base / "busybox")
        (base / "data.bin").write_bytes(os.urandom(opts.base_mib << 20))
        (base / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY data.bin /opt/data.bin\nENV PATH=/bin\n"
        )
        base_tag = f"escrow-bench/registry-base-{run}:1"
        tags.append(base_tag)
        sh(DOCKER, "build", "-q", "-t", base_tag, str(base))

        settings = load_settings()
        engine = DockerEngine()
        publisher = Publisher.open(settings)
        blobs = BlobStore(settings.blobs_dir)
        store = OciDepositStore(f"oci://{dep_reg}/bench/deposits")
        ctx = work / "app"
        ctx.mkdir()
        (ctx / "shared.txt").write_text("library code that does not change\n" * 2000)
        (ctx / "Dockerfile").write_text(
            f"FROM {base_tag}\nCOPY . /app\n"
            'RUN ["/bin/busybox", "sh", "-c", "date > /app/built-at"]\n'
        )
        sizes: list[int] = []
        dep_added: list[int] = []
        push_added: list[int] = []
        dep_times: list[float] = []
        push_times: list[float] = []
        for day in range(opts.days):
            (ctx / "today.txt").write_text(f"day {day}\n" + os.urandom(32 << 10).hex())
            tag = f"{push_reg}/bench/app-{run}:day{day}"
            tags.append(tag)
            outcome = phoenix_build(
                BuildRequest(context=ctx, tags=(tag,), project="bench"),
                engine=engine,
                blobs=blobs,
            )
            entry, _ = publisher.publish(outcome.statement)
            sizes.append(int(engine.api.inspect_image(tag)["Size"]))
            before = du(dep_storage)
            t0 = time.perf_counter()
            result = deposit_build(
                settings, entry.index, context_dir=ctx, engine=engine, store=store
            )
            dep_times.append(time.perf_counter() - t0)
            assert result.complete, result.missing
            dep_added.append(du(dep_storage) - before)
            before = du(push_storage)
            t0 = time.perf_counter()
            sh(DOCKER, "push", tag)
            push_times.append(time.perf_counter() - t0)
            push_added.append(du(push_storage) - before)
        store.close()

        mib = 1 << 20
        total_img = sum(sizes)
        med = statistics.median
        print(f"# escrow registry benchmark ({opts.days} daily builds, base {opts.base_mib} MiB)")
        print()
        print("| figure | escrow deposit into the registry | reference |")
        print("|---|---|---|")
        print(
            f"| registry storage after {opts.days} builds | {sum(dep_added) / mib:.1f} MiB | "
            f"{total_img / mib:.1f} MiB = sum of the {opts.days} image sizes; `docker push` of "
            f"the same images: {sum(push_added) / mib:.1f} MiB |"
        )
        print(
            f"| stored ÷ sum of image sizes | {sum(dep_added) / total_img:.3f} | "
            f"`docker push`: {sum(push_added) / total_img:.3f}; one image's share "
            f"{1 / opts.days:.3f} |"
        )
        print(
            f"| bytes added on day 1 | {dep_added[0] / mib:.1f} MiB | image size "
            f"{sizes[0] / mib:.1f} MiB; `docker push` {push_added[0] / mib:.1f} MiB |"
        )
        print(
            f"| bytes added per later day (median) | {med(dep_added[1:]) / 1024:.0f} KiB | "
            f"image size {med(sizes[1:]) / mib:.1f} MiB; `docker push` "
            f"{med(push_added[1:]) / 1024:.0f} KiB |"
        )
        print(f"| time on day 1 | {dep_times[0]:.2f} s | `docker push` {push_times[0]:.2f} s |")
        print(
            f"| time per later day (median) | {med(dep_times[1:]):.2f} s "
            f"({med(dep_times[1:]) / med(push_times[1:]):.2f}×) | `docker push` "
            f"{med(push_times[1:]):.2f} s |"
        )
        print(
            f"| total time, {opts.days} days | {sum(dep_times):.1f} s | `docker push` "
            f"{sum(push_times):.1f} s |"
        )
    finally:
        for tag in reversed(tags):
            subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True, check=False)
        stop_registry(dep_dir)
        stop_registry(push_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
