"""`escrow post` stopped part way by an unusable ledger (the database gone: exit 3) still
says what was acknowledged, with --json too, and where it stopped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, manifest

from escrow.errors import DatabaseUnavailable
from escrow.ledger.store import Ledger
from escrow.signing.dsse import sign_statement


def _lines(env: LedgerEnv, n: int) -> str:
    return "".join(
        sign_statement(manifest(i), env.build_key).to_bytes().decode() + "\n" for i in range(n)
    )


@pytest.fixture
def gone_after_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away after two appends."""
    real = Ledger._append_locked
    calls = {"n": 0}

    def append_locked(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:
            raise DatabaseUnavailable("The ledger database is unavailable (the server closed).")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "_append_locked", append_locked)


def test_post_json_reports_what_was_acknowledged_before_it_stopped(
    cli_env: LedgerEnv, cli: Any, gone_after_two: None
) -> None:
    r = cli(["post", "--json"], input=_lines(cli_env, 5))

    assert r.exit_code == 3
    doc = json.loads(r.stdout)
    assert [x["status"] for x in doc["results"]] == ["appended", "appended"]
    assert doc["appended"] == 2 and doc["rejected"] == 0
    assert doc["stopped"]["line"] == 3
    assert "unavailable" in doc["stopped"]["error"]
    assert "stopped at line 3" in r.stderr and "2 appended" in r.stderr


def test_post_text_says_where_it_stopped(
    cli_env: LedgerEnv, cli: Any, gone_after_two: None
) -> None:
    r = cli(["post"], input=_lines(cli_env, 4))

    assert r.exit_code == 3
    assert r.stdout.count("appended ") == 2
    assert "stopped at line 3: the envelopes before it were handled (2 appended" in r.stderr
    assert "posting the same input again is safe" in r.stderr
