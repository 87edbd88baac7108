"""A token name is printed by `escrow tokens list` and in the server's log beside what the
token did.  A direction override (U+202E) in it reversed the rest of the line on a
terminal, and a zero-width character hid a difference between two names: such names are
refused when the token is created, as control characters already were."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize(
    "name", ["ci\u202enightly", "ci\u200bnightly", "\ufeffci", "ci\u2066x\u2069", "ci\x85x"]
)
def test_a_token_name_with_a_format_or_c1_control_character_is_refused(
    cli: Any, escrow_home: Path, name: str
) -> None:
    r = cli(["tokens", "create", "--role", "pipeline", "--name", name])
    assert r.exit_code == 2, r.stderr
    assert "A token name must be 1 to 200 printable characters." in r.stderr
    assert json.loads(cli(["tokens", "list", "--json"]).stdout)["tokens"] == []


@pytest.mark.parametrize("name", ["ci-nightly", "équipe 日本", "مشروع"])
def test_names_of_any_script_are_still_taken(cli: Any, escrow_home: Path, name: str) -> None:
    r = cli(["tokens", "create", "--role", "pipeline", "--name", name])
    assert r.exit_code == 0, r.stderr
    listed = json.loads(cli(["tokens", "list", "--json"]).stdout)["tokens"]
    assert [t["name"] for t in listed] == [name]
