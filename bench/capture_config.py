"""What reading an image's raw config (with ``history[].empty_layer``) costs.

    .venv/bin/python bench/capture_config.py [--mib 300] [--runs 5]

escrow reads the config from the ``docker save`` stream (``/images/{id}/get``)
and stops at the config member; the engine (20.10) exports every layer before
the first byte, so the cost grows with the image.  Beside it, in the same run:
the inspect and history endpoints (which lack the flag) for the same images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DOCKER = "/usr/bin/docker"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=300)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from escrow.capture.engine import DockerEngine
    from tests.conftest import BASE_TAG, build_base_image

    if subprocess.run([DOCKER, "image", "inspect", BASE_TAG], capture_output=True).returncode:
        build_base_image()
    big = f"escrow-bench/config-{args.mib}m:latest"
    if subprocess.run([DOCKER, "image", "inspect", big], capture_output=True).returncode:
        with tempfile.TemporaryDirectory() as d:
            with open(Path(d) / "blob", "wb") as f:
                for _ in range(args.mib):
                    f.write(os.urandom(1 << 20))
            (Path(d) / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY blob /blob\nLABEL a=b\n")
            subprocess.run([DOCKER, "build", "-q", "-t", big, d], check=True, capture_output=True)
    print(f"# {args.runs} runs each (median); load average {os.getloadavg()[0]:.1f}")
    with DockerEngine() as engine:
        for ref in (BASE_TAG, big):
            image = engine.inspect_image(ref)
            assert image is not None
            image_id = str(image["Id"])
            size = int(image["Size"]) / 2**20
            for name, fn in (
                ("inspect endpoint", lambda i=image_id: engine.inspect_image(i)),
                ("history endpoint", lambda i=image_id: engine.history(i)),
                ("config via save stream", lambda i=image_id: engine.image_config(i)),
            ):
                ts = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t)
                print(
                    f"{ref:<40} {size:7.1f} MiB  {name:<24} {statistics.median(ts) * 1000:8.1f} ms"
                )


if __name__ == "__main__":
    main()
