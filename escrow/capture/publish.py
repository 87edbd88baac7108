"""Validate, sign and append a captured statement to the ledger.

The signing key is loaded *before* a build starts (a locked key fails fast);
the ledger — and with it SQLAlchemy, the slowest import of all — is opened in
a background thread while the engine builds (:meth:`Publisher.open`), so a
pipeline does not pay for it on top of the build.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from escrow.config import Settings
from escrow.signing.dsse import Envelope, sign_statement
from escrow.signing.keys import SigningKey

if TYPE_CHECKING:
    from escrow.ledger.store import Entry, Ledger
    from escrow.server.client import RemoteLedger


def _open_ledger(settings: Settings) -> Ledger | RemoteLedger:
    from escrow.documents.schemas import prepare
    from escrow.ledger.store import Ledger

    if settings.server:  # a pipeline posting to `escrow serve`: the client checks the proofs
        from escrow.server.client import RemoteLedger

        return RemoteLedger.open(settings)

    prepare("statement", "build-manifest")  # compiled now, off the critical path
    return Ledger.open(settings)


@dataclass
class Publisher:
    key: SigningKey
    settings: Settings
    _ledger: concurrent.futures.Future[Ledger | RemoteLedger] | None = field(
        default=None, repr=False
    )
    _pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Publisher:
        """Load the signing key now (fail fast); the ledger opens on :meth:`start`."""
        return cls(key=SigningKey.load(settings.key_path, settings.passphrase), settings=settings)

    def start(self) -> None:
        """Open the ledger in a background thread (call it when the engine starts building)."""
        if self._ledger is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="escrow-ledger"
            )
            self._ledger = self._pool.submit(_open_ledger, self.settings)

    @property
    def ledger(self) -> Ledger | RemoteLedger:
        """The ledger (waits for the background open; re-raises its error)."""
        self.start()
        assert self._ledger is not None
        try:
            return self._ledger.result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None

    def sign(self, statement: dict[str, Any]) -> Envelope:
        from escrow.documents.schemas import validate_statement

        validate_statement(statement)
        return sign_statement(statement, self.key)

    def publish(self, statement: dict[str, Any]) -> tuple[Entry, bool]:
        """Validate against the schemas, sign (DSSE over RFC 8785 bytes), append."""
        ledger = self.ledger
        return ledger.append(self.sign(statement))

    def close(self) -> None:
        """Wait for the background open and close the ledger (errors here are moot)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._ledger is not None and self._ledger.done() and self._ledger.exception() is None:
            self._ledger.result().close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
