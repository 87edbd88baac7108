"""Reading a private key file (the checks that need no cryptography), and writing one whole.

Kept apart from :mod:`escrow.signing.keys` (which loads ``cryptography``) so that
``escrow build`` can refuse a missing or locked key at once, before the engine
starts, and parse the key in the background while the engine builds.
"""

from __future__ import annotations

import os
from pathlib import Path

from escrow.errors import KeyLocked

ENCRYPTED_MARKER = b"ENCRYPTED PRIVATE KEY"


def public_key_path(private: Path) -> Path:
    """Where the public key of the private key file ``NAME.key.pem`` is kept: ``NAME.pub.pem``."""
    return private.with_name(private.name.removesuffix(".key.pem") + ".pub.pem")


def read_key_file(path: Path, passphrase: str | None) -> bytes:
    """The PEM bytes of the private key at ``path``.

    :class:`KeyLocked` when the file is missing or unreadable, or encrypted and no
    passphrase was given.  Whether the passphrase is right is for the parser to say.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise KeyLocked(
            f"The signing key {path} does not exist.",
            hint="Run `escrow init` first, or point ESCROW_KEY at a key.",
        ) from e
    except PermissionError as e:  # another user's key (a home root made)
        raise KeyLocked(
            f"The signing key {path} cannot be read: {e.strerror}.",
            hint="Run as the key's owner, or point ESCROW_KEY (or ESCROW_HOME) at a key "
            "you may read.",
        ) from e
    except OSError as e:
        raise KeyLocked(f"The signing key {path} cannot be read: {e.strerror}.") from e
    if ENCRYPTED_MARKER in data and not passphrase:
        raise KeyLocked(
            f"The signing key {path} is encrypted and no passphrase was given.",
            hint="Set ESCROW_KEY_PASSPHRASE.",
        )
    return data


def write_temporary(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """``data`` in a new file beside ``path`` (``.NAME.XXXXXXXX``, ``mode``), synced to
    disk; its path.  A write that fails (a full disk) leaves no file behind."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def create_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` holding ``data``, whole or not at all: written to a temporary file
    beside it, synced, then linked to its name.  :class:`FileExistsError` (nothing
    written) when ``path`` exists: a key file is never overwritten.

    Writing the key file itself, a full disk (or a kill) left it truncated, or empty,
    under its name, and every later command that loads it failed until it was removed."""
    tmp = write_temporary(path, data, mode)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
