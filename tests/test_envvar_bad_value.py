"""A bad value in an option's environment variable names the variable, not the option the
user never typed (`--max-body` for ESCROW_SERVER_MAX_BODY=abc)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("ESCROW_SERVER_MAX_BODY", "abc", "is not a valid integer."),
        ("ESCROW_SERVER_PACK_TIME_LIMIT", "abc", "is not a duration"),
        ("ESCROW_SERVER_REQUEST_TIMEOUT", "-1", "-1"),
    ],
)
def test_the_variable_is_named(
    escrow_home: Any,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(variable, value)
    r = cli(["serve", "--port", "0"])
    assert r.exit_code == 2, r.stderr
    assert f"Invalid value for {variable} (from the environment)" in r.stderr, r.stderr
    assert said in r.stderr


def test_a_typed_option_is_still_named_as_typed(escrow_home: Any, cli: Any) -> None:
    r = cli(["serve", "--port", "0", "--max-body", "abc"])
    assert r.exit_code == 2
    assert "Invalid value for '--max-body'" in r.stderr
