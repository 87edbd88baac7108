"""Logs as they are recorded (:class:`LogBuffer`: a build step's, a recorded command's
output) and read back from the blob store (``escrow logs``)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from escrow.blobs import BlobStore
from escrow.errors import EnvironmentProblem, InputError

if TYPE_CHECKING:
    from escrow.capture.secrets import Redactor, StreamScrub

#: bytes of a log kept in memory as they come (a build's step logs nearly all stay below);
#: a longer log is scrubbed as it comes and kept in a temporary file in the blob store
MEMORY_LIMIT = 4 << 20
#: bytes scrubbed at a time once a log is past :data:`MEMORY_LIMIT` (a build step's log
#: comes a line at a time)
_PIECE = 1 << 16
#: bytes of a scrubbed log's end kept for its failure tail: more than the 4,000
#: characters of its last 20 lines can take (4 bytes a character at most)
_TAIL_BYTES = 1 << 16


class LogBuffer:
    """One log as it comes: a build step's, or the output of ``escrow record``'s command.

    Kept in memory up to ``limit`` bytes, and scrubbed whole when stored, as every log
    was. Past ``limit`` (with ``blobs`` and ``redactor`` given) it is scrubbed as it
    comes (:class:`~escrow.capture.secrets.StreamScrub`, with the values known then;
    those learnt later are scrubbed from all of it once it has ended) into a temporary
    file in the blob store that has no name (nothing is left of it however escrow
    stops), so that memory stays bounded whatever the log's size (a line of it aside,
    while a URL's user-info in it has not ended), and no value known by then is written
    to disk."""

    __slots__ = ("_blobs", "_head", "_limit", "_redactor", "_scrubbed", "_spill", "_stored")

    def __init__(
        self,
        blobs: BlobStore | None = None,
        redactor: Redactor | None = None,
        limit: int = MEMORY_LIMIT,
    ) -> None:
        #: the log while it is small; once spilled, the bytes not yet scrubbed
        self._head = bytearray()
        self._blobs, self._redactor = blobs, redactor
        self._limit = limit if blobs is not None and redactor is not None else 1 << 62
        self._spill: _Spill | None = None
        #: once stored: the scrubbed bytes (of a log held in memory) and their record
        self._scrubbed: bytes | None = None
        self._stored: dict[str, Any] | None = None

    def write(self, data: bytes) -> None:
        # a build step's log comes a line at a time: as cheap as a bytearray's while small
        self._head += data
        if len(self._head) > self._limit:
            self._overflow()

    def _overflow(self) -> None:
        if self._spill is None:
            assert self._blobs is not None and self._redactor is not None
            self._spill = _Spill(self._blobs, self._redactor)
            self._limit = _PIECE
        with memoryview(self._head) as head:  # a piece at a time: no copy of it all at once
            for at in range(0, len(head), _PIECE):
                self._spill.send(bytes(head[at : at + _PIECE]))
        self._head.clear()

    @property
    def size(self) -> int:
        """Bytes written (before scrubbing)."""
        return len(self._head) + (self._spill.size if self._spill is not None else 0)

    def ends_with_newline(self) -> bool:
        if self._head:
            return self._head[-1:] == b"\n"
        return self._spill is not None and self._spill.last == b"\n"

    @property
    def spilled(self) -> bool:
        """Whether the log went past its memory limit (into a temporary file)."""
        return self._spill is not None

    def __bytes__(self) -> bytes:
        """The log as written (while it is held in memory and not stored)."""
        if self._spill is not None or self._scrubbed is not None:
            raise ValueError("the log is stored: only its scrubbed bytes are kept")
        return bytes(self._head)

    def store(self, blobs: BlobStore, redactor: Redactor) -> dict[str, Any]:
        """Store the scrubbed log in ``blobs`` (once); its manifest record (``sha256``,
        ``size``: of the stored bytes)."""
        from escrow.capture.manifest import log_ref

        if self._stored is None:
            if self._spill is not None:
                self._finish()
                self._stored = self._spill.store(blobs)
            else:  # the scrubbed bytes are kept for the tail, the log as written is not
                self._scrubbed = redactor.data(bytes(self._head))
                self._head = bytearray()
                self._stored = log_ref(blobs, self._scrubbed)
        return dict(self._stored)

    def scrubbed_end(self, redactor: Redactor) -> bytes:
        """The end of the scrubbed log (of the bytes stored, once it is) that its failure
        tail is cut from (:func:`~escrow.capture.manifest.log_tail`): all of it while it
        is held in memory; once past its limit, its last 64 KiB before the line feeds it
        ends with -- more than the tail's 4,000 characters can take."""
        if self._spill is not None:
            self._finish()
            return self._spill.tail()
        if self._scrubbed is not None:
            return self._scrubbed
        return redactor.data(bytes(self._head))

    def _finish(self) -> None:
        assert self._spill is not None
        if self._head:
            self._spill.send(bytes(self._head))
            self._head.clear()
        self._spill.finish()

    def close(self) -> None:
        """Let go of the temporary file (the log is stored, or given up)."""
        if self._spill is not None:
            self._spill.close()


class _Tail:
    """The last :data:`_TAIL_BYTES` of a log before the line feeds it ends with (which its
    tail leaves out), however many those are."""

    def __init__(self) -> None:
        self._kept = bytearray()
        self._newlines = 0

    def add(self, data: bytes) -> None:
        body = data.rstrip(b"\n")
        if not body:
            self._newlines += len(data)
            return
        if self._newlines:
            self._kept += b"\n" * min(self._newlines, _TAIL_BYTES)
        self._kept += body
        self._newlines = len(data) - len(body)
        if len(self._kept) > 2 * _TAIL_BYTES:
            del self._kept[:-_TAIL_BYTES]

    def value(self) -> bytes:
        return bytes(self._kept[-_TAIL_BYTES:])


class _Spill:
    """A log past its memory limit: scrubbed as it comes into a temporary file.

    A write that fails (a full disk) is not raised while the log comes: the build or
    the command runs to its end, as it did when its whole log was written at the end,
    and storing the log raises it (:class:`EnvironmentProblem`, naming the blob store);
    meanwhile what comes is dropped, and the temporary file let go."""

    def __init__(self, blobs: BlobStore, redactor: Redactor) -> None:
        self._root = blobs.root
        self._redactor = redactor
        self._known = redactor.known_values()
        self._scrub: StreamScrub | None = redactor.stream()
        self._tail = _Tail()
        #: bytes sent (before scrubbing), and the last of them
        self.size, self.last = 0, b""
        self._error: OSError | None = None
        self._file: IO[bytes] | None = None
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(prefix=".log-", dir=self._root)
        except OSError as e:
            self._error = e

    def _failed(self) -> None:
        """Raise the write that failed, if one did."""
        if self._error is not None:
            raise EnvironmentProblem(
                f"Cannot write to the blob store {self._root}: "
                f"{self._error.strerror or self._error}.",
                hint="Free some space there or fix its permissions (the blob store is "
                "ESCROW_HOME/blobs), then run the command again.",
            ) from self._error

    def send(self, data: bytes) -> None:
        self.size += len(data)
        self.last = data[-1:]
        if self._error is None:
            assert self._scrub is not None
            self._write(self._scrub.feed(data))

    def _write(self, out: bytes) -> None:
        if out and self._file is not None:
            try:
                self._file.write(out)
            except OSError as e:
                self._error = e
                self.close()  # what it holds is freed at once
                return
            self._tail.add(out)

    def finish(self) -> None:
        """Scrub what is left; then, when values were learnt since the log began, scrub
        those from all of it (into a second temporary file)."""
        if self._scrub is not None:
            scrub, self._scrub = self._scrub, None
            if self._error is None:
                self._write(scrub.close())
            later = self._redactor.stream_since(self._known)
            if later is not None and self._error is None:
                self._again(later)
        self._failed()

    def _again(self, later: StreamScrub) -> None:
        tail = _Tail()
        again: IO[bytes] | None = None
        try:
            again = tempfile.TemporaryFile(prefix=".log-", dir=self._root)
            for piece in self._chunks(later):
                again.write(piece)
                tail.add(piece)
        except OSError as e:
            if again is not None:
                again.close()
            self._error = e
            self.close()
            return
        self.close()
        self._file, self._tail = again, tail

    def _chunks(self, scrub: StreamScrub | None = None) -> Iterator[bytes]:
        assert self._file is not None
        self._file.flush()
        self._file.seek(0)
        while piece := self._file.read(1 << 20):
            yield piece if scrub is None else scrub.feed(piece)
        if scrub is not None:
            yield scrub.close()

    def store(self, blobs: BlobStore) -> dict[str, Any]:
        self.finish()
        digest, size = blobs.put_chunks(self._chunks())
        return {"sha256": digest, "size": size}

    def tail(self) -> bytes:
        self.finish()
        return self._tail.value()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def entry_logs(
    statement: dict[str, Any], blobs: BlobStore, step: int | None = None
) -> list[dict[str, Any]]:
    """``[{"step", "instruction", "log", "data"}]`` for a build manifest's steps.

    A recorded command (``escrow record``) has one log, its output, as step 1.
    """
    predicate = statement.get("predicate") or {}
    items: list[dict[str, Any]] = []
    command = predicate.get("command")
    if command is not None:
        items.append(
            {"step": 1, "instruction": " ".join(command.get("argv") or []), "log": command["log"]}
        )
    else:
        items.extend(
            {"step": s["index"], "instruction": s["instruction"], "log": s["log"]}
            for s in predicate.get("steps") or []
        )
    if not items:
        raise InputError("The entry has no recorded logs (it is not a build with steps).")
    if step is not None:
        chosen = [i for i in items if i["step"] == step]
        if not chosen:
            known = ", ".join(str(i["step"]) for i in items)
            raise InputError(f"The entry has no step {step}.", hint=f"Its steps are: {known}.")
        items = chosen
    for item in items:
        digest = item["log"]["sha256"]
        if digest == _EMPTY:  # a step that printed nothing: no blob to read
            item["data"] = b""
            continue
        try:
            item["data"] = blobs.get(digest)
        except InputError as e:  # which step's log, not only which blob
            why = e.message.rstrip(".")
            raise InputError(
                f"The entry has no readable log of step {item['step']} "
                f"({_short(item['instruction'])}): {why[:1].lower()}{why[1:]}.",
                hint=e.hint,
            ) from e
    return items


#: the SHA-256 of no bytes: the log of a step that printed nothing
_EMPTY = hashlib.sha256(b"").hexdigest()


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
