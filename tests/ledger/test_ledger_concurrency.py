"""Concurrent writers in separate processes, and writers killed mid-append."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_helpers import LedgerEnv

from escrow.ledger import merkle

WORKER = Path(__file__).with_name("ledger_worker.py")


def spawn(env: LedgerEnv, tag: str, count: int, go: Path | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), str(env.home), env.settings.db_url, tag, str(count)]
    if go is not None:
        args.append(str(go))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def acks(lines: list[str]) -> list[tuple[int, str]]:
    out = []
    for line in lines:
        if line.startswith("ACK "):
            _, idx, leaf = line.split()
            out.append((int(idx), leaf))
    return out


@pytest.mark.slow
def test_eight_processes_append_200_each(env: LedgerEnv, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [spawn(env, f"w{i}", 200, go) for i in range(8)]
    for p in procs:  # wait until every writer is ready, then start them together
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "READY", p.stderr.read() if p.stderr else ""
    go.touch()
    acked: list[tuple[int, str]] = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        mine = acks(out.splitlines())
        assert len(mine) == 200
        acked += mine
    with env.open() as lg:
        assert lg.size() == 1 + 1600
        indexes = sorted(i for i, _ in acked)
        assert indexes == list(range(1, 1601))  # no gaps, no duplicates
        for i, leaf in acked[::37]:
            assert lg.get(i).leaf_hash == leaf
        assert len({leaf for _, leaf in acked}) == 1600
        report = lg.verify()
        assert report.ok and report.entries_checked == 1601, report.problems
        cp = lg.checkpoint()
        assert cp.size == 1601 and cp.root == lg.root()


@pytest.mark.slow
def test_two_processes_append_the_same_envelopes(env: LedgerEnv, tmp_path: Path) -> None:
    """Idempotence across processes: each envelope is stored once, and both writers
    get its one entry back."""
    go = tmp_path / "go"
    procs = [spawn(env, "same", 60, go) for _ in range(2)]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "READY", p.stderr.read() if p.stderr else ""
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(acks(out.splitlines()))
    assert results[0] == results[1]  # the same index for the same envelope, in both
    assert sorted(i for i, _ in results[0]) == list(range(1, 61))
    with env.open() as lg:
        assert lg.size() == 61
        assert lg.verify().ok


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [25, 60])
def test_kill_9_during_bulk_append(env: LedgerEnv, kill_after: int) -> None:
    p = spawn(env, "bulk", 400)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "READY"
    lines = []
    while len(lines) < kill_after:
        line = p.stdout.readline()
        assert line, p.stderr.read() if p.stderr else ""
        lines.append(line)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    rest = p.stdout.read()
    p.stdout.close()
    if p.stderr:
        p.stderr.close()
    acked = acks(lines + rest.splitlines())
    assert len(acked) >= kill_after
    with env.open() as lg:
        report = lg.verify()
        assert report.ok, report.problems
        size = lg.size()
        assert size >= 1 + len(acked)  # at most the one in flight beyond the acknowledged
        assert size <= 1 + len(acked) + 1
        for i, leaf in acked:
            e = lg.get(i)
            assert e.leaf_hash == leaf and merkle.leaf_hash(e.envelope).hex() == leaf
        # the log is still appendable after the crash
        entry, created = lg.append(env.envelope(10_000))
        assert created and entry.index == size
        assert lg.verify().ok
