"""Fixtures for the signing tests: one key of each type and a valid Statement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.signing.keys import KeyType, SigningKey

DOCS = Path(__file__).parent.parent / "assets" / "documents"


@pytest.fixture(params=[KeyType.ED25519, KeyType.ECDSA_P256], ids=["ed25519", "ecdsa-p256"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    return SigningKey.generate(request.param)


@pytest.fixture
def statement() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (DOCS / "rebuild-verification.identical.json").read_text(encoding="utf-8")
    )
    return data
