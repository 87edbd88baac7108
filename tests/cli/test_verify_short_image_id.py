"""`escrow verify SHORT-ID` of an image the engine no longer holds says what to give instead
(the short ID is what `escrow log` shows; only the engine can expand it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.docker]


@pytest.mark.parametrize("target", ["fedcba987654", "sha256:fedcba987654"])
def test_a_short_id_no_image_has_is_named_as_such(escrow_home: Path, target: str) -> None:
    r = run_cli(["verify", target])

    assert r.exit_code == 2
    assert r.stdout == ""
    assert f"No image in the Docker Engine has the short ID {target}" in r.stderr
    assert "the full image ID (sha256: and 64 hex digits)" in r.stderr
    assert "neither a ledger index" not in r.stderr
