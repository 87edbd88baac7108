"""``escrow verify NAME`` with a name that is no image name: one sentence, exit 2.

The Docker SDK put the name into the engine's API path as it was, so
``a/../../containers`` asked the engine's container list and the SDK's answer ended in a
traceback ("Can't create Image from []")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize("name", ["a/../../containers", "..", "./x"])
def test_verify_of_a_name_with_dot_segments_is_refused(
    escrow_home: Path, cli: Any, name: str
) -> None:
    r = cli(["verify", name])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert f"{name!r} is not an image name or ID." in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
