"""After `escrow gc --apply`, `escrow deposit check` of a dropped entry says that gc removed
its deposit, and when — not "never deposited there, or gc removed it", which left the
operator guessing whether the build had ever been escrowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.deposit.conftest import Builds


def test_check_says_gc_removed_the_deposit_and_a_new_deposit_undoes_it(
    builds: Builds, cli: Any, escrow_home: Path
) -> None:
    indexes = []
    for day in range(2):
        ctx = builds.context({"app.txt": f"day {day}\n"})
        (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
        index, _ = builds.build(ctx, project="collected")
        r = cli(["deposit", str(index), "--context", str(ctx)])
        assert r.exit_code == 0, r.stderr
        indexes.append((index, ctx))
    assert not any((escrow_home / "deposits" / "pins").glob("*"))  # recorded: nothing pinned

    r = cli(["gc", "--keep-last", "1", "--apply", "--json"])
    assert r.exit_code == 0, r.stderr
    (old, old_ctx), (kept, _) = indexes
    assert r.json()["projects"]["collected"]["dropped"] == [old]

    r = cli(["deposit", "check", str(old), "--json"])
    assert r.exit_code == 1
    reason = r.json()["missing"][0]["reason"]
    assert reason.startswith("`escrow gc --apply` removed its deposit from the store")
    assert "never deposited" not in reason
    assert cli(["deposit", "check", str(kept), "--verify"]).exit_code == 0
    # rebuilding or exporting it from the deposit says the same, not "nothing is deposited"
    for words in (["rebuild", str(old)], ["deposit", "export", str(old), "-o", "x.tar"]):
        r = cli(words)
        assert r.exit_code == 2, r.stderr
        assert "`escrow gc --apply` removed its deposit at " in r.stderr, r.stderr
        assert "nothing is deposited" not in r.stderr.lower(), r.stderr

    # deposited again (the context is still at hand): complete, and no longer "removed"
    r = cli(["deposit", str(old), "--context", str(old_ctx)])
    assert r.exit_code == 0, r.stderr
    r = cli(["deposit", "check", str(old)])
    assert r.exit_code == 0, r.stderr
    assert "gc" not in r.stdout + r.stderr
    assert not any((escrow_home / "deposits" / "refs" / "collected").glob("*"))
