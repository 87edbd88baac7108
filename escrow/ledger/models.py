"""Value objects of the ledger's public face (no database imports here)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from escrow.errors import InputError, LedgerTamperError

#: What to do about an entry that the ledger's own data contradicts.
VERIFY_HINT = "Run `escrow ledger verify` to audit the whole ledger."


@dataclass(frozen=True)
class Entry:
    """One leaf of the log."""

    index: int  # 0-based position in the log
    leaf_hash: str  # hex SHA-256(0x00 || envelope)
    envelope: bytes  # the exact stored leaf bytes (canonical DSSE JSON)
    predicate_type: str
    project: str | None
    image_id: str | None  # "sha256:…" for build manifests and rebuild verifications
    signer: str  # key ID that signed it
    integrated_at: datetime  # UTC

    def statement(self) -> dict[str, Any]:
        """The decoded in-toto Statement of the envelope.

        The ledger only accepts envelopes whose statement decodes, so stored bytes that
        do not (not JSON, truncated, a payload that is not a JSON object) were changed
        after the append: a :class:`LedgerTamperError` naming the entry, not an input error.
        """
        from escrow.signing.dsse import Envelope

        try:
            return Envelope.from_bytes(self.envelope).statement()
        except InputError as e:
            raise LedgerTamperError(
                f"The stored envelope of entry {self.index} cannot be read: "
                "it was tampered with or corrupted.",
                index=self.index,
                kind="edited",
                hint=VERIFY_HINT,
            ) from e

    def to_dict(self) -> dict[str, Any]:
        """Summary without the envelope bytes (JSON-ready)."""
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash,
            "predicate_type": self.predicate_type,
            "project": self.project,
            "image_id": self.image_id,
            "signer": self.signer,
            "integrated_at": rfc3339(self.integrated_at),
        }


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: C2SP tlog-checkpoint body plus its signed-note text."""

    origin: str
    size: int
    root: bytes
    note: str  # the full signed-note text

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "note": self.note,
        }


@dataclass(frozen=True)
class KeyRecord:
    """A signing key registered in the ledger and its history.

    ``status`` is ``active`` (may sign new entries), ``revoked`` or ``retired``.
    A key retired with an ``effective`` time in the future stays ``active`` until then.
    """

    keyid: str
    name: str
    algorithm: str
    public_pem: str
    status: str
    added_at: datetime
    added_index: int
    revoked_at: datetime | None = None
    retired_at: datetime | None = None
    reason: str | None = None
    ended_index: int | None = None  # ledger index of the revoke/retire event
    #: ledger index of the retire event, which a later revocation leaves in force
    #: (``ended_index`` is then the revocation's).  Known from the log's key events
    #: (:func:`escrow.ledger.store.replay_key_events`); the key table keeps only the last
    #: event's index, so a key read from it that was retired, then revoked, has ``None``
    #: here: not compared, the records are otherwise the same.
    retired_index: int | None = field(default=None, compare=False)

    def retired_before(self, index: int, appended: datetime) -> bool:
        """Whether the key's retirement was in force for entry ``index``, appended at
        ``appended``: an entry before the retire event was appended before it, whatever its
        time (the same microsecond, or the clock put back: append times never go back);
        one after it, from the time the retirement takes effect (``retired_at``: a
        retirement from a later date leaves the key signing until then).  Without the
        event's index (a record from the key table), by that time alone."""
        if self.retired_at is None:
            return False
        at = self.retired_index
        if at is None and self.revoked_at is None:
            at = self.ended_index
        if at is not None and index < at:
            return False
        return self.retired_at <= appended

    @property
    def told_reason(self) -> str | None:
        """The reason worth showing beside the status: not the word "retired" that
        retirements given no ``--reason`` recorded before escrow stopped writing it."""
        if self.revoked_at is None and self.reason == "retired":
            return None
        return self.reason or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "name": self.name,
            "algorithm": self.algorithm,
            "status": self.status,
            "added_at": rfc3339(self.added_at),
            "added_index": self.added_index,
            "revoked_at": rfc3339(self.revoked_at) if self.revoked_at else None,
            "retired_at": rfc3339(self.retired_at) if self.retired_at else None,
            "reason": self.reason,
            "ended_index": self.ended_index,
            "public_key": self.public_pem,
        }


def find_key(records: Iterable[KeyRecord], wanted: str) -> KeyRecord:
    """The registered key ``wanted`` names: its full key ID, a unique prefix of it, or
    its name.  :class:`InputError` when none or several match (a name shared by a
    rotated key and its successor is not guessed between: revoking the wrong key
    would be worse than asking)."""
    text = wanted.strip()
    found: dict[str, KeyRecord] = {}
    for k in records:
        if text and (k.keyid.startswith(text.lower()) or k.name == text):
            found[k.keyid] = k
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise InputError(
            f"No registered key has the ID or name {wanted!r}.",
            hint="List the keys with `escrow keys list`.",
        )
    shown = ", ".join(f"{k.keyid[:16]}… ({k.name}, {k.status})" for k in list(found.values())[:5])
    raise InputError(
        f"{wanted!r} matches {len(found)} registered keys: {shown}.",
        hint="Give more of the key ID (`escrow keys list` shows them).",
    )


@dataclass(frozen=True)
class Problem:
    """One disagreement found by :meth:`Ledger.verify`.

    ``kind`` is one of :data:`PROBLEM_KINDS`; ``index`` is the first entry concerned
    (``None`` for problems of a checkpoint as a whole, e.g. a signature by another key).
    """

    index: int | None
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "message": self.message}

    @property
    def where(self) -> str:
        """Where in the ledger the problem is, for a sentence: "at entry N", the part of
        the ledger a problem without an entry concerns ("in its checkpoints", "in its key
        table", …), or "" when the message alone says it (e.g. an empty log)."""
        if self.index is not None:
            return f"at entry {self.index}"
        return PROBLEM_PARTS.get(self.kind, "")


#: Every ``Problem.kind``, with what it means.
PROBLEM_KINDS: dict[str, str] = {
    "edited": "the stored envelope bytes no longer hash to the recorded leaf hash",
    "deleted": "an entry is missing from the middle of the log",
    "reordered": "an entry sits at another position than the one it was appended at",
    "forged": "an entry is not signed by any key the log ever registered",
    "bad-signature": "an entry's signature by a registered key does not verify",
    "key-not-valid": "an entry is signed by a key that was not valid at that position",
    "subtree-hash": "a stored complete-subtree hash disagrees with its children",
    "index": (
        "an entry's indexed columns (predicate type, project, image ID, diff IDs, signer) "
        "disagree with it"
    ),
    "key-table": "the key table (a key's name, status, adding or ending entry) disagrees "
    "with the log's key events",
    "truncated": "the log holds fewer entries than a signed checkpoint covers",
    "uncheckpointed": "entries exist beyond the latest signed checkpoint",
    "checkpoint-signature": "a checkpoint is not signed by the log key",
    "checkpoint-root": "a checkpoint's root does not match the log at its size",
    "empty": "the log holds nothing to verify (verification fails closed)",
}

#: The part of the ledger a problem of each kind concerns when it has no entry index
#: (a checkpoint as a whole, or a row of ``ledger_meta`` that a part relies on).
PROBLEM_PARTS: dict[str, str] = {
    "checkpoint-signature": "in its checkpoints",
    "checkpoint-root": "in its checkpoints",
    "truncated": "in its checkpoints",
    "uncheckpointed": "in its checkpoints",
    "index": "in its query index",
    "key-table": "in its key table",
    "subtree-hash": "in its stored tree",
}


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`Ledger.verify`; ``ok`` only when nothing disagrees."""

    size: int
    root: bytes
    entries_checked: int
    signatures_checked: int
    checkpoints_checked: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.entries_checked == self.size

    @property
    def first(self) -> Problem | None:
        """The problem at the lowest index (entry problems before checkpoint-wide ones)."""
        if not self.problems:
            return None
        return min(
            self.problems,
            key=lambda p: (p.index is None, p.index if p.index is not None else 0),
        )

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "size": self.size,
            "root": self.root.hex(),
            "entries_checked": self.entries_checked,
            "signatures_checked": self.signatures_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad_index": first.index if first else None,
            "first_problem": first.to_dict() if first else None,
            "problems": [p.to_dict() for p in self.problems],
        }


def rfc3339(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def decode_json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"The {what} is not valid JSON: {e}.") from e
    if not isinstance(obj, dict):
        raise InputError(f"The {what} is not a JSON object.")
    return obj


def stored_bytes(value: Any) -> bytes:
    """A BLOB column's value as bytes.  SQLite keeps a value's own type, so a row edited
    by hand can hold text there: its UTF-8 bytes are what is then checked (and fail)."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
