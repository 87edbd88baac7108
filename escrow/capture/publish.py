"""Validate, sign and append a captured statement to the ledger.

:meth:`Publisher.open` refuses a missing or locked signing key at once (no
cryptography needed for that); :meth:`Publisher.start`, called when the engine
starts building, parses the key and opens the ledger in a background thread,
so a pipeline does not pay for them on top of the build.  A key that then
fails to parse (a wrong passphrase), or that the ledger would not let sign (not
registered, revoked, retired), is reported by :meth:`Publisher.check` while the
build runs, which stops it: nothing is recorded.  A key that ``escrow keys rotate``
replaced meanwhile is not such a key: the build is signed with the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from escrow.config import Settings
from escrow.signing.keyfile import public_key_path, read_key_file

if TYPE_CHECKING:
    import concurrent.futures
    from pathlib import Path

    from escrow.ledger.store import Entry, Ledger
    from escrow.server.client import RemoteLedger
    from escrow.signing.keys import SigningKey


def _parse_key(settings: Settings, data: bytes) -> SigningKey:
    from escrow.signing.keys import SigningKey

    return SigningKey.parse(data, settings.key_path, settings.passphrase)


def suggested_key_name() -> str:
    """The name this machine's build key is registered with on a server: ``<host>-build``."""
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-._")
    return f"{host[:58]}-build" if host else "pipeline-build"


def _unregistered_hint(settings: Settings) -> str:
    """What to do about a signing key the ledger does not know."""
    if not settings.server:
        return (
            "Register it (`escrow init` does for the build key), or set ESCROW_KEY to a "
            "registered key."
        )
    import shlex

    private = settings.key_path
    pub = public_key_path(private)
    if not pub.is_file():
        return (
            f"Register its public key with {settings.server}: on a machine with an admin "
            f"token, `escrow keys add PUBLIC_KEY --name {suggested_key_name()}` "
            f"(`openssl pkey -in {shlex.quote(str(private))} -pubout` prints it)."
        )
    return (
        f"Register it with {settings.server}: on a machine with an admin token, with a copy "
        f"of {pub}, run `{register_command(pub)}`."
    )


def register_command(public_key: Path) -> str:
    """The ``escrow keys add`` that registers this machine's build key with a server."""
    import shlex

    return f"escrow keys add {shlex.quote(str(public_key))} --name {suggested_key_name()}"


def _check_signer(
    key: concurrent.futures.Future[SigningKey],
    ledger: concurrent.futures.Future[Ledger | RemoteLedger],
    settings: Settings,
) -> SigningKey:
    """:func:`check_may_sign`, known while the engine builds, so a build that could not be
    recorded stops early; the key to sign with: the one read at the start, or the one an
    ``escrow keys rotate`` put in its place since (:func:`_rotated`)."""
    from escrow.errors import KeyLocked

    signing = key.result()
    try:
        check_may_sign(ledger.result(), signing, settings, then="build again")
    except KeyLocked:
        rotated = _rotated(settings, ledger.result(), signing)
        if rotated is None:
            raise
        return rotated
    return signing


def _rotated(
    settings: Settings, ledger: Ledger | RemoteLedger, old: SigningKey
) -> SigningKey | None:
    """The key now at ``ESCROW_KEY`` when it is another one than ``old`` and may sign:
    ``escrow keys rotate`` replaced the key while this command ran (CI builds running
    while an operator rotates), retiring ``old`` at once.  None otherwise."""
    from escrow.errors import EscrowError

    try:
        key = _parse_key(settings, read_key_file(settings.key_path, settings.passphrase))
    except EscrowError:
        return None
    if key.keyid == old.keyid:
        return None
    found = ledger.key_status(key.keyid)
    return key if found is not None and found[1] == "active" else None


def check_may_sign(
    ledger: Ledger | RemoteLedger, signing: SigningKey, settings: Settings, *, then: str
) -> None:
    """The signing key may sign now: registered in the ledger, neither revoked nor
    retired; :class:`KeyLocked` (exit 3) saying how to replace it, and then ``then``."""
    from escrow.errors import KeyLocked

    own_token = getattr(ledger, "own_token", None)  # through a server: may this token post?
    token = own_token() if own_token is not None else None
    if token is not None and token.get("role") not in ("pipeline", "admin"):
        from escrow.server.client import ServerAuthError

        raise ServerAuthError(
            f"The token {token.get('name')!r} has the role {token.get('role')}: it may not "
            f"record entries on {settings.server}, so nothing signed here could be recorded.",
            hint="Set ESCROW_TOKEN to a pipeline token (`escrow tokens create --role pipeline`"
            f" with an admin token), then {then}.",
        )
    found = ledger.key_status(signing.keyid)
    if found is None:
        raise KeyLocked(
            f"The signing key {signing.keyid[:16]}… is not registered in the ledger, so "
            "nothing it signs can be recorded.",
            hint=_unregistered_hint(settings),
        )
    name, status = found
    if status != "active":
        raise KeyLocked(
            f"The signing key {signing.keyid[:16]}… ({name}) is {status} in the ledger "
            "and may not sign new entries.",
            # `--name build` is the configured key (ESCROW_KEY), whatever its name in the ledger
            hint="Replace it with `escrow keys rotate --name build`"
            + (" (with an admin token)" if settings.server else "")
            + f", then {then}.",
        )


def _open_ledger(settings: Settings) -> Ledger | RemoteLedger:
    from escrow.documents.schemas import prepare
    from escrow.ledger.store import Ledger

    if settings.server:  # a pipeline posting to `escrow serve`: the client checks the proofs
        from escrow.server.client import RemoteLedger

        return RemoteLedger.open(settings)

    prepare("statement", "build-manifest")  # compiled now, off the critical path
    "".encode("utf-16-be")  # the codec RFC 8785 sorts member names with, imported now
    return Ledger.open(settings, create=False)


@dataclass
class Publisher:
    settings: Settings
    _key_pem: bytes = field(default=b"", repr=False)
    _key: concurrent.futures.Future[SigningKey] | None = field(default=None, repr=False)
    _ledger: concurrent.futures.Future[Ledger | RemoteLedger] | None = field(
        default=None, repr=False
    )
    _signer: concurrent.futures.Future[SigningKey] | None = field(default=None, repr=False)
    _pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Publisher:
        """Read the signing key file now (fail fast); it is parsed on :meth:`start`."""
        pem = read_key_file(settings.key_path, settings.passphrase)
        return cls(settings=settings, _key_pem=pem)

    def start(self) -> None:
        """Parse the key and open the ledger in a background thread (call it when the
        engine starts building)."""
        if self._pool is None:
            import concurrent.futures  # not before the build request: ~3 ms with logging

            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="escrow-publish"
            )
            self._key = self._pool.submit(_parse_key, self.settings, self._key_pem)
            self._ledger = self._pool.submit(_open_ledger, self.settings)
            self._signer = self._pool.submit(_check_signer, self._key, self._ledger, self.settings)

    def check(self) -> None:
        """Raise the signing key's error once it is known (cheap; call it while building):
        a key that does not parse, or one the ledger does not let sign now."""
        for future in (self._key, self._signer):
            if future is not None and future.done():
                future.result()

    @property
    def ledger(self) -> Ledger | RemoteLedger:
        """The ledger (waits for the background open; re-raises its error)."""
        self.start()
        assert self._ledger is not None
        return self._ledger.result()

    def publish(self, statement: dict[str, Any]) -> tuple[Entry, bool]:
        """Validate against the schemas, sign (DSSE over RFC 8785 bytes), append.

        Signed with the key that may sign now: when ``escrow keys rotate`` retired the
        key read at the start while the build ran, with the new key it put in its place
        (the build would otherwise be lost: built, but refused by the ledger)."""
        from escrow.documents.schemas import validate_statement
        from escrow.errors import SignatureError
        from escrow.signing.dsse import sign_statement

        ledger = self.ledger
        assert self._signer is not None
        signing = self._signer.result()  # a key the ledger would refuse: say why first
        validate_statement(statement)
        try:
            return ledger.append(sign_statement(statement, signing))
        except SignatureError:
            rotated = _rotated(self.settings, ledger, signing)  # since the check above
            if rotated is None:
                raise
            return ledger.append(sign_statement(statement, rotated))

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
