"""A separate writer process for the concurrency and crash tests.

    python ledger_worker.py HOME DB_URL TAG COUNT [GO_FILE]

Prepares COUNT envelopes signed by HOME's build key, prints ``READY``, waits
for GO_FILE to exist (when given), then appends them one by one, printing
``ACK <index> <leaf hash>`` after each append returned (i.e. was committed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ledger_helpers import LedgerEnv

from escrow.ledger.store import prepare


def main() -> None:
    home, url, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    go = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    env = LedgerEnv.load(Path(home), url)
    prepared = [prepare(env.envelope(n, tag=tag, project=tag)) for n in range(count)]
    with env.open() as lg:
        print("READY", flush=True)
        while go is not None and not go.exists():
            time.sleep(0.01)
        for p in prepared:
            entry, _ = lg.append_prepared(p)
            print(f"ACK {entry.index} {entry.leaf_hash}", flush=True)


if __name__ == "__main__":
    main()
