"""Server benchmark (issue 9): each figure beside its reference, measured in the same run.

    .venv/bin/python bench/server_bench.py [--duration 30] [--clients 8] [--pg-url URL]
                                          [--local 1000] [--dir DIR]

1. 8 concurrent clients post signed build manifests over loopback for 30 s to ONE
   `escrow serve` on SQLite: entries/s, p50/p99 latency, against the rate of a local
   `escrow post` of the same kind of envelopes (one process, JSON Lines) on SQLite.
2. The same against TWO `escrow serve` processes sharing one PostgreSQL ledger (clients
   alternate between them), against a local `escrow post` on PostgreSQL.

Afterwards every acknowledged entry must be in the ledger exactly once, and
``Ledger.verify`` must pass; the script exits 1 otherwise.  ``--pg-url`` defaults to
``ESCROW_TEST_PG_URL`` (``scripts/pg.sh`` prints one); a fresh database is created in
that cluster and dropped afterwards.  Envelopes are signed before the clock starts
(a pool of them), so the figures are the server's, not the client's signing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from escrow.config import load_settings
from escrow.ledger.store import Ledger, make_engine
from escrow.server.auth import Role, TokenStore
from escrow.signing.dsse import sign_statement
from escrow.signing.keys import SigningKey

ROOT = Path(__file__).resolve().parent.parent
ASSET = ROOT / "tests" / "assets" / "build-manifest.example.json"
ESCROW = [sys.executable, "-m", "escrow.cli.main"]


def line(name: str, value: str, reference: str, note: str = "") -> None:
    print(f"{name:<46} {value:>16}   reference {reference:>16}   {note}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env.update({"ESCROW_HOME": str(home), "ESCROW_DB_URL": db_url})
    return env


def init_home(home: Path, db_url: str) -> Any:
    subprocess.run([*ESCROW, "init"], env=env_for(home, db_url), check=True, capture_output=True)
    return load_settings(home=home, db_url=db_url)


def envelopes(key: SigningKey, n: int, tag: str) -> list[bytes]:
    base = json.loads(ASSET.read_text())
    out = []
    for i in range(n):
        base["predicate"]["build"]["id"] = f"{tag}-{i}-{uuid.uuid4()}"
        base["predicate"]["build"]["project"] = f"bench-{i % 16}"
        out.append(sign_statement(base, key).to_bytes())
    return out


def local_post_rate(home: Path, db_url: str, n: int, tag: str) -> float:
    """Entries/s of one `escrow post FILE` of n envelopes (JSON Lines), process start included."""
    settings = init_home(home, db_url)
    key = SigningKey.load(settings.key_path)
    data = envelopes(key, n, tag)
    path = home / "post.jsonl"
    path.write_bytes(b"\n".join(data) + b"\n")
    t0 = time.perf_counter()
    r = subprocess.run(
        [*ESCROW, "post", str(path), "--json"],
        env=env_for(home, db_url),
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"escrow post failed: {r.stderr}")
    assert json.loads(r.stdout)["appended"] == n
    return n / elapsed


def start_server(home: Path, db_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*ESCROW, "serve", "--port", str(port), "--no-access-log", "--no-packs"],
            env=env_for(home, db_url),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"escrow serve did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_clients(
    urls: list[str], token: str, pool: list[bytes], clients: int, duration: float
) -> tuple[list[float], list[str], float, int]:
    """Post from ``clients`` threads until ``duration`` passes or the pool is used up."""
    lock = threading.Lock()
    latencies: list[float] = []
    acked: list[str] = []
    errors: list[str] = []
    cursor = iter(range(len(pool)))
    stop_at = time.perf_counter() + duration

    def worker(c: int) -> None:
        http = [
            httpx.Client(
                base_url=u,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=120,
            )
            for u in urls
        ]
        mine_lat: list[float] = []
        mine_ack: list[str] = []
        try:
            k = 0
            while time.perf_counter() < stop_at:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                r = http[(c + k) % len(http)].post("/v1/entries", content=pool[i])
                mine_lat.append(time.perf_counter() - t0)
                k += 1
                if r.status_code != 201:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    continue
                mine_ack.append(r.json()["entry"]["leaf_hash"])
        finally:
            for h in http:
                h.close()
            with lock:
                latencies.extend(mine_lat)
                acked.extend(mine_ack)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} posts failed, e.g. {errors[0]}")
    return latencies, acked, elapsed, len(pool)


def check_ledger(settings: Any, acked: list[str]) -> tuple[bool, str]:
    with Ledger.open(settings) as ledger:
        size = ledger.size()
        stored: list[str] = []
        after: int | None = None
        while True:
            page = ledger.entries(after=after, limit=5000)
            if not page:
                break
            stored.extend(e.leaf_hash for e in page)
            after = page[-1].index
        report = ledger.verify()
    counts = Counter(stored)
    missing = [h for h in acked if counts[h] != 1]
    ok = report.ok and not missing and len(stored) == size
    return ok, (
        f"{len(acked)} acknowledged, {len(missing)} missing or duplicated, "
        f"ledger of {size} verifies: {report.ok}"
    )


def tokens_for(settings: Any) -> str:
    engine = make_engine(settings.db_url)
    try:
        TokenStore.create_tables(engine)
        return TokenStore(engine).create(f"bench-{uuid.uuid4().hex[:6]}", Role.PIPELINE)[0]
    finally:
        engine.dispose()


def scenario(
    name: str,
    base: Path,
    db_urls: tuple[str, str],
    servers: int,
    args: argparse.Namespace,
) -> bool:
    """db_urls: (for the server run, for the local reference run) — separate ledgers."""
    local_rate = local_post_rate(base / f"{name}-local", db_urls[1], args.local, f"{name}-l")
    settings = init_home(base / f"{name}-server", db_urls[0])
    key = SigningKey.load(settings.key_path)
    token = tokens_for(settings)
    pool = envelopes(key, args.pool, name)
    ports = [free_port() for _ in range(servers)]
    procs = [
        start_server(settings.home, db_urls[0], p, base / f"{name}-serve-{i}.log")
        for i, p in enumerate(ports)
    ]
    try:
        lat, acked, elapsed, size = run_clients(
            [f"http://127.0.0.1:{p}" for p in ports], token, pool, args.clients, args.duration
        )
    finally:
        for p in procs:
            stop(p)
    rate = len(acked) / elapsed
    q = statistics.quantiles(lat, n=100)
    label = f"{name}: {args.clients} clients, {servers} server(s)"
    line(f"{label}: entries/s", f"{rate:,.0f}", f"{local_rate:,.0f}", "local `escrow post`")
    line(f"{name}: ratio to local post", f"{rate / local_rate:.2f}x", "1.00x")
    line(f"{name}: latency p50", f"{q[49] * 1000:.1f} ms", "-")
    line(f"{name}: latency p99", f"{q[98] * 1000:.1f} ms", "-")
    if len(acked) >= size:
        print(f"  note: the pool of {size} envelopes ran out after {elapsed:.1f} s", flush=True)
    ok, detail = check_ledger(settings, acked)
    line(f"{name}: nothing acknowledged missing", "yes" if ok else "NO", "yes", detail)
    return ok


def pg_database(base_url: str) -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"escrow_bench_{uuid.uuid4().hex[:10]}"
    admin = base_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str) -> None:
    import psycopg

    admin = base_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--local", type=int, default=1000, help="envelopes for the local reference")
    ap.add_argument("--pool", type=int, default=12000, help="envelopes signed before the clock")
    ap.add_argument("--pg-url", default=os.environ.get("ESCROW_TEST_PG_URL"))
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="escrow-server-bench-", dir=args.dir or "/var/tmp"))
    print(f"server benchmark in {base} ({os.cpu_count()} CPUs)", flush=True)
    ok = True
    try:
        ok &= scenario(
            "sqlite",
            base,
            (
                f"sqlite:///{base / 'sqlite-server' / 'ledger.db'}",
                f"sqlite:///{base / 'sqlite-local' / 'ledger.db'}",
            ),
            1,
            args,
        )
        if not args.pg_url:
            print("PostgreSQL: no --pg-url and no ESCROW_TEST_PG_URL; not measured", flush=True)
            return 1
        names: list[str] = []
        try:
            n1, url1 = pg_database(args.pg_url)
            names.append(n1)
            n2, url2 = pg_database(args.pg_url)
            names.append(n2)
            ok &= scenario("postgres", base, (url1, url2), 2, args)
        finally:
            for n in names:
                drop_database(args.pg_url, n)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
