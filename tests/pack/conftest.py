"""Fixtures of the pack tests: a real SQLite ledger filled with signed build manifests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import manifest_variant  # noqa: E402


@dataclass
class PackLedger:
    home: Path
    ledger: Any
    key: Any

    def add(self, n: int, **kw: Any) -> Any:
        from escrow.signing.dsse import sign_statement

        entry, _ = self.ledger.append(sign_statement(manifest_variant(n, **kw), self.key))
        return entry

    def add_statement(self, statement: dict[str, Any]) -> Any:
        from escrow.signing.dsse import sign_statement

        entry, _ = self.ledger.append(sign_statement(statement, self.key))
        return entry


@pytest.fixture
def pack_ledger(escrow_home: Path) -> Iterator[PackLedger]:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    ledger = Ledger.open(settings)
    try:
        yield PackLedger(
            escrow_home, ledger, SigningKey.load(settings.key_path, settings.passphrase)
        )
    finally:
        ledger.close()


def pdftotext(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def statement_of(entry: Any) -> dict[str, Any]:
    return json.loads(json.dumps(entry.statement()))
