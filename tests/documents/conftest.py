"""Fixtures for the documents tests: the fixture files, and an ESCROW_HOME with a build key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.keys import KeyType, SigningKey

ASSETS = Path(__file__).parent.parent / "assets"
DOCS = ASSETS / "documents"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_files() -> list[Path]:
    """Every document fixture: tests/assets/documents/*.json and the build-manifest example."""
    return sorted(DOCS.glob("*.json")) + [ASSETS / "build-manifest.example.json"]


@pytest.fixture
def rebuild_doc() -> dict[str, Any]:
    data: dict[str, Any] = load(DOCS / "rebuild-verification.different.json")
    return data


@pytest.fixture
def signing_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ESCROW_HOME holding only an Ed25519 build key (no ledger: signing is offline)."""
    home = tmp_path / "home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    SigningKey.generate(KeyType.ED25519).save(home / "keys" / "build.key.pem")
    return home
