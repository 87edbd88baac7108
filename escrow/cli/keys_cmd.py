"""``escrow keys``: generate, add, list, export, revoke, retire and rotate signing keys.

Private keys are PKCS#8 PEM files ``ESCROW_HOME/keys/<name>.key.pem`` (mode
0600, encrypted when ``ESCROW_KEY_PASSPHRASE`` is set or ``--passphrase-prompt``
is given) with the public key beside them as ``<name>.pub.pem``.  Every key
event (added, revoked, retired) is a signed entry in the ledger.

Rotation keeps the configured path: ``keys rotate --name build`` moves the old
key aside as ``build-<keyid8>.key.pem`` (and ``.pub.pem``), writes the new key
to ``build.key.pem``, registers it, and retires the old one from now (or
``--from DATE``).  ``ESCROW_KEY`` / the config file need no change.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from escrow.cli.app import App, json_option, pass_app, passphrase_prompt_option
from escrow.errors import EnvironmentProblem, EscrowError, InputError, KeyLocked, UsageError
from escrow.signing.keyfile import public_key_path, write_temporary
from escrow.signing.keys import KeyType, OtherAlgorithm, PublicKey, SigningKey

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from click.decorators import FC

    from escrow.ledger.models import KeyRecord
    from escrow.ledger.store import Ledger
    from escrow.server.client import RemoteLedger

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _type_option(default: str) -> Callable[[FC], FC]:
    """``--type``: the new key's algorithm, its default said as the command takes it."""
    return click.option(
        "--type",
        "key_type",
        type=click.Choice([t.value for t in KeyType]),
        help=f"Algorithm of the new key [default: {default}].",
    )


#: ``--from`` of ``retire`` and ``rotate``, after "Retire it from" / "Retire the old key from"
_FROM_HELP = "this date or RFC 3339 time [default: now]."


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith((".key", ".pub")):
        raise UsageError(
            f"The key name {name!r} is not allowed.",
            hint="Use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit.",
        )
    return name


def key_path(app: App, name: str) -> Path:
    """Where the private key ``name`` lives; ``build`` is the configured build key."""
    if name == "build":
        return app.settings.key_path
    return app.settings.keys_dir / f"{_check_name(name)}.key.pem"


def ask_passphrase(what: str, *, confirm: bool) -> str | None:
    """Ask on the terminal; when stdin is not a terminal, read one line from it."""
    if not sys.stdin.isatty():
        # its bytes as they come, whatever stdin's encoding (PYTHONIOENCODING=ascii, a
        # Latin-1 locale): the key was locked with them (see passphrase_bytes)
        buffer = getattr(sys.stdin, "buffer", None)
        raw = buffer.readline() if buffer is not None else sys.stdin.readline().encode()
        if not raw:
            raise UsageError(f"No passphrase for {what} on standard input.")
        return raw.decode("utf-8", "surrogateescape").rstrip("\r\n") or None
    value: str = click.prompt(
        f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return value or None


def _passphrase(app: App, prompt: bool, *, confirm: bool) -> str | None:
    """The passphrase of the key: typed at the prompt (never empty), else ESCROW_KEY_PASSPHRASE."""
    if prompt:
        typed = ask_passphrase("the key", confirm=confirm)
        if not typed:
            raise UsageError(
                "The passphrase typed at the prompt is empty; nothing was written.",
                hint="Type a passphrase, or leave out --passphrase-prompt (and "
                "ESCROW_KEY_PASSPHRASE) for an unencrypted key.",
            )
        return typed
    return app.settings.passphrase


def _given_with_key_option(path: Path) -> bool:
    """Whether the running command was given ``path`` with ``--key`` (``escrow sign``)."""
    ctx = click.get_current_context(silent=True)
    given = (ctx.params.get("key_paths") if ctx is not None else None) or ()
    return str(path) in {str(p) for p in given}


def load_key(path: Path, passphrase: str | None, *, prompted: bool) -> SigningKey:
    """The private key at ``path``; a wrong passphrase names where it came from, a missing
    file or a folder says so in terms of where the path came from (``--key`` or the
    configuration)."""
    given = _given_with_key_option(path)
    if path.is_dir():
        raise InputError(
            f"The signing key {path}{' given with --key' if given else ''} is a folder, "
            "not a private key file."
        )
    if given and not path.exists():
        raise InputError(f"The signing key {path} given with --key does not exist.")
    try:
        return SigningKey.load(path, passphrase)
    except KeyLocked as e:
        if prompted and e.hint and "ESCROW_KEY_PASSPHRASE" in e.hint:
            raise KeyLocked(
                e.message, hint="Run the command again and type the key's passphrase."
            ) from e
        raise


def _is_log_key(app: App, path: Path) -> bool:
    """Whether ``path`` is the ledger's log key (it signs checkpoints and key events)."""
    return path.absolute() == app.settings.log_key_path.absolute()


def _write_new(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to a fresh temporary file beside ``path`` (synced; its folder made
    first); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_temporary(path, data, mode)


def _local_keys(app: App) -> dict[str, Path]:
    """Key ID -> private key file, for the keys whose ``.pub.pem`` is beside them."""
    found: dict[str, Path] = {}
    folders = {app.settings.keys_dir, app.settings.key_path.parent}
    for folder in folders:
        for pub in sorted(folder.glob("*.pub.pem")) if folder.is_dir() else []:
            private = pub.with_name(pub.name.removesuffix(".pub.pem") + ".key.pem")
            try:
                keyid = PublicKey.from_pem(pub.read_bytes()).keyid
            except (InputError, OSError):
                continue
            if private.exists():
                found.setdefault(keyid, private)
    return found


def parse_when(text: str) -> datetime:
    """RFC 3339 (``2027-01-31T12:00:00Z``) or a date (``2027-01-31``, midnight UTC)."""
    s = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            return datetime.combine(datetime.fromisoformat(s).date(), time(), tzinfo=UTC)
        when = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as e:
        raise UsageError(
            f"{text!r} is not a date or an RFC 3339 time.",
            hint="Use e.g. 2027-01-31 or 2027-01-31T12:00:00Z.",
        ) from e
    if when.tzinfo is None:
        raise UsageError(f"The time {text!r} has no time zone.", hint="End it with Z for UTC.")
    try:
        return when.astimezone(UTC)
    except OverflowError:  # a time whose UTC falls outside years 1–9999
        raise UsageError(f"The time {text!r} is outside the years 1 to 9999 in UTC.") from None


def _find_key(ledger: Ledger | RemoteLedger, wanted: str, done: str) -> KeyRecord:
    """The registered key ``wanted`` names (a full key ID, a unique prefix or a name:
    :func:`escrow.ledger.models.find_key`); the log key, which is not one and cannot be
    ``done`` (revoked, retired, exported), is named as what it is."""
    from escrow.ledger import checkpoint as cp

    try:
        return ledger.key(wanted)
    except InputError as e:
        text = wanted.strip().lower()
        if not text or not e.message.startswith("No registered key"):
            raise
        log_id = cp.parse_verifier_key(ledger.verifier_key())[2].keyid
        if not log_id.startswith(text):
            raise
        what = f"{wanted.strip()!r} is the ledger's log key {log_id[:16]}…, not a signing key"
        if done == "exported":
            raise UsageError(f"{what}.", hint="`escrow ledger verifier-key` prints it.") from e
        raise UsageError(
            f"{what}: it signs the checkpoints and key events, and cannot be {done} (the "
            "ledger is bound to it).",
            hint="`escrow keys list` shows the signing keys.",
        ) from e


def refuse_log_key(
    verifier_key: str,
    keyid: str,
    what: str,
    hint: str = "Register a key of its own (`escrow keys generate`).",
) -> None:
    """Refuse to register the ledger's own log key (``verifier_key``, its note verifier
    line) as a signing key: it signs the checkpoints and key events, and `escrow keys`
    refuses to revoke or retire it.  ``what`` names the key offered (its file)."""
    from escrow.ledger import checkpoint as cp

    if cp.parse_verifier_key(verifier_key)[2].keyid == keyid:
        raise UsageError(
            f"{what} is the ledger's log key {keyid[:16]}…, which signs its checkpoints and "
            "key events and cannot also be a signing key; nothing was registered.",
            hint=hint,
        )


def _check_reason(reason: str) -> str:
    """``--reason`` as recorded: not one that cannot be written as UTF-8 (bytes that are
    not, from a shell), which failed as a document that cannot be canonicalised."""
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"The --reason {reason!r} is not valid UTF-8 text; nothing was recorded."
        ) from None
    return reason


def _find_usable_key(ledger: Ledger | RemoteLedger, wanted: str, done: str) -> KeyRecord:
    """:func:`_find_key`, except that a name shared by several keys (a rotated key and
    its successor) names the one of them that is active, when exactly one is.  A full
    key ID or a unique prefix always names its own key."""
    text = wanted.strip()
    records = ledger.keys()
    if text and not any(k.keyid.startswith(text.lower()) for k in records):
        named = [k for k in records if k.name == text]
        active = [k for k in named if k.status == "active"]
        if len(named) > 1 and len(active) == 1:
            return active[0]
    return _find_key(ledger, wanted, done)


def _one_line(text: str) -> str:
    """``text`` on one table row: a line break or tab shown as ``\\x0a``/``\\x09``, as
    printing shows every other control character."""
    return text.replace("\n", "\\x0a").replace("\t", "\\x09")


def _rfc3339(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@click.group()
def keys() -> None:
    """Signing keys: generate, add, list, export, revoke, retire, rotate.

    Each key event (added, revoked, retired) is a ledger entry signed by the log key.
    """


@keys.command()
@_type_option("ed25519")
@click.option(
    "--name", metavar="NAME", help="File name under ESCROW_HOME/keys [default: key-<keyid8>]."
)
@passphrase_prompt_option
@json_option
@pass_app
def generate(
    app: App, key_type: str | None, name: str | None, passphrase_prompt: bool, as_json: bool
) -> None:
    """Generate a key, save it as PKCS#8 PEM and register it in the ledger."""
    key = SigningKey.generate(KeyType(key_type or KeyType.ED25519.value))
    name = _check_name(name or f"key-{key.keyid[:8]}")
    path = key_path(app, name)
    if path.exists():
        raise InputError(
            f"A key named {name!r} already exists ({path}); nothing was overwritten.",
            hint="Choose another --name (the log key cannot be replaced)."
            if _is_log_key(app, path)
            else f"Choose another --name, or replace it with `escrow keys rotate --name {name}`.",
        )
    passphrase = _passphrase(app, passphrase_prompt, confirm=True)
    ledger = app.ledger()
    # both files written before the key is registered: once it is, only names change
    tmp = _write_new(path, key.private_pem(passphrase))
    try:
        tmp_pub = _write_new(public_key_path(path), key.public.pem().encode("ascii"), 0o644)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        entry = ledger.register_key(key.public, name)
        os.link(tmp, path)  # fails rather than overwrite a key written meanwhile
        os.replace(tmp_pub, public_key_path(path))
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp_pub.unlink(missing_ok=True)
        raise
    tmp.unlink()
    result = {
        "keyid": key.keyid,
        "name": name,
        "algorithm": key.type.value,
        "path": str(path),
        "public_key_path": str(public_key_path(path)),
        "encrypted": bool(passphrase),
        "ledger_index": entry.index,
    }
    if as_json:
        app.emit_json(result)
        return
    app.out(key.keyid)
    app.say(
        f"Saved {key.type.value} key {name!r} to {path} and registered it (entry {entry.index})."
    )


@keys.command()
@click.argument("public_key", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--name",
    metavar="NAME",
    required=True,
    help="A name for the key in the ledger (e.g. pipeline).",
)
@json_option
@pass_app
def add(app: App, public_key: Path, name: str, as_json: bool) -> None:
    """Register PUBLIC_KEY (a PEM public key made elsewhere, e.g. a pipeline's own key).

    What it signs can then be appended (`escrow post`, `escrow serve`).  The private
    key stays with its owner; adding a key already active changes nothing.
    """
    name = _check_name(name)
    try:
        data = public_key.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read the public key file {public_key}: {e.strerror}.") from e
    if b"PRIVATE KEY" in data:
        raise InputError(
            f"{public_key} holds a private key; register its public key instead.",
            hint="`openssl pkey -in KEY.pem -pubout` prints it; the private key stays with "
            "whoever signs.",
        )
    try:
        public = PublicKey.from_pem(data)
    except OtherAlgorithm as e:  # a key, of another algorithm: say which
        raise InputError(
            f"{public_key} holds {e.algorithm} key; escrow takes Ed25519 and ECDSA P-256 only."
        ) from e
    except InputError as e:
        raise InputError(f"{public_key} is not a PEM public key.", hint=e.hint) from e
    ledger = app.ledger()
    refuse_log_key(ledger.verifier_key(), public.keyid, str(public_key))
    found = ledger.key_status(public.keyid)
    if found is not None and found[1] != "active":
        raise InputError(
            f"The key {public.keyid[:16]}… ({found[0]}) is {found[1]} in the ledger and "
            "cannot be registered again.",
            hint="Sign with a new key (`escrow keys generate`, or add a new public key).",
        )
    entry = ledger.register_key(public, name)
    if as_json:
        app.emit_json(
            {
                "keyid": public.keyid,
                "name": found[0] if found else name,
                "algorithm": public.type.value,
                "ledger_index": entry.index,
                "created": found is None,
            }
        )
        return
    app.out(public.keyid)
    if found is None:
        app.say(f"Registered {public.type.value} key {name!r} (entry {entry.index}).")
    else:
        app.say(f"The key is already registered as {found[0]!r} (entry {entry.index}).")


@keys.command("list")
@json_option
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List the registered keys, their status and history, and which are on this machine."""
    records = app.ledger(readonly=True).keys()
    local = _local_keys(app)
    build_id = _build_keyid(app)
    rows: list[dict[str, Any]] = []
    for record in records:
        row = record.to_dict()
        row["private_key_path"] = str(local[record.keyid]) if record.keyid in local else None
        row["build_key"] = record.keyid == build_id
        rows.append(row)
    if as_json:
        app.emit_json({"keys": rows})
        return
    if not rows:
        app.say("No keys are registered; run `escrow init` or `escrow keys generate`.")
        return
    app.out(f"{'KEY ID':<18} {'NAME':<16} {'ALGORITHM':<11} {'STATUS':<8} {'ADDED':<21} ENDED")
    for r, rec in zip(rows, records, strict=True):
        ended = rec.revoked_at or rec.retired_at
        mark = " *" if r["build_key"] else ""
        # a retirement still to come: the key signs until then
        when = "retires " if rec.status == "active" and ended else ""
        app.out(
            f"{rec.keyid[:16]:<18} {rec.name[:16]:<16} {rec.algorithm:<11} {rec.status:<8} "
            f"{_rfc3339(rec.added_at.replace(microsecond=0)):<21} "
            f"{f'{when}{_rfc3339(ended.replace(microsecond=0))}' if ended else '-'}"
            f"{' (' + _one_line(rec.told_reason) + ')' if rec.told_reason else ''}{mark}"
        )
    if any(r["build_key"] for r in rows):
        app.say("* the configured build key")


@keys.command()
@click.argument("keyid")
@json_option
@pass_app
def export(app: App, keyid: str, as_json: bool) -> None:
    """Print the public key KEYID (full ID, unique prefix or name) as PEM.

    A name shared by several keys (after `escrow keys rotate`) means the one of them
    that is active; when none or several are, give the key ID.
    """
    rec = _find_usable_key(app.ledger(readonly=True), keyid, "exported")
    if as_json:
        app.emit_json(rec.to_dict())
        return
    app.out(rec.public_pem.rstrip("\n"))


@keys.command()
@click.argument("keyid")
@click.option("--reason", required=True, help="Why the key is revoked (recorded in the ledger).")
@json_option
@pass_app
def revoke(app: App, keyid: str, reason: str, as_json: bool) -> None:
    """Revoke KEYID (full ID, unique prefix or name): it signs nothing appended from
    now on.

    Entries it signed before stay valid and are marked in verify output and packs. A
    retired key can still be revoked, when its private key leaks later.

    So a name shared by several keys (after `escrow keys rotate`) is not guessed
    between, even when only one of them is active: the leaked key may be the retired
    one, and a revocation cannot be undone. Give the key ID (`escrow keys list`).
    """
    _check_reason(reason)
    ledger = app.ledger()
    rec = _find_key(ledger, keyid, "revoked")
    entry = ledger.revoke_key(rec.keyid, reason)
    is_build = _is_build_key(app, rec.keyid)
    result = {
        "keyid": rec.keyid,
        "name": rec.name,
        "status": "revoked",
        "reason": reason.strip(),
        "ledger_index": entry.index,
        "build_key": is_build,
    }
    if as_json:
        app.emit_json(result)
    else:
        app.out(f"Revoked {rec.keyid} ({rec.name}) at entry {entry.index}.")
    if is_build:
        app.say(
            "The configured build key is revoked: run `escrow keys rotate` before signing again."
        )


def _retire_from(effective: str | None) -> datetime:
    """When a retirement takes effect: ``--from`` (not in the past), else now."""
    now = datetime.now(UTC)
    when = parse_when(effective) if effective else now
    if when < now.replace(microsecond=0):
        raise UsageError(
            "A key cannot be retired from a time in the past.",
            hint="Give a future --from, or revoke the key (`escrow keys revoke`).",
        )
    return when


def _build_keyid(app: App) -> str | None:
    """The key ID of the configured build key (by its public key file), if it has one."""
    build = public_key_path(app.settings.key_path)
    try:
        return PublicKey.from_pem(build.read_bytes()).keyid
    except (InputError, OSError):  # missing, unreadable or not a public key: not known
        # (it failed `keys list`, and `keys revoke`/`retire` after the key event was written)
        return None


def _is_build_key(app: App, keyid: str) -> bool:
    """Whether ``keyid`` is the configured build key."""
    return _build_keyid(app) == keyid


@keys.command()
@click.argument("keyid")
@click.option(
    "--from",
    "effective",
    metavar="DATE|TIME",
    help="Retire it from " + _FROM_HELP,
)
@click.option("--reason", default="", help="Why the key is retired (recorded in the ledger).")
@json_option
@pass_app
def retire(app: App, keyid: str, effective: str | None, reason: str, as_json: bool) -> None:
    """Retire KEYID (full ID, unique prefix or name), now or from a given time: it signs
    nothing appended from then on.

    Unlike a revocation this says nothing against the key: entries it signed
    stay valid. `escrow keys rotate` retires a key and replaces it in one step.

    A name shared by several keys (after `escrow keys rotate`) means the one of them
    that is active; when none or several are, give the key ID.
    """
    when = _retire_from(effective)
    _check_reason(reason)
    ledger = app.ledger()
    rec = _find_usable_key(ledger, keyid, "retired")
    if rec.status != "active":
        raise InputError(f"The key {rec.keyid[:16]}… ({rec.name}) is already {rec.status}.")
    if rec.retired_at is not None:  # retiring from a time still to come
        raise InputError(
            f"The key {rec.keyid[:16]}… ({rec.name}) is already to be retired from "
            f"{_rfc3339(rec.retired_at)} (entry {rec.ended_index}); a retirement cannot be "
            "moved.",
            hint="To stop it signing now, revoke it (`escrow keys revoke`).",
        )
    entry = ledger.retire_key(rec.keyid, when if effective else None, reason.strip() or None)
    result = {
        "keyid": rec.keyid,
        "name": rec.name,
        "status": "retired",
        "effective_from": _rfc3339(when),
        "ledger_index": entry.index,
    }
    if as_json:
        app.emit_json(result)
    else:
        app.out(
            f"Retired {rec.keyid} ({rec.name}) from {result['effective_from']} "
            f"at entry {entry.index}."
        )
    if _is_build_key(app, rec.keyid):
        app.say(
            "The configured build key is retired from then: run `escrow keys rotate` to replace it."
        )


@keys.command(short_help="Replace key --name NAME with a new one and retire the old one.")
@click.option(
    "--name", metavar="NAME", default="build", show_default=True, help="Which key to rotate."
)
@_type_option("the old key's")
@click.option(
    "--from",
    "effective",
    metavar="DATE|TIME",
    help="Retire the old key from " + _FROM_HELP,
)
@passphrase_prompt_option
@json_option
@pass_app
def rotate(
    app: App,
    name: str,
    key_type: str | None,
    effective: str | None,
    passphrase_prompt: bool,
    as_json: bool,
) -> None:
    """Replace key --name NAME with a new one; the old key is retired now (or at --from).

    The new key takes the old one's file name, so the configuration need not
    change; the old key is kept as <name>-<keyid8>.key.pem.
    """
    path = key_path(app, name)
    if _is_log_key(app, path):
        raise UsageError(
            f"The log key {path} cannot be rotated: the ledger is bound to it (it signs "
            "every checkpoint and key event), and `escrow keys rotate` replaces signing keys."
        )
    if name != "build" and not path.exists():  # a missing build key: `escrow init`
        raise UsageError(
            f"No key named {name!r} exists under {app.settings.keys_dir} (no {path.name}).",
            hint="`escrow keys list` shows the registered keys and where their files are.",
        )
    _retire_from(effective)  # a --from in the past is refused before anything waits
    passphrase = _passphrase(app, passphrase_prompt, confirm=False)
    with _rotation_lock(path.parent):
        _rotate(app, name, path, key_type, effective, passphrase, passphrase_prompt, as_json)


def _rotation_lock(keys_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the keys folder locked (``flock`` on the folder itself: nothing is written)
    while a key is rotated, from reading the old key to putting the new one in its place:
    two rotations at once each registered a new key, archived the other's under the old
    one's name, and left two keys active."""
    import fcntl

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        try:
            fd = os.open(keys_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # no keys folder: loading the key says what is missing
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a second rotation waits, then rotates the new key
            yield
        finally:
            os.close(fd)

    return held()


def _rotate(
    app: App,
    name: str,
    path: Path,
    key_type: str | None,
    effective: str | None,
    passphrase: str | None,
    passphrase_prompt: bool,
    as_json: bool,
) -> None:
    when = _retire_from(effective)  # now: after any rotation this one waited for
    old = load_key(path, passphrase, prompted=passphrase_prompt)
    ledger = app.ledger()
    if ledger.key_status(old.keyid) is None:
        pub = public_key_path(path)
        raise InputError(
            f"The key {name!r} ({old.keyid[:16]}…) is not registered in the ledger, so "
            "there is nothing to rotate.",
            hint=f"Register it with `escrow keys add {shlex.quote(str(pub))} --name {name}`."
            if pub.is_file()
            else "Register its public key with `escrow keys add`.",
        )
    rec = ledger.key(old.keyid)
    # a key already to be retired from a time still to come keeps that retirement
    scheduled = rec.status == "active" and rec.retired_at is not None
    if scheduled and effective:
        raise UsageError(
            f"The key {name!r} ({old.keyid[:16]}…) is already to be retired from "
            f"{_rfc3339(rec.retired_at)}; --from cannot move that.",
            hint="Rotate it without --from: the old key keeps signing until then.",
        )
    new = SigningKey.generate(KeyType(key_type) if key_type else old.type)
    archived = path.with_name(f"{path.name.removesuffix('.key.pem')}-{old.keyid[:8]}.key.pem")
    if archived.exists():
        archived = path.with_name(f"{path.name.removesuffix('.key.pem')}-{old.keyid}.key.pem")
    # Every file is written before the ledger changes: once the new key is registered,
    # only names change (no space needed), so a full disk cannot leave the new key
    # registered with its private key thrown away, nor a truncated public key file.
    written: list[Path] = []
    try:
        tmp = _write_new(path, new.private_pem(passphrase))
        written.append(tmp)
        tmp_pub = _write_new(public_key_path(path), new.public.pem().encode("ascii"), 0o644)
        written.append(tmp_pub)
        old_pub = None
        if not public_key_path(path).exists():
            old_pub = _write_new(public_key_path(archived), old.public.pem().encode("ascii"), 0o644)
            written.append(old_pub)
        added = ledger.register_key(new.public, rec.name)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    # the new key is put in place before the old one is retired: a build that reads the
    # key file meanwhile gets a key that may sign (the old one, still active, or the new
    # one), and one refused for the retired key finds the new one there (capture.publish)
    os.link(path, archived)
    if old_pub is None:
        os.replace(public_key_path(path), public_key_path(archived))
    else:
        os.replace(old_pub, public_key_path(archived))
    os.replace(tmp, path)
    os.replace(tmp_pub, public_key_path(path))
    # a revoked (or already retired) key just gets replaced
    not_retired: BaseException | None = None
    retired = None
    if rec.status == "active" and not scheduled:
        try:
            retired = ledger.retire_key(old.keyid, when, f"rotated to {new.keyid[:16]}")
        except BaseException as e:  # the new key is registered and in place all the same
            not_retired = e
    if isinstance(not_retired, Exception):
        raise _not_retired(name, path, old, new, effective, not_retired) from not_retired
    if not_retired is not None:  # Ctrl-C, SIGTERM: the same interruption, files in place
        raise not_retired
    after = ledger.key(old.keyid)
    ended = after.retired_at or after.revoked_at
    result = {
        "name": name,
        "path": str(path),
        "new": {"keyid": new.keyid, "algorithm": new.type.value, "ledger_index": added.index},
        "old": {
            "keyid": old.keyid,
            "status": "retired" if retired is not None or scheduled else after.status,
            "retired_from": _rfc3339(ended),
            "path": str(archived),
            "ledger_index": retired.index if retired is not None else after.ended_index,
        },
    }
    if as_json:
        app.emit_json(result)
        return
    app.out(new.keyid)
    app.say(
        f"Rotated {name!r}: new key {new.keyid[:16]}… in {path}; old key {old.keyid[:16]}… "
        f"{'retired' if retired or scheduled else rec.status} from {_rfc3339(ended)}, "
        f"kept as {archived}."
    )


def _not_retired(
    name: str,
    path: Path,
    old: SigningKey,
    new: SigningKey,
    effective: str | None,
    error: Exception,
) -> EnvironmentProblem:
    """A rotation whose new key was registered and put in place, but whose old key could
    not be retired (a full disk between the two appends, Ctrl-C): says so, and how to end
    the old key, which stays active meanwhile.  Before, the new key's file was removed
    while the ledger kept it registered, active, with no private key anywhere."""
    reason = error.message if isinstance(error, EscrowError) else str(error)
    when = f" --from {shlex.quote(effective)}" if effective else ""
    problem = EnvironmentProblem(
        f"The key {name!r} was rotated to the new key {new.keyid[:16]}… ({path}), but the old "
        f"key {old.keyid[:16]}… could not be retired and is still active: "
        f"{reason[:1].lower()}{reason[1:].rstrip('.')}.",
        hint=f"Once that is fixed, run `escrow keys retire {old.keyid}{when}`.",
    )
    if isinstance(error, EscrowError):
        problem.exit_code = error.exit_code
    return problem
