"""README claims checked as a new user meets them: the configuration table's
`ESCROW_SECRET_PATTERNS` default, and `escrow verify --envelope … --threshold N` on the
JSON Lines `escrow sign` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.capture.secrets import DEFAULT_SECRET_PATTERNS, secret_patterns

SECRET = "supersecret-value-123"


# -- ESCROW_SECRET_PATTERNS set but empty ----------------------------------------------
@pytest.mark.parametrize("value", ["", " ", " , ,"])
def test_an_empty_secret_patterns_variable_keeps_the_default_patterns(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESCROW_SECRET_PATTERNS", value)
    assert secret_patterns(tmp_path) == DEFAULT_SECRET_PATTERNS
    (tmp_path / "config.json").write_text('{"secret_patterns": ["pin"]}')
    assert secret_patterns(tmp_path) == ("PIN",)


def test_config_json_can_still_turn_the_patterns_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESCROW_SECRET_PATTERNS", raising=False)
    (tmp_path / "config.json").write_text('{"secret_patterns": []}')
    assert secret_patterns(tmp_path) == ()


def test_a_recorded_secret_stays_hidden_when_the_variable_is_empty(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ESCROW_SECRET_PATTERNS=` (a CI template whose value is undefined) recorded every
    secret in plain text, signed into the append-only ledger."""
    monkeypatch.setenv("ESCROW_SECRET_PATTERNS", "")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    monkeypatch.chdir(ctx)
    r = cli(["record", "--json", "-q", "--", "true", f"API_TOKEN={SECRET}"])
    assert r.exit_code == 0, r.stderr
    index = r.json()["index"]
    shown = cli(["show", str(index), "--json"])
    assert shown.exit_code == 0, shown.stderr
    statement = json.dumps(shown.json()["statement"])
    assert SECRET not in statement
    assert "[secret API_TOKEN]" in statement


# -- verify --envelope FILE --threshold N, FILE of several envelopes ---------------------
def _two_envelopes(cli: Any, escrow_home: Path, tmp_path: Path) -> Path:
    shown = cli(["show", "0", "--json"])
    assert shown.exit_code == 0, shown.stderr
    line = json.dumps(shown.json()["envelope"])
    path = tmp_path / "envelopes.jsonl"
    path.write_text(f"{line}\n{line}\n")
    return path


def test_a_threshold_no_keys_can_meet_is_a_usage_error_for_json_lines_too(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    """A single envelope got exit 2 for `--threshold 2` with one `--key`; a JSON Lines
    file got the same sentence once per line, marked FAIL, and exit 1 (a failed check)."""
    envelopes = _two_envelopes(cli, escrow_home, tmp_path)
    log_pub = escrow_home / "keys" / "log.pub.pem"
    args = ["verify", "--envelope", str(envelopes), "--key", str(log_pub), "--threshold", "2"]
    r = cli(args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "threshold 2" in lines[0], r.stderr
    as_json = cli([*args, "--json"])
    assert as_json.exit_code == 2
    doc = as_json.json()
    assert doc["ok"] is False and "threshold 2" in doc["error"]
    # the same file and key, with a threshold they can meet, still verify line by line
    ok = cli(["verify", "--envelope", str(envelopes), "--key", str(log_pub)])
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout.count(": OK:") == 2
