"""The same context recorded by escrow and by in-toto-run (PyPI ``in-toto``).

    .venv/bin/python bench/capture_intoto.py [--files 20000] [--gib 1.0] [--runs 3]

Both wrap the same no-op command (``true``) and record the context before and
after it: ``in-toto-run -m CTX -p CTX`` (materials and products, an Ed25519
signed link) against ``escrow record --context CTX -- true`` (context digest
before and after, signed manifest appended to a SQLite ledger).  Both are run
as the command-line tools a pipeline would call, alternating, page cache warm.
Target (issue 5): escrow is faster.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from capture_tree import make_tree, tree_bytes  # noqa: E402

BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/escrow-bench-context"))
    args = ap.parse_args()
    root = make_tree(args.dir, args.files, int(args.gib * (1 << 30)))
    n, size = tree_bytes(root)
    work = Path(tempfile.mkdtemp(prefix="escrow-bench-intoto-"))
    env = dict(os.environ, ESCROW_HOME=str(work / "home"))
    env.pop("ESCROW_DB_URL", None)
    subprocess.run([BIN / "escrow", "init"], env=env, check=True, capture_output=True)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = work / "intoto.pem"
    key.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    commands = {
        "in-toto-run -m CTX -p CTX": [
            str(BIN / "in-toto-run"),
            "-n",
            "build",
            "--signing-key",
            str(key),
            "-m",
            str(root),
            "-p",
            str(root),
            "--",
            "true",
        ],
        "escrow record --context CTX": [
            str(BIN / "escrow"),
            "record",
            "--context",
            str(root),
            "-q",
            "--json",
            "--",
            "true",
        ],
    }
    for cmd in commands.values():  # warm-up: page cache, first-run imports
        subprocess.run(cmd, env=env, cwd=work, check=True, capture_output=True)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            t = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=work, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    print(
        f"# {n} files, {size / 2**20:.0f} MiB; {args.runs} runs each (median); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    ref = statistics.median(times["in-toto-run -m CTX -p CTX"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<30} {t:7.2f} s   {ref / t:5.2f}x in-toto-run's speed")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
