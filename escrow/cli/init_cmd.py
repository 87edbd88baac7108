"""``escrow init``: set this machine up.

Locally: ``ESCROW_HOME``, the ledger (SQLite unless ``ESCROW_DB_URL`` names
another), the build-signing key and the log key, and the build key registered in
the ledger.

With a server configured (``ESCROW_SERVER``): the build key only — no local
ledger, no log key.  The server's log key is shown (pinned on first contact as by
every command that talks to the server), and the build key is registered with
the server when the token may (an admin token); otherwise the message says how to
register it from a machine that has one (``escrow keys add``).

A failed ``init`` leaves nothing behind: what this run created is removed.  Two
``init`` of one home at once (CI runners starting together) run one after the other
(:func:`_one_at_a_time`): the second finds what the first made.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from escrow.capture.publish import register_command, suggested_key_name
from escrow.cli.app import App, json_option, pass_app
from escrow.config import Settings, redact_url
from escrow.errors import KeyLocked
from escrow.signing.keyfile import public_key_path
from escrow.signing.keys import KeyType, SigningKey


class _Undo:
    """The files and folders a run is about to create, to remove them if it fails.

    Give every path the run may create before it creates any: those that do not
    exist yet (and their missing parent folders) are removed by :meth:`undo`;
    folders only when empty, so nothing anyone else put there is lost.
    """

    def __init__(self, *paths: Path) -> None:
        self.new: list[Path] = []
        for path in paths:
            for p in (path, *path.parents):
                if p.exists() or p.is_symlink():
                    break
                if p not in self.new:
                    self.new.append(p)

    def undo(self) -> None:
        for p in sorted(self.new, key=lambda p: len(p.parts), reverse=True):
            try:
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                else:
                    p.unlink(missing_ok=True)
            except OSError:
                pass  # not empty (someone else's files), or gone: leave it


#: held while ``escrow init`` runs, in ``ESCROW_HOME``; removed when it ends
_LOCK_NAME = ".init.lock"


@contextlib.contextmanager
def _one_at_a_time(home: Path) -> Iterator[Path]:
    """Hold ``home/.init.lock`` locked (``flock``), making ``home`` first; its path.

    Without it, a second ``init`` started beside the first made its own log key next to
    the first one's, failed, and removed the keys it had not found at its start — the
    first one's — and both failed.  The file is removed before the lock is left (and by
    a failed run before it removes the home it made), so a waiting run that then holds
    a removed file opens the path again."""
    import fcntl

    path = home / _LOCK_NAME
    while True:
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the home a failed run made was removed: again
            continue
        except PermissionError:  # a home this user may not write: nothing to make in it
            yield path
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # removed by the run that held it: open the path again
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _build_key(s: Settings, key_type: str, created: list[str]) -> SigningKey:
    if not s.key_path.exists():
        SigningKey.generate(KeyType(key_type)).save(s.key_path, s.passphrase)
        created.append(str(s.key_path))
    return SigningKey.load(s.key_path, s.passphrase)


@click.command()
@click.option(
    "--key-type",
    type=click.Choice([t.value for t in KeyType]),
    default=KeyType.ED25519.value,
    show_default=True,
    help="Algorithm of the build-signing key (the log key is always Ed25519).",
)
@json_option
@pass_app
def init(app: App, key_type: str, as_json: bool) -> None:
    """Create ESCROW_HOME, a SQLite ledger and the signing keys.

    With a server configured (ESCROW_SERVER), only the build key: it is registered
    with the server when ESCROW_TOKEN is an admin token, and otherwise the command
    to register it is printed.  Idempotent: an existing key is never overwritten,
    an existing ledger is kept; a failed init leaves nothing behind.
    """
    result = _init_server(app, key_type) if app.settings.server else _init_local(app, key_type)
    if as_json:
        app.emit_json(result)
    else:
        app.out(f"escrow home: {result['home']}")
        if result["server"]:
            app.out(f"server:      {result['server']}")
        app.out(f"build key:   {result['build_key']}")
        app.out(f"log key:     {result['log_verifier_key']}")
    if result["server"]:
        where = f"{result['server']} as {result['key_name']!r}"
        if result["registered_now"]:
            app.say(f"Registered the build key with {where}.")
        elif result["registered"]:
            app.say(f"The build key is registered with {where}.")
        else:
            app.say(_register_elsewhere(app.settings, result["build_key"]))
    if not result["created"] and result["registered"] and not result["registered_now"]:
        app.say("Already initialised; nothing was overwritten.")
    elif not result["server"] and result["registered_now"] and not result["created"]:
        app.say(f"Registered the build key {result['build_key'][:16]}… in the ledger.")


def _register_elsewhere(s: Settings, keyid: str) -> str:
    pub = public_key_path(s.key_path)
    return (
        f"The build key {keyid[:16]}… is not registered with {s.server}, and ESCROW_TOKEN "
        f"may not register keys: on a machine with an admin token, with a copy of {pub}, "
        f"run `{register_command(pub)}`; then `escrow build` works here."
    )


def _init_local(app: App, key_type: str) -> dict[str, Any]:
    return _one_init(app, key_type, _init_local_locked)


def _one_init(
    app: App, key_type: str, init: Callable[[App, str, Path], dict[str, Any]]
) -> dict[str, Any]:
    """``init`` with the home's init lock held (:func:`_one_at_a_time`); a home this run
    made, and left empty, is removed when it fails (another run's keys keep it)."""
    made_home = _Undo(app.settings.home)  # the home and its parents, if this run makes them
    try:
        with _one_at_a_time(app.settings.home) as lock:
            return init(app, key_type, lock)
    except BaseException:
        made_home.undo()  # empty folders only: another run's keys keep the home
        raise


def _init_local_locked(app: App, key_type: str, lock: Path) -> dict[str, Any]:
    from escrow.ledger.store import sqlite_file

    s = app.settings
    db_file = sqlite_file(s.db_url)
    db_files = [Path(db_file + sfx) for sfx in ("", "-wal", "-shm", "-journal")] if db_file else []
    undo = _Undo(  # what is missing now, with the lock held: this run makes it
        s.log_key_path,
        public_key_path(s.log_key_path),
        s.key_path,
        public_key_path(s.key_path),
        *db_files,
    )
    # Once a ledger other than a SQLite file this run made has been opened, it is
    # bound to the log key: that key must then stay, even if a later step fails.
    bound = False
    created: list[str] = []
    try:
        if not s.log_key_path.exists():
            SigningKey.generate(KeyType.ED25519).save(s.log_key_path, s.passphrase)
            created.append(str(s.log_key_path))
        build_key = _build_key(s, key_type, created)
        with app.local_ledger(create=True) as ledger:
            bound = not db_files or db_files[0] not in undo.new
            _check_build_key(s, build_key, ledger.verifier_key(), ledger.key_status)
            now = ledger.key_status(build_key.keyid) is None
            ledger.register_key(build_key.public, "build")
            found = ledger.key_status(build_key.keyid)
            verifier_key = ledger.verifier_key()
            size = ledger.size()
    except BaseException:
        if not bound:
            with contextlib.suppress(OSError):  # so that the home this run made can go too
                lock.unlink()
            undo.undo()
        raise
    return {
        "home": str(s.home),
        "db_url": redact_url(s.db_url),
        "server": None,
        "build_key": build_key.keyid,
        "public_key_path": str(public_key_path(s.key_path)),
        "registered": True,
        "registered_now": now,
        "key_name": found[0] if found else "build",
        "log_verifier_key": verifier_key,
        "created": created,
        "size": size,
    }


def _check_build_key(
    s: Settings,
    build_key: SigningKey,
    verifier_key: str,
    key_status: Callable[[str], tuple[str, str] | None],
) -> None:
    """Refuse a build key that is the ledger's log key (``ESCROW_KEY`` or config.json's
    ``key`` naming ``log.key.pem``: it was registered as a signing key), and one revoked
    or retired in the ledger (a revoked one failed as a key that cannot be registered
    again, a retired one passed as set up), as ``escrow init`` with a server does."""
    from escrow.cli.keys_cmd import refuse_log_key

    refuse_log_key(
        verifier_key,
        build_key.keyid,
        f"The build key {s.key_path}",
        hint="Point ESCROW_KEY (or config.json's key) at a key of its own, or leave it "
        "unset for ESCROW_HOME/keys/build.key.pem.",
    )
    found = key_status(build_key.keyid)
    if found is not None and found[1] != "active":
        raise KeyLocked(
            f"The build key {build_key.keyid[:16]}… ({found[0]}) is {found[1]} in the ledger "
            "and may not sign new entries.",
            hint=f"Replace it with `escrow keys rotate --name build`, or move {s.key_path} "
            "aside and run `escrow init` again.",
        )


def _init_server(app: App, key_type: str) -> dict[str, Any]:
    return _one_init(app, key_type, _init_server_locked)


def _init_server_locked(app: App, key_type: str, lock: Path) -> dict[str, Any]:
    from escrow.server.client import RemoteLedger, ServerAuthError

    s = app.settings
    remote = RemoteLedger.open(s)
    undo = _Undo(s.key_path, public_key_path(s.key_path), remote.state_path)
    created: list[str] = []
    try:
        with remote:
            size = remote.size()  # a verified checkpoint: the token reads, the log key pins
            verifier_key = remote.verifier_key()
            build_key = _build_key(s, key_type, created)
            found = remote.key_status(build_key.keyid)
            if found is not None and found[1] != "active":
                raise KeyLocked(
                    f"The build key {build_key.keyid[:16]}… ({found[0]}) is {found[1]} on "
                    f"{s.server} and may not sign new entries.",
                    hint=f"Replace it with `escrow keys rotate --name build` (an admin token "
                    f"in ESCROW_TOKEN), or move {s.key_path} aside and run `escrow init` again.",
                )
            registered, now = found is not None, False
            name = found[0] if found is not None else None
            if not registered:
                try:
                    remote.register_key(build_key.public, suggested_key_name())
                    registered = now = True
                    name = suggested_key_name()
                except ServerAuthError:  # the token reads (checked above) but is no admin
                    pass
                size = remote.size()
    except BaseException:
        with contextlib.suppress(OSError):  # so that the home this run made can go too
            lock.unlink()
        undo.undo()
        raise
    return {
        "home": str(s.home),
        "db_url": None,
        "server": s.server,
        "build_key": build_key.keyid,
        "public_key_path": str(public_key_path(s.key_path)),
        "registered": registered,
        "registered_now": now,
        "key_name": name,
        "log_verifier_key": verifier_key,
        "created": created,
        "size": size,
    }
