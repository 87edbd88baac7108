"""``escrow build`` of a build that prints a lot, against ``docker build --no-cache``.

    .venv/bin/python bench/loud_build.py [--runs 1] [--mb 50] [--line-mb 20]

Two builds on the test base image, each run by both commands as new processes (in
the same round, one after the other) on the same engine's classic builder:

* ``lines``: a RUN that prints ``--mb`` MB of 64-byte lines;
* ``one line``: a RUN that prints one ``--line-mb`` MB line with no newline.

Each is timed with ``-q`` (nothing shown) and without (every line written to
stderr, here ``/dev/null``; ``docker build`` writes them to stdout), and each
figure is printed beside ``docker build``'s of the same round.  No verdict: the
figures are for BENCHMARKS.md.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
DOCKER = "/usr/bin/docker"

LINE = "x" * 63  # with its newline: 64 bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--mb", type=int, default=50, help="MB of 64-byte lines printed")
    ap.add_argument("--line-mb", type=int, default=20, help="MB of the one line printed")
    args = ap.parse_args()
    from tests.conftest import BASE_TAG, build_base_image, dangling_images, remove_dangling_since

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "escrow")], check=True)
    if subprocess.run([DOCKER, "image", "inspect", BASE_TAG], capture_output=True).returncode:
        build_base_image()
    work = Path(tempfile.mkdtemp(prefix="escrow-bench-loud-"))
    runs = {
        "lines": f"yes {LINE} | head -c {args.mb * 1000 * 1000}",
        "one line": f"head -c {args.line_mb * 1000 * 1000} /dev/zero | tr '\\0' a",
    }
    contexts: dict[str, Path] = {}
    for i, (name, command) in enumerate(runs.items()):
        ctx = work / f"ctx{i}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nRUN {command}\n")
        contexts[name] = ctx
    env = dict(os.environ, ESCROW_HOME=str(work / "home"), DOCKER_BUILDKIT="0")
    env.pop("ESCROW_DB_URL", None)
    subprocess.run([BIN / "escrow", "init"], env=env, check=True, capture_output=True)
    before = dangling_images()
    print(
        f"# {args.mb} MB of 64-byte lines; one {args.line_mb} MB line; {args.runs} run(s) "
        f"each (median); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    try:
        for name, ctx in contexts.items():
            for quiet in (True, False):
                q = ["-q"] if quiet else []
                docker = [DOCKER, "build", "--no-cache", *q, "-t", "hunt-loud-bench:docker"]
                escrow = [str(BIN / "escrow"), "build", "-t", "hunt-loud-bench:escrow", *q]
                times: dict[str, list[float]] = {"docker": [], "escrow": []}
                for _ in range(args.runs):
                    for who, cmd in (("docker", docker), ("escrow", escrow)):
                        t = time.perf_counter()
                        subprocess.run(
                            [*cmd, str(ctx)],
                            env=env,
                            check=True,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                        times[who].append(time.perf_counter() - t)
                d, e = (statistics.median(times[k]) for k in ("docker", "escrow"))
                shown = "-q" if quiet else "shown"
                print(
                    f"{name:<9} {shown:<6} docker build {d:7.2f} s   escrow build {e:7.2f} s"
                    f"   {e / d:5.2f}x"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for tag in ("hunt-loud-bench:docker", "hunt-loud-bench:escrow"):
            subprocess.run([DOCKER, "rmi", tag], capture_output=True)
        remove_dangling_since(before)


if __name__ == "__main__":
    main()
