"""A build stands by its latest conclusive rebuild verdict (verdict rules 4).

A rebuild that could not be made — a secret build arg not given again, a base image gone —
is recorded with the verdict ``unknown``.  By rules 1–3 the latest rebuild counted,
whatever it was, so one such attempt after an ``identical`` rebuild turned the build's
verdict in every later pack to ``unknown``.  A later ``different`` still overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import BuildFacts, assess
from escrow.pack.model import VERDICT_RULES, Verdict, standing_verdict

from .conftest import PackLedger, pdftotext
from .test_verdict_rules import _statement

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _rebuild(entry: Any, overall: str) -> dict[str, Any]:
    p = entry.statement()["predicate"]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "escrow-example/app:latest", "digest": {"sha256": p["image"]["id"][7:]}}
        ],
        "predicateType": "https://escrow.dev/rebuild-verification/v1",
        "predicate": {
            "original": {
                "index": entry.index,
                "leafHash": entry.leaf_hash,
                "imageId": p["image"]["id"],
            },
            "project": "example",
            "rebuild": {
                "imageId": p["image"]["id"] if overall == "identical" else None,
                "layers": [],
                "builder": {"id": "rebuilder"},
                "startedOn": "2026-12-02T10:00:00Z",
                "finishedOn": "2026-12-02T10:00:05Z",
            },
            "verdict": {"overall": overall, "layers": []}
            | (
                {"missing": [{"kind": "build-arg", "name": "API_TOKEN"}]}
                if overall == "unknown"
                else {}
            ),
        },
    }


@pytest.mark.parametrize(
    ("verdicts", "conclusive", "standing"),
    [
        ([], True, None),
        (["identical", "unknown"], True, "identical"),
        (["identical", "unknown"], False, "unknown"),  # rules 1-3: the latest
        (["identical", "unknown", "different"], True, "different"),
        (["different", "unknown", "unknown"], True, "different"),
        (["unknown", "unknown"], True, "unknown"),
        (["unknown", "equivalent"], True, "equivalent"),
    ],
)
def test_standing_verdict(verdicts: list[str], conclusive: bool, standing: str | None) -> None:
    got = standing_verdict([Verdict(v) for v in verdicts], conclusive)
    assert (got.value if got else None) == standing


def test_a_rebuild_that_could_not_be_made_does_not_undo_an_identical_one(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    build = pack_ledger.add(0)
    pack_ledger.add_statement(_rebuild(build, "identical"))
    pack_ledger.add_statement(_rebuild(build, "unknown"))  # the secret build arg forgotten

    out = tmp_path / "p.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    v = cli(["pack", "verify", str(out), "--json"])
    assert v.exit_code == 0, v.stdout + v.stderr

    summary = _statement(out)["predicate"]["summary"]
    assert summary["rebuilds"]["identical"] == 1 and summary["rebuilds"]["unknown"] == 0
    text = " ".join(pdftotext(out).split())
    assert "Rebuilds identical 1" in text and "Rebuilds unknown" not in text  # (shown when 1+)


def _facts(verdicts: tuple[Verdict, ...], statement: dict[str, Any]) -> BuildFacts:
    return BuildFacts(
        index=0,
        statement=statement,
        signer="k",
        signer_status="active",
        signature_verified=True,
        inclusion_verified=True,
        rebuilds=verdicts,
    )


def test_older_rules_keep_the_latest_verdict(pack_ledger: PackLedger) -> None:
    """pack verify recomputes a rules-3 pack as it was made: the latest verdict counted."""
    statement = pack_ledger.add(0).statement()
    facts = [_facts((Verdict.IDENTICAL, Verdict.UNKNOWN), statement)]

    now = assess(facts, note_ok=True)
    then = assess(facts, note_ok=True, rules=VERDICT_RULES[3])

    assert dict(now.summary.verdicts)["identical"] == 1
    assert dict(now.summary.verdicts)["unknown"] == 0
    assert dict(then.summary.verdicts)["unknown"] == 1
    assert dict(then.summary.verdicts)["identical"] == 0


def test_escrow_verify_names_the_verdict_the_build_stands_by(
    pack_ledger: PackLedger, cli: Any
) -> None:
    build = pack_ledger.add(0)
    pack_ledger.add_statement(_rebuild(build, "identical"))
    pack_ledger.add_statement(_rebuild(build, "unknown"))

    r = cli(["verify", str(build.index), "--json"])

    assert r.json()["rebuild_verdict"] == "identical", r.stdout
