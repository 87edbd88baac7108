"""Validate, sign and append a captured statement to the ledger.

The signing key and the ledger are opened *before* a build starts
(:meth:`Publisher.open`), so a locked key or an unreachable database fails
fast instead of after a long build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from escrow.config import Settings
from escrow.documents.schemas import validate_statement
from escrow.signing.dsse import Envelope, sign_statement
from escrow.signing.keys import SigningKey

if TYPE_CHECKING:
    from escrow.ledger.store import Entry, Ledger


@dataclass
class Publisher:
    key: SigningKey
    ledger: Ledger

    @classmethod
    def open(cls, settings: Settings) -> Publisher:
        from escrow.ledger.store import Ledger

        key = SigningKey.load(settings.key_path, settings.passphrase)
        return cls(key=key, ledger=Ledger.open(settings))

    def sign(self, statement: dict[str, Any]) -> Envelope:
        validate_statement(statement)
        return sign_statement(statement, self.key)

    def publish(self, statement: dict[str, Any]) -> tuple[Entry, bool]:
        """Validate against the schemas, sign (DSSE over RFC 8785 bytes), append."""
        return self.ledger.append(self.sign(statement))
