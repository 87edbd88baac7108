"""Signed checkpoints in the C2SP ``tlog-checkpoint`` / ``signed-note`` format.

A checkpoint note::

    <origin>\\n<size>\\n<base64 root>\\n
    \\n
    — <key name> <base64(4-byte key hash || Ed25519 signature)>\\n

The signature is over the note body (the first three lines, each ending in a
newline).  The key hash is the first 4 bytes of
``SHA-256(name || 0x0A || 0x01 || 32-byte public key)``, and the verifier key is
``<name>+<8 hex digits of the key hash>+<base64(0x01 || public key)>``, the form
Go's ``golang.org/x/mod/sumdb/note`` reads.

The checkpoint a pack is made against carries one extension line after the root (the
body's fourth line, which C2SP checkpoint readers pass over):
``key-events <count> <base64 digest>`` — how many key events the log holds below that
size and :func:`key_events_digest` of them, so that ``escrow pack verify`` can tell
that none was left out of the pack (a revocation, say).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from escrow.errors import InputError, SignatureError
from escrow.ledger.models import Checkpoint
from escrow.signing.keys import PublicKey, SigningKey
from escrow.text import printable

EM_DASH = "\u2014"
KEY_EVENTS = "key-events"
_ED25519_ALG = b"\x01"


def check_note_name(name: str, what: str = "The note key name") -> None:
    """:class:`InputError` unless ``name`` can name a note key (and a checkpoint's origin):
    non-empty UTF-8 text without white space or '+' (Go's ``note`` package), and without
    control characters: no signed note may hold an ASCII one (C2SP signed-note: Go's
    ``note.Open`` refuses such a note as malformed), and escrow prints the others escaped."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        valid = False  # a lone surrogate (a JSON \udxxx escape): not text
    else:
        # str.split() splits on all white space; the control characters that are not
        # white space are looked for too (and DEL, C1 and bidirectional controls, which
        # escrow's output escapes: the key printed would not be the key)
        valid = name.split() == [name] and "+" not in name and printable(name) == name
    if not valid:
        raise InputError(
            f"{what} {name!r} must be non-empty text, without spaces, control characters or '+'.",
            hint="Set a log origin such as 'escrow.example.com/ledger'.",
        )


def key_hash(name: str, raw_public: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || '\\n' || 0x01 || public key)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519_ALG + raw_public).digest()[:4]


def verifier_key_line(name: str, public: PublicKey) -> str:
    """The note verifier key ``<name>+<hash hex>+<base64(0x01 || public key)>``."""
    check_note_name(name)
    raw = public.raw()
    return f"{name}+{key_hash(name, raw).hex()}+{base64.b64encode(_ED25519_ALG + raw).decode()}"


def parse_verifier_key(line: str) -> tuple[str, bytes, PublicKey]:
    """``(name, key hash, public key)`` of a verifier key line; InputError when malformed."""
    parts = line.strip().split("+", 2)  # base64 may hold "+" too
    if len(parts) != 3:
        raise InputError("The verifier key must look like <name>+<8 hex digits>+<base64 key>.")
    name, hash_hex, b64 = parts
    try:
        khash = bytes.fromhex(hash_hex)
        blob = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error) as e:
        raise InputError("The verifier key has a bad key hash or base64 key.") from e
    if len(khash) != 4 or len(blob) != 33 or blob[:1] != _ED25519_ALG:
        raise InputError("The verifier key is not an Ed25519 note key.")
    if key_hash(name, blob[1:]) != khash:
        raise InputError("The verifier key's hash does not match its name and key.")
    return name, khash, PublicKey.from_raw_ed25519(blob[1:])


def checkpoint_body(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    if not origin or "\n" in origin:
        raise InputError("The log origin must be one non-empty line.")
    if any(not line or "\n" in line for line in extensions):
        raise InputError("A checkpoint extension must be one non-empty line.")
    lines = "".join(f"{line}\n" for line in extensions)
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n{lines}"


def key_events_digest(events: Iterable[tuple[int, bytes]]) -> tuple[int, bytes]:
    """``(count, digest)`` of a log's key events, in log order: the digest is
    SHA-256 over each event's index (8 bytes, big-endian) and leaf hash (32 bytes)."""
    h = hashlib.sha256()
    count = 0
    for index, leaf_hash in events:
        h.update(index.to_bytes(8, "big") + leaf_hash)
        count += 1
    return count, h.digest()


def key_events_line(count: int, digest: bytes) -> str:
    """The checkpoint extension line that commits to the log's key events."""
    return f"{KEY_EVENTS} {count} {base64.b64encode(digest).decode()}"


def parse_key_events(body: str) -> tuple[int, bytes] | None:
    """The ``(count, digest)`` a checkpoint body's ``key-events`` line commits to (None
    when it has none); :class:`InputError` when that line is malformed."""
    for line in body.split("\n")[3:]:
        fields = line.split(" ")
        if fields[0] != KEY_EVENTS:
            continue
        try:
            if len(fields) != 3 or not fields[1].isdigit():
                raise ValueError(line)
            digest = base64.b64decode(fields[2], validate=True)
        except (ValueError, binascii.Error) as e:
            what = f"The checkpoint's {KEY_EVENTS} line {line[:60]!r} is malformed."
            raise InputError(what) from e
        if len(digest) != 32:
            raise InputError(f"The checkpoint's {KEY_EVENTS} digest is not 32 bytes.")
        return int(fields[1]), digest
    return None


def sign_note(text: str, key: SigningKey, name: str) -> str:
    """A signed note: ``text`` (ending in a newline), a blank line, one signature line."""
    check_note_name(name)
    if not text.endswith("\n") or "\n\n" in text:
        raise InputError("A note's text must end in a newline and hold no blank line.")
    raw = key.public.raw()
    sig = key.sign(text.encode("utf-8"))
    blob = base64.b64encode(key_hash(name, raw) + sig).decode()
    return f"{text}\n{EM_DASH} {name} {blob}\n"


def open_note(note: str, verifier_key: str) -> str:
    """The text of ``note`` once a signature by ``verifier_key`` verifies (else SignatureError)."""
    name, khash, public = parse_verifier_key(verifier_key)
    text, sigs = parse_note(note)
    for sig_name, sig_hash, sig in sigs:
        if sig_name != name or sig_hash != khash:
            continue
        try:
            public.verify(sig, text.encode("utf-8"))
        except SignatureError:
            continue
        return text
    raise SignatureError(
        f"The note is not signed by the key {name}+{khash.hex()}.",
        hint="It was signed by another key, or its text was changed.",
    )


def sign_checkpoint(
    origin: str,
    size: int,
    root: bytes,
    key: SigningKey,
    name: str,
    extensions: Sequence[str] = (),
) -> str:
    """The signed-note text of checkpoint ``(origin, size, root)``, signed by ``key``."""
    return sign_note(checkpoint_body(origin, size, root, extensions), key, name)


def parse_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """``(body, [(name, key hash, signature)])`` of a signed note."""
    head, sep, sigs = note.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise InputError("The checkpoint is not a signed note (no blank line before signatures).")
    body = head + "\n"
    out: list[tuple[str, bytes, bytes]] = []
    for line in sigs[:-1].split("\n"):
        prefix = EM_DASH + " "
        fields = line[len(prefix) :].split(" ") if line.startswith(prefix) else []
        if len(fields) != 2:
            raise InputError(f"The checkpoint has a malformed signature line {line[:60]!r}.")
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except (ValueError, binascii.Error) as e:
            raise InputError("A checkpoint signature is not valid base64.") from e
        if len(blob) < 5:
            raise InputError("A checkpoint signature is too short.")
        out.append((fields[0], blob[:4], blob[4:]))
    return body, out


def parse_checkpoint_body(body: str) -> tuple[str, int, bytes]:
    lines = body.split("\n")
    if len(lines) < 4:
        raise InputError("The checkpoint body must hold an origin, a size and a root hash.")
    origin, size_s, root_b64 = lines[0], lines[1], lines[2]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise InputError(f"The checkpoint tree size {size_s[:30]!r} is not a decimal number.")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except (ValueError, binascii.Error) as e:
        raise InputError("The checkpoint root hash is not valid base64.") from e
    if len(root) != 32:
        raise InputError("The checkpoint root hash is not 32 bytes.")
    return origin, int(size_s), root


def verify_checkpoint(note: str, verifier_key: str) -> Checkpoint:
    """Parse ``note`` and check it is signed by ``verifier_key``; SignatureError if not."""
    body, _ = parse_note(note)
    origin, size, root = parse_checkpoint_body(body)
    try:
        open_note(note, verifier_key)
    except SignatureError as e:
        raise SignatureError(
            f"The checkpoint of {origin!r} at size {size} is not signed by the log key "
            f"{verifier_key.split('+')[0]}+{verifier_key.split('+')[1]}.",
            hint="It was signed by another key, or its text was changed.",
        ) from e
    return Checkpoint(origin=origin, size=size, root=root, note=note)


def read_checkpoint_file(path: Path, *, hint: str) -> str:
    """The checkpoint note saved in ``path`` (``--since-checkpoint``): read as UTF-8 text
    and parsed as a checkpoint note, not yet verified.  :class:`InputError` (exit 2) when
    the file cannot be read or holds no checkpoint note; ``hint`` says what to give."""
    try:
        # a BOM (saved by an editor) is not part of the note; CRLF line endings are read
        # as LF (universal newlines)
        note = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        why = (e.strerror or str(e)) if isinstance(e, OSError) else "not UTF-8 text"
        raise InputError(f"Cannot read the saved checkpoint {path}: {why}.") from e
    # the line ending after the last signature line is not signed: a copy that lost it
    # (`printf %s "$(escrow ledger checkpoint)"`), or has blank lines or spaces after it,
    # is the same note
    if "\n\n" in note.rstrip():
        note = note.rstrip() + "\n"
    try:
        parse_checkpoint_body(parse_note(note)[0])
    except InputError as e:
        why = e.message[:1].lower() + e.message[1:]
        raise InputError(f"{path} is not a checkpoint note: {why}", hint=hint) from e
    return note
