"""``escrow build`` stores the context in the deposit while the engine builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.deposit.conftest import Builds

pytestmark = pytest.mark.docker


def _no_archive_after_the_build(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record (and allow) each time the deposit archives the folder after the build."""
    import escrow.deposit.deposit as deposit

    calls: list[Path] = []
    real = deposit._archive_from_dir

    def counting(context_dir: Path, *args: Any) -> Any:
        calls.append(context_dir)
        return real(context_dir, *args)

    monkeypatch.setattr(deposit, "_archive_from_dir", counting)
    return calls


def test_the_context_is_stored_while_the_engine_builds(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_archive_after_the_build(monkeypatch)
    ctx = builds.context({"app.txt": "stored ahead", "data/more.txt": "and more"})
    (ctx / "Dockerfile").write_text(builds.dockerfile())
    tag = f"escrow-test/deposit-{builds.run}:context-ahead"
    builds.tags.append(tag)
    r = run_cli(["build", str(ctx), "-t", tag, "--json"])
    assert r.exit_code == 0, r.stderr
    result = r.json()
    assert result["deposit"]["complete"], result
    assert calls == [], "the folder was archived again after the build"
    r = run_cli(["deposit", "check", str(result["index"]), "--verify"])
    assert r.exit_code == 0, r.stdout + r.stderr
    # and it restores: the rebuild needs neither the folder nor the network
    r = run_cli(["rebuild", str(result["index"]), "-q", "-t", builds.rebuild_tag(), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["verdict"] in ("identical", "equivalent"), r.json()


def test_what_was_stored_ahead_is_not_trusted_once_a_blob_is_gone(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``gc --apply`` between the build and its deposit record removes the blobs stored
    ahead (nothing references them yet): the deposit stores the context again."""
    from escrow.config import load_settings
    from escrow.deposit.ahead import ContextAhead
    from escrow.deposit.deposit import deposit_entry
    from escrow.deposit.store import open_store
    from escrow.ledger.store import Ledger

    calls = _no_archive_after_the_build(monkeypatch)
    ctx = builds.context({"app.txt": "gone"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx)
    store = open_store(escrow_home)
    ahead = ContextAhead(store, ctx)
    ahead.start()
    stored = ahead.result()
    assert stored is not None and len(stored.blobs) >= 3  # index, skeleton, files
    store.path(stored.blobs[-1]).unlink()  # as gc would
    with Ledger.open(load_settings()) as lg:
        entry = lg.get(index)
    got = deposit_entry(
        store, entry, blobs_dir=load_settings().blobs_dir, context_dir=ctx, context_ahead=ahead
    )
    assert calls == [ctx]
    assert got.complete and "context" in got.deposited
    assert store.has(stored.blobs[-1])  # stored again


def test_a_folder_changed_since_the_build_is_not_taken_for_its_context(
    builds: Builds, escrow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.config import load_settings
    from escrow.deposit.ahead import ContextAhead
    from escrow.deposit.deposit import deposit_entry
    from escrow.deposit.store import open_store
    from escrow.errors import InputError
    from escrow.ledger.store import Ledger

    ctx = builds.context({"app.txt": "before"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx)
    (ctx / "app.txt").write_text("after the build")
    store = open_store(escrow_home)
    ahead = ContextAhead(store, ctx)
    ahead.start()
    with Ledger.open(load_settings()) as lg:
        entry = lg.get(index)
    with pytest.raises(InputError, match="not the recorded build context"):
        deposit_entry(
            store, entry, blobs_dir=load_settings().blobs_dir, context_dir=ctx, context_ahead=ahead
        )


def test_the_human_result_says_whether_the_deposit_is_complete(
    builds: Builds, escrow_home: Path
) -> None:
    ctx = builds.context({"app.txt": "told"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False) + "ENV TOLD=1\n")
    tag = f"escrow-test/deposit-{builds.run}:told"
    builds.tags.append(tag)
    r = run_cli(["build", str(ctx), "-t", tag, "-q"])
    assert r.exit_code == 0, r.stderr
    assert "deposit:  complete" in r.stdout.splitlines()
    r = run_cli(["build", str(ctx), "-t", tag, "-q", "--no-deposit"])
    assert r.exit_code == 0, r.stderr
    assert not any(line.startswith("deposit:") for line in r.stdout.splitlines())


def test_an_incomplete_deposit_is_named_in_the_human_result() -> None:
    from datetime import UTC, datetime

    from escrow.cli.build_cmd import _report
    from escrow.deposit.deposit import DepositResult
    from escrow.ledger.models import Entry

    lines: list[str] = []

    class Out:
        def out(self, text: str) -> None:
            lines.append(text)

        def say(self, text: str) -> None:
            lines.append(text)

    entry = Entry(
        7,
        "ab" * 32,
        b"{}",
        "https://escrow.dev/build-manifest/v1",
        "p",
        None,
        "k",
        datetime.now(UTC),
    )
    statement = {"predicate": {"build": {"status": "succeeded", "project": "p", "id": "b"}}}
    missing = [{"kind": "base-image", "name": "base:1", "reason": "not in the engine"}]
    deposit = DepositResult(7, entry.leaf_hash, "", missing=missing)
    _report(Out(), False, entry, True, statement, deposit=deposit)  # type: ignore[arg-type]
    assert lines[-1] == (
        "deposit:  incomplete, lacking base-image base:1 (`escrow deposit check 7` says why)"
    )
