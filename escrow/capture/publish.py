"""Validate, sign and append a captured statement to the ledger.

:meth:`Publisher.open` refuses a missing or locked signing key at once (no
cryptography needed for that); :meth:`Publisher.start`, called when the engine
starts building, parses the key and opens the ledger in a background thread,
so a pipeline does not pay for them on top of the build.  A key that then
fails to parse (a wrong passphrase), or that the ledger would not let sign (not
registered, revoked, retired), is reported by :meth:`Publisher.check` while the
build runs, which stops it: nothing is recorded.  A key that ``escrow keys rotate``
replaced meanwhile is not such a key: the build is signed with the new one.  So is a
ledger that would refuse the append (a database role that may only read, a SQLite file
that cannot be written): the thread then checks it without writing anything
(:func:`_check_writable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from escrow.config import Settings
from escrow.signing.keyfile import public_key_path, read_key_file

if TYPE_CHECKING:
    import concurrent.futures
    from pathlib import Path

    from escrow.errors import EscrowError
    from escrow.ledger.store import Entry, Ledger
    from escrow.server.client import RemoteLedger
    from escrow.signing.dsse import Envelope
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


def _check_writable(
    ledger: concurrent.futures.Future[Ledger | RemoteLedger],
    signer: concurrent.futures.Future[SigningKey],
) -> None:
    """In the background, once the key is known to be one the ledger lets sign: an append
    to a local ledger would not be refused (:meth:`~escrow.ledger.store.Ledger.
    check_writable`, a rolled-back probe writing nothing); a server records on its own."""
    signer.result()  # a key that may not sign is said by its own future
    check = getattr(ledger.result(), "check_writable", None)
    if check is not None:
        check()


#: SQLite result codes of a write refused (``SQLITE_PERM``, ``SQLITE_READONLY`` and its
#: extended codes) and PostgreSQL SQLSTATEs of one (``read_only_sql_transaction``: a role
#: or database with ``default_transaction_read_only``, a standby; ``insufficient_privilege``)
_SQLITE_REFUSED = frozenset({3, 8})
_PG_REFUSED = frozenset({"25006", "42501"})


def write_refused(error: BaseException) -> bool:
    """``error`` (a :class:`~escrow.errors.DatabaseUnavailable`) says the ledger's database
    refuses this writer, not that it cannot be reached: trying again later will not help."""
    import errno
    import sqlite3

    cause = error.__cause__
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorcode", 0) & 0xFF in _SQLITE_REFUSED
    if isinstance(cause, OSError):  # the SQLite ledger's lock file
        return cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    state = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return state in _PG_REFUSED


#: where an entry signed but not appended (the ledger unreachable) is kept, under ESCROW_HOME
UNRECORDED = "unrecorded"


def keep_unrecorded(home: Path, envelope: bytes) -> Path:
    """Write the signed ``envelope`` (its stored bytes) to ``home/unrecorded/`` whole or
    not at all, synced, under a new name (the time and its digest); the path."""
    import contextlib
    import hashlib
    import os
    import time

    from escrow.signing.keyfile import create_file

    folder = home / UNRECORDED
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"{stamp}-{hashlib.sha256(envelope).hexdigest()[:16]}.dsse.json"
    with contextlib.suppress(FileExistsError):  # the same entry kept in the same second
        create_file(path, envelope + b"\n", 0o644)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # the new name, synced too
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


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
    _writable: concurrent.futures.Future[None] | None = field(default=None, repr=False)
    _pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False)  # that the ledger cannot be reached

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
            self._writable = self._pool.submit(_check_writable, self._ledger, self._signer)

    def check(self) -> None:
        """Raise the signing key's error once it is known (cheap; call it while building):
        a key that does not parse, or one the ledger does not let sign now, or a ledger
        that would refuse the append (:func:`write_refused`): nothing of the build could
        be recorded.  A ledger that cannot be reached does not stop the build: it is said
        once, and :meth:`publish` tries again at the end (or keeps the signed entry,
        :func:`keep_unrecorded`)."""
        from escrow.errors import DatabaseUnavailable, EscrowError

        for future in (self._key, self._signer, self._writable):
            if future is None or not future.done() or future.exception() is None:
                continue
            error = future.exception()
            if future is self._writable:
                if isinstance(error, DatabaseUnavailable) and write_refused(error):
                    raise DatabaseUnavailable(
                        f"{error.message.rstrip('.')}; the build could not be recorded, so "
                        "it was stopped and nothing was recorded.",
                        hint=error.hint,
                    ) from error
                if isinstance(error, EscrowError):
                    continue  # the key's and signer's own, or found again at the append
            if future is self._signer and isinstance(error, EscrowError):
                if self._unavailable(error) and not self._key_failed():
                    self._warn_unavailable(error)
                    continue
            assert future is not None
            future.result()  # raises it

    def _key_failed(self) -> bool:
        return self._key is not None and self._key.done() and self._key.exception() is not None

    def _warn_unavailable(self, error: EscrowError) -> None:
        if self._warned:
            return
        self._warned = True
        import sys

        print(
            f"escrow: warning: {error.message.rstrip('.')}. The build goes on: its signed "
            "entry is appended at its end if the ledger answers by then, and kept under "
            f"{self.settings.home / UNRECORDED} for `escrow post` if not.",
            file=sys.stderr,
        )

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
        from escrow.errors import EscrowError, SignatureError
        from escrow.signing.dsse import sign_statement

        envelope = None
        try:
            ledger, signing = self._ready()  # a key the ledger would refuse: say why first
            validate_statement(statement)
            envelope = sign_statement(statement, signing)
            try:
                return ledger.append(envelope)
            except SignatureError:
                rotated = _rotated(self.settings, ledger, signing)  # since the check above
                if rotated is None:
                    raise
                envelope = sign_statement(statement, rotated)
                return ledger.append(envelope)
        except EscrowError as e:
            if not self._unavailable(e) or self._key_failed():
                raise
            if envelope is None:  # the ledger could not check the key: signed all the same
                assert self._key is not None
                validate_statement(statement)
                envelope = sign_statement(statement, self._key.result())
            raise self._kept(envelope, e) from e

    def _ready(self) -> tuple[Ledger | RemoteLedger, SigningKey]:
        """The ledger and the key to sign with, as the background check found them; when
        that could not reach the ledger, opened and checked again now (it may be back)."""
        import concurrent.futures

        from escrow.errors import EscrowError

        self.start()
        assert self._key is not None and self._ledger is not None and self._signer is not None
        try:
            return self._ledger.result(), self._signer.result()
        except EscrowError as e:
            if not self._unavailable(e) or self._key_failed():
                raise
        ledger: concurrent.futures.Future[Ledger | RemoteLedger] = concurrent.futures.Future()
        if self._ledger.exception() is None:  # opened; its connection reopens on use
            ledger = self._ledger
        else:
            ledger.set_result(_open_ledger(self.settings))
            self._ledger = ledger
        return ledger.result(), _check_signer(self._key, ledger, self.settings)

    def _unavailable(self, error: EscrowError) -> bool:
        """``error`` says the ledger (its database, or its server) cannot be reached."""
        from escrow.errors import DatabaseUnavailable

        if isinstance(error, DatabaseUnavailable):
            return True
        if self.settings.server:
            from escrow.server.client import ServerUnavailable

            return isinstance(error, ServerUnavailable)
        return False

    def _kept(self, envelope: Envelope, error: EscrowError) -> EscrowError:
        """``error``, saying where the signed ``envelope`` it could not append is kept:
        a build that ran for an hour is not lost because the ledger was down at its end."""
        try:
            path = keep_unrecorded(self.settings.home, envelope.to_bytes())
        except OSError as e:
            error.message = (
                f"{error.message.rstrip('.')}; the signed entry could not be kept either "
                f"({e.strerror or e}), so nothing was recorded."
            )
            return error
        import shlex

        when = (  # a ledger that refuses this writer will not take it later either
            "once the ledger may be written to"
            if write_refused(error)
            else "once the ledger answers again"
        )
        error.message = (
            f"{error.message.rstrip('.')}. Nothing is lost: the signed entry is kept as "
            f"{path}, and `escrow post {shlex.quote(str(path))}` appends it {when}."
        )
        return error

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
