"""`escrow pack` refuses a scope of more builds than a pack holds, before rendering it.

A pack takes some 0.25 MB of memory a page, two pages a build (laid out a few builds at a
time; whole, it took 3 MB a page, and a year of ten projects' daily builds was killed after
half an hour at 20 GB, with nothing written and no message). The limit (5,000 builds,
``--max-builds N`` to raise it) is checked as soon as the builds in scope are known: one
sentence, exit 2, nothing written or recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import PackLedger
from .synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def test_a_scope_over_max_builds_is_refused_and_nothing_is_written(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    pack_ledger.add(1)
    size = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"

    r = run_cli(["pack", "--project", "example", "--max-builds", "1", "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    assert "The scope of this pack holds 2 builds, more than the 1 a pack holds" in r.stderr
    assert "--since/--until" in r.stderr and "--max-builds N" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and list(tmp_path.glob(".pack.pdf*")) == []
    assert pack_ledger.ledger.size() == size  # nothing recorded

    # the limit is inclusive: a scope of exactly N builds is packed
    r = run_cli(["pack", "--project", "example", "--max-builds", "2", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"] == [1, 2]  # after the build key's event at 0
    assert out.is_file()


def test_the_default_limit_is_five_thousand_builds(pack_ledger: PackLedger, tmp_path: Path) -> None:
    from escrow.pack.collect import MAX_BUILDS
    from escrow.signing.dsse import sign_statement

    assert MAX_BUILDS == 5000

    appended = list(
        pack_ledger.ledger.append_many(
            sign_statement(manifest_variant(n, project=f"team{n % 10}"), pack_ledger.key)
            for n in range(MAX_BUILDS + 1)
        )
    )
    assert not [a for a in appended if isinstance(a, Exception)]
    size = pack_ledger.ledger.size()
    out = tmp_path / "year.pdf"

    r = run_cli(["pack", "-o", str(out)])

    assert r.exit_code == 2, r.stderr
    assert "holds 5,001 builds, more than the 5,000 a pack holds" in r.stderr
    assert not out.exists()
    assert pack_ledger.ledger.size() == size


def test_max_builds_is_refused_through_a_server(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server applies its own limit: the option would be silently ignored there
    monkeypatch.setenv("ESCROW_SERVER", "http://127.0.0.1:9")
    r = run_cli(["pack", "--project", "example", "--max-builds", "5000", "-o", "p.pdf"])
    assert r.exit_code == 2, r.stderr
    assert "--max-builds work only on a local ledger" in r.stderr
