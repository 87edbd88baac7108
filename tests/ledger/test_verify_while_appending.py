"""`escrow ledger verify` while builds and `escrow post` append (CI on a shared ledger).

Verify reads the log's extent and the batches' extent (`indexed`: how many entries
the subtree hashes and the query index cover) in one snapshot, then checks the
entries on fresh connections.  An append that completed a batch of 64 in between
wrote the query rows of that batch: the entries were then checked against the old
extent, and every one of them was reported as "its rows in the query index disagree
with its entry" — tampering, exit 1, on an intact ledger (seen on PostgreSQL with two
`escrow post` streams and a build).  Each check now takes the extent in the snapshot
it reads the rows in.

The moment is forced: the appends that complete the batch run right after verify has
read the extent and before it reads the entries.
"""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import LedgerEnv

from escrow.ledger import verify as verify_module


def test_a_batch_completed_during_verify_is_no_tampering(
    env: LedgerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    with env.open() as lg:
        for n in range(60):  # entry 0 is the key event: 61 entries, batch [0, 64) not done
            lg.append(env.envelope(n))
        assert lg.size() == 61

    real = verify_module._run_chunks
    appended: list[int] = []

    def appends_meanwhile(*args: Any, **kwargs: Any) -> Any:
        with env.open() as other:  # another process's appends: through the batch end
            for n in range(60, 70):
                entry, _ = other.append(env.envelope(n))
                appended.append(entry.index)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_module, "_run_chunks", appends_meanwhile)
    with env.open() as lg:
        report = lg.verify(workers=1)
    assert appended == list(range(61, 71))  # the batch of [0, 64) was written meanwhile
    assert report.ok, [p.message for p in report.problems][:3]
    assert report.entries_checked == 61  # the log as it stood when verify began

    monkeypatch.setattr(verify_module, "_run_chunks", real)
    with env.open() as lg:
        again = lg.verify(workers=1)
    assert again.ok and again.entries_checked == 71


def test_query_rows_beyond_the_batches_are_still_found(env: LedgerEnv) -> None:
    """Taking the extent from the check's own snapshot still finds query rows that no
    batch wrote (inserted by hand)."""
    from ledger_helpers import q, raw_sql

    with env.open() as lg:
        for n in range(5):
            lg.append(env.envelope(n))
    with raw_sql(env.settings.db_url) as conn:
        q(conn, "INSERT INTO ledger_term (kind, value, idx) VALUES ('p', 'forged', 3)")
    with env.open() as lg:
        report = lg.verify(workers=1)
    assert not report.ok
    assert report.problems[0].index == 3 and report.problems[0].kind == "index"
