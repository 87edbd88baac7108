"""A year of builds: the commands an auditor or engineer runs, at the scale users reach.

P projects rebuilt daily for D days (default 10 x 365 = 3,650 builds), a rebuild verdict
per project every 7 days, a build-key rotation half way, a monthly audit-pack entry per
project, and a deposit record per build (small blobs: what ``escrow gc`` reads is the
records, not the layers).  Every entry is a real signed envelope appended through
``Ledger.append``; only the clock is moved (``escrow.ledger.store.now_us``), so that
the integration times span the year and ``--since``/``--until`` select real periods.

Then each command runs as its own process, timed, with its peak memory (GNU ``time``):
``escrow log`` with filters and paging, ``ledger verify``, ``keys list``, ``diff``,
``gc --keep-last 30`` (dry run), and with ``--pack N`` an ``escrow pack`` of one
project's first N days and its ``pack verify`` (the slow part: about 0.15-0.35 s and
0.25 MB a page, two pages a build).  A year of all projects is asked for with
``--max-builds 1000`` and refused; the bench checks that it is, and
how fast.

    .venv/bin/python bench/year_bench.py [--projects 10] [--days 365] [--pack 90]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pack"))

from synth import manifest_variant  # noqa: E402

START = datetime(2025, 12, 1, tzinfo=UTC)
DOCS = ROOT / "tests" / "assets" / "documents"


def fill(home: Path, projects: int, days: int) -> dict[str, Any]:
    """Append the year's entries with the clock moved; returns counts and indexes."""
    import escrow.ledger.store as store_mod

    clock = [int(START.timestamp() * 1e6)]
    real_now = store_mod.now_us
    store_mod.now_us = lambda: clock[0]
    try:
        return _fill(home, projects, days, clock, store_mod)
    finally:
        store_mod.now_us = real_now


def _fill(home: Path, projects: int, days: int, clock: list[int], store_mod: Any) -> dict[str, Any]:
    from escrow.cli.main import main
    from escrow.config import load_settings
    from escrow.deposit.store import ENTRIES, FileDepositStore
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    os.environ["ESCROW_HOME"] = str(home)
    try:
        main(["init"])
    except SystemExit as e:
        assert not e.code, e.code
    settings = load_settings()
    key = SigningKey.load(settings.key_path, settings.passphrase)
    rebuild_doc = json.loads((DOCS / "rebuild-verification.identical.json").read_text())
    pack_doc = json.loads((DOCS / "audit-pack.json").read_text())
    names = [f"team{j:02d}-app" for j in range(projects)]
    store = FileDepositStore(home / "deposits")
    base_id = store.put(json.dumps({"rootfs": {"diff_ids": ["sha256:" + "aa" * 32]}}).encode())
    counts = {"build": 0, "rebuild": 0, "pack": 0}
    builds: dict[str, list[int]] = {p: [] for p in names}
    slots = 3 * projects + 2

    def at(day: int, slot: int) -> None:
        t = START + timedelta(days=day, seconds=slot * 86400 // slots)
        clock[0] = max(clock[0] + 1, int(t.timestamp() * 1e6))

    with Ledger.open(settings) as ledger:
        for day in range(days):
            if day == days // 2:  # a rotation: the old key retired, a new one registered
                at(day, 0)
                new = SigningKey.generate()
                ledger.register_key(new.public, "build-2")
                ledger.retire_key(key.keyid, store_mod.from_us(clock[0]), "rotated")
                key = new
            for j, p in enumerate(names):
                at(day, 1 + j)
                entry, _ = ledger.append(sign_statement(manifest_variant(day, project=p), key))
                builds[p].append(entry.index)
                counts["build"] += 1
                log = store.put(f"log {entry.index}".encode())
                ctx = store.put(json.dumps({"skeleton": log, "segments": []}).encode())
                record = {
                    "type": "https://escrow.dev/deposit/v1",
                    "entry": {
                        "index": entry.index,
                        "leafHash": entry.leaf_hash,
                        "project": p,
                        "imageId": entry.image_id,
                        "integratedAt": entry.integrated_at.isoformat(),
                    },
                    "context": {"index": ctx},
                    "logs": [log],
                    "baseImages": [{"reference": "base", "imageId": "sha256:" + base_id}],
                }
                store.set_ref(ENTRIES, entry.leaf_hash, store.put(json.dumps(record).encode()))
                if day % 7 == 0:
                    at(day, 1 + projects + j)
                    rb = copy.deepcopy(rebuild_doc)
                    iid = str(entry.image_id)
                    rb["subject"][0]["digest"]["sha256"] = iid.removeprefix("sha256:")
                    rb["predicate"]["original"] = {
                        "index": entry.index,
                        "leafHash": entry.leaf_hash,
                        "imageId": iid,
                    }
                    rb["predicate"]["project"] = p
                    rb["predicate"]["rebuild"]["imageId"] = iid
                    ledger.append(sign_statement(rb, key))
                    counts["rebuild"] += 1
                if day % 30 == 29:
                    at(day, 1 + 2 * projects + j)
                    pk = copy.deepcopy(pack_doc)
                    h = hashlib.sha256(f"{p}/{day}".encode()).hexdigest()[:16].upper()
                    pid = "EP-" + "-".join(h[i : i + 4] for i in range(0, 16, 4))
                    pk["predicate"]["packId"] = pid
                    pk["predicate"]["scope"]["projects"] = [p]
                    pk["subject"][0]["name"] = pid + ".pdf"
                    pk["subject"][0]["digest"]["sha256"] = hashlib.sha256(pid.encode()).hexdigest()
                    ledger.append(sign_statement(pk, key))
                    counts["pack"] += 1
        size = ledger.size()
    store.unpin()
    settings.key_path.unlink()  # the rotated key signs from now on (packs too)
    key.save(settings.key_path, settings.passphrase)
    return {"counts": counts, "size": size, "builds": builds}


def run(home: Path, *args: str) -> tuple[float, float, int, str]:
    """``escrow ARGS`` as its own process: seconds, peak RSS in MB (GNU time's, since the
    child's own ``ru_maxrss`` would count this process's memory it was forked with),
    exit code, stderr."""
    env = {**os.environ, "ESCROW_HOME": str(home)}
    with tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name]
            + [str(ROOT / ".venv" / "bin" / "escrow"), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        secs = time.perf_counter() - t
        peak_kb = int(rss.read().split()[-1])
    return secs, peak_kb / 1024, proc.returncode, proc.stderr.decode(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--projects", type=int, default=10)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--pack", type=int, default=0, help="also pack one project's first N days")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="escrow-year-bench-") as tmp:
        home = Path(tmp) / "home"
        t = time.perf_counter()
        filled = fill(home, a.projects, a.days)
        print(
            f"filled {filled['size']:,} entries {filled['counts']} "
            f"in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
        b = filled["builds"]["team03-app" if a.projects > 3 else "team00-app"]
        commands: list[tuple[str, ...]] = [
            ("log",),
            ("log", "--limit", "1000"),
            ("log", "--kind", "build-manifest", "--after", str(max(filled["size"] - 200, 0))),
            ("log", "--project", "team00-app", "--kind", "rebuild-verification"),
            ("log", "--project", "team00-app", "--since", "2026-06-01", "--until", "2026-07-01"),
            ("keys", "list"),
            ("diff", str(b[0]), str(b[-1])),
            ("ledger", "verify"),
            ("gc", "--keep-last", "30"),
            (
                "pack",
                "--since",
                "2025-12-01",
                "--until",
                "2026-12-01",
                "--max-builds",
                "1000",
                "-o",
                f"{tmp}/all.pdf",
            ),
        ]
        until = (START + timedelta(days=a.pack)).date().isoformat()
        if a.pack:
            one = ("--project", "team00-app", "--since", "2025-12-01", "--until", until)
            commands += [
                ("pack", *one, "-o", f"{tmp}/one.pdf"),
                ("pack", "verify", f"{tmp}/one.pdf"),
            ]
        print(f"{'seconds':>8} {'peak MB':>8} {'exit':>4}  command")
        for args in commands:
            secs, mb, code, err = run(home, *args)
            print(f"{secs:>8.2f} {mb:>8.0f} {code:>4}  escrow {' '.join(args)}", flush=True)
            if args[0] == "pack" and code:
                print(f"{'':>24}{err.strip()[:160]}")


if __name__ == "__main__":
    main()
