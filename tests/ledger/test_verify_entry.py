"""`escrow verify INDEX` on entries that are not build manifests (a key event, a verdict)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from ledger_helpers import LedgerEnv

from escrow.documents.types import KEY_EVENT


@pytest.fixture
def home(cli_env: LedgerEnv) -> LedgerEnv:
    return cli_env


def test_a_key_event_verifies_with_the_log_key(home: LedgerEnv, cli: Any) -> None:
    """Regression: key events are signed by the ledger's log key, which `escrow verify`
    did not trust, so verifying entry 0 of every ledger failed (exit 1)."""
    with home.open() as lg:
        (event,) = lg.entries(predicate_type=KEY_EVENT)
    r = cli(["verify", str(event.index), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert checks["signature"]["ok"] is True
    assert "log key" in checks["signature"]["detail"]


class _Engine:
    def image_facts(self, image_id: str) -> dict[str, Any]:
        return {"id": image_id, "diff_ids": ["sha256:" + "1" * 64]}


def test_only_build_manifests_are_compared_with_the_engine(home: LedgerEnv) -> None:
    """Regression: a rebuild verdict (no `layers` of its own) 'differed' from its image."""
    from escrow.verification import verify_entry

    with home.open() as lg:
        (event,) = lg.entries(predicate_type=KEY_EVENT)
        verdict_like = dataclasses.replace(event, image_id="sha256:" + "2" * 64)
        result = verify_entry(lg, verdict_like, engine=_Engine())
    # never compared with the engine (and an image ID its statement lacks is a finding)
    assert [c.name for c in result.checks] == ["signature", "inclusion", "record"]


def test_a_key_event_is_not_attached_to_an_image(home: LedgerEnv, cli: Any) -> None:
    """Regression: `escrow attach 0 --to …` would push a key event as an image attestation."""
    r = cli(["attach", "0", "--to", "127.0.0.1:1/x/y:1"])
    assert r.exit_code == 2
    assert "Entry 0 (key-event) is not a statement about an image" in r.stderr


def test_a_key_event_has_no_deposit_to_export(home: LedgerEnv, cli: Any, tmp_path: Any) -> None:
    """Regression: exporting entry 0 said to `escrow deposit 0` it, which cannot be done."""
    r = cli(["deposit", "export", "0", "-o", str(tmp_path / "d.tar")])
    assert r.exit_code == 2
    assert "Entry 0 is not a build manifest" in r.stderr and "only builds have deposits" in r.stderr
    assert not (tmp_path / "d.tar").exists()
