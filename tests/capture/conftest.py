"""Fixtures of the capture tests: contexts on disk, a module-wide ESCROW_HOME."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG, run_cli


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def inspect(ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["/usr/bin/docker", "image", "inspect", ref], check=True, capture_output=True, text=True
    )
    data: dict[str, Any] = json.loads(out.stdout)[0]
    return data


def show(index: int) -> dict[str, Any]:
    r = run_cli(["show", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    statement: dict[str, Any] = r.json()["statement"]
    return statement


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An initialised ESCROW_HOME shared by the tests of one module (builds are slow)."""
    home = tmp_path_factory.mktemp("capture") / "escrow-home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(home))
        for var in (
            "ESCROW_DB_URL",
            "ESCROW_KEY",
            "ESCROW_KEY_PASSPHRASE",
            "ESCROW_SERVER",
            "ESCROW_SECRET_PATTERNS",
            "ESCROW_DEPOSIT_STORE",
        ):
            mp.delenv(var, raising=False)
        r = run_cli(["init"])
        assert r.exit_code == 0, r.stderr
        yield home


@pytest.fixture(scope="module")
def base_ref(base_image: str) -> str:
    return BASE_TAG
