"""``escrow ledger …`` (checkpoints, proofs, audit) and ``escrow post`` (append envelopes)."""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from escrow.cli import stdout
from escrow.cli.app import App, Integer, complete_paths, json_option, pass_app
from escrow.errors import CheckFailed, EscrowError, InputError, LedgerTamperError, UsageError
from escrow.text import count


@click.group()
def ledger() -> None:
    """The transparency log: signed checkpoints, inclusion and consistency proofs, audit.

    Auditors keep the latest checkpoint they saw and later run
    `escrow ledger consistency --from saved.checkpoint` to prove the log only grew.
    """


@ledger.command()
@click.option(
    "--tree-size",
    type=Integer(min=1),
    metavar="N",
    help="The checkpoint the log signed when it had N entries [default: the latest]; "
    "on a local ledger only, not through a server.",
)
@json_option
@pass_app
def checkpoint(app: App, tree_size: int | None, as_json: bool) -> None:
    """Print the latest signed checkpoint (a C2SP signed note), or that of an earlier size."""
    if tree_size is not None and app.settings.server:
        raise UsageError(
            "--tree-size works only on a local ledger.",
            hint="Ask the server's operator, or save each checkpoint as you read it.",
        )
    if tree_size is not None:
        with app.local_ledger(readonly=True) as local:
            cp = local.checkpoint(tree_size)
            doc = {**cp.to_dict(), "verifier_key": local.verifier_key()}
    else:
        with app.ledger(readonly=True) as lg:
            cp = lg.checkpoint()
            doc = {**cp.to_dict(), "verifier_key": lg.verifier_key()}
    if as_json:
        app.emit_json(doc)
    else:  # a signed note: its exact bytes, whatever the locale, or it does not verify
        app.exact(cp.note)


@ledger.command("verifier-key")
@json_option
@pass_app
def verifier_key(app: App, as_json: bool) -> None:
    """Print the log's note verifier key (<name>+<key hash>+<base64 key>)."""
    with app.ledger(readonly=True) as lg:
        key = lg.verifier_key()
    if as_json:
        app.emit_json({"verifier_key": key})
    else:  # its name's UTF-8 is what the key hash covers: as it is, whatever the locale
        app.exact(key + "\n")


@ledger.command()
@click.argument("index", type=Integer(min=0))
@pass_app
def leaf(app: App, index: int) -> None:
    """Write the exact stored leaf bytes of entry INDEX to stdout, nothing else."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): say so, write nothing
        raise InputError(
            "There is nowhere to write the leaf: stdout is closed.",
            hint="Redirect it to a file (`> leaf.json`).",
        )
    with app.ledger(readonly=True) as lg:
        data = lg.get(index).envelope
    stdout.write_bytes(data)


@ledger.command()
@click.argument("index", type=Integer(min=0))
@click.option(
    "--tree-size",
    type=Integer(min=1),
    metavar="N",
    help="Prove against the tree of the first N entries [default: the latest].",
)
@json_option
@pass_app
def proof(app: App, index: int, tree_size: int | None, as_json: bool) -> None:
    """Print the RFC 9162 inclusion proof of entry INDEX."""
    from escrow.ledger import merkle

    with app.ledger(readonly=True) as lg:
        size = tree_size if tree_size is not None else lg.size()
        path = lg.inclusion_proof(index, size)
        root = lg.root(size)
        leaf_hash = lg.get(index).leaf_hash
    if not merkle.verify_inclusion(bytes.fromhex(leaf_hash), index, size, path, root):
        raise LedgerTamperError(
            f"The stored tree does not prove entry {index}.",
            index=index,
            kind="subtree-hash",
            hint=_audit_hint(app),
        )
    doc = {
        "index": index,
        "tree_size": size,
        "leaf_hash": leaf_hash,
        "root": root.hex(),
        "proof": [h.hex() for h in path],
    }
    if as_json:
        app.emit_json(doc)
        return
    app.out(
        f"index      {index}\ntree size  {size}\nleaf hash  {leaf_hash}\nroot       {root.hex()}"
    )
    for i, h in enumerate(path):
        app.out(f"proof[{i}]   {h.hex()}")


@ledger.command()
@click.argument("old_size", type=Integer(min=0), required=False)
@click.argument("new_size", type=Integer(min=0), required=False)
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, exists=True),
    help="A checkpoint note saved earlier: check its signature and that the log extends it.",
)
@json_option
@pass_app
def consistency(
    app: App, old_size: int | None, new_size: int | None, from_file: str | None, as_json: bool
) -> None:
    """Print the RFC 9162 consistency proof from OLD_SIZE to NEW_SIZE (default: now).

    With --from, exit 1 unless the saved checkpoint is signed by the log key and
    the log today extends it.
    """
    from escrow.ledger import merkle

    if (old_size is None) == (from_file is None):
        raise click.UsageError(
            "Give OLD_SIZE or --from CHECKPOINT_FILE, not both."
            if old_size is not None
            else "Give OLD_SIZE or --from CHECKPOINT_FILE."
        )
    with app.ledger(readonly=True) as lg:
        old_claimed: bytes | None = None
        if from_file is not None:
            if new_size is not None or old_size is not None:
                raise click.UsageError("With --from, give no sizes: the proof is to today's log.")
            from escrow.ledger.checkpoint import read_checkpoint_file

            note = read_checkpoint_file(
                Path(from_file),
                hint="Give a checkpoint you saved of this log (`escrow ledger checkpoint`).",
            )
            try:
                old = _saved_checkpoint(lg, note)
            except CheckFailed as e:  # --json: still the one document, saying it failed
                if as_json:
                    app.emit_json({"consistent": False, "error": e.diagnostics()})
                raise
            old_size, old_claimed = old.size, old.root
        assert old_size is not None
        new = new_size if new_size is not None else lg.size()
        if old_size > new:
            raise InputError(f"The old size {old_size} is larger than the new size {new}.")
        path = lg.consistency_proof(old_size, new)
        old_root, new_root = lg.root(old_size), lg.root(new)
        # a pack's checkpoint also names the log's key events below its size
        key_events_problem = "" if from_file is None else _key_events_differ(lg, note, old_size)
    ok = merkle.verify_consistency(old_size, new, old_root, new_root, path)
    extends = ok and (old_claimed is None or old_claimed == old_root)
    doc: dict[str, Any] = {
        "old_size": old_size,
        "new_size": new,
        "old_root": (old_claimed or old_root).hex(),
        "new_root": new_root.hex(),
        "proof": [h.hex() for h in path],
    }
    not_extended = (
        None
        if extends or not ok
        else CheckFailed(
            f"The log does not extend the checkpoint: its first {old_size} entries have "
            "another root than the checkpoint's.",
            hint=REWRITTEN_HINT,
        )
    )
    if from_file is not None:
        doc["consistent"] = extends and not key_events_problem
        if not_extended is not None:
            doc["error"] = not_extended.diagnostics()
        elif key_events_problem:
            doc["error"] = key_events_problem
    if as_json:
        app.emit_json(doc)
    else:
        app.out(f"old size  {old_size}\nnew size  {new}")
        app.out(f"old root  {doc['old_root']}\nnew root  {new_root.hex()}")
        for i, h in enumerate(path):
            app.out(f"proof[{i}]  {h.hex()}")
    if not ok:
        raise LedgerTamperError(
            "The stored tree does not prove its own consistency.",
            kind="subtree-hash",
            hint=_audit_hint(app),
        )
    if not_extended is not None:
        raise not_extended
    if key_events_problem:
        raise CheckFailed(key_events_problem, hint="Keep the pack this checkpoint came from.")
    if from_file is not None and not as_json:
        app.say(f"The log (size {new}) extends the checkpoint of size {old_size}.")


#: What a saved checkpoint the log does not extend means, and what to do.
REWRITTEN_HINT = (
    "The log was cut back or rewritten after the checkpoint was saved (restored from an "
    "older backup, or forked): keep the checkpoint and the database as they are."
)


def _key_events_differ(lg: Any, note: str, size: int) -> str:
    """Why the ``key-events`` line of a saved checkpoint (one a pack was made against) does
    not name the log's own key events below its size; "" when it does or has none."""
    from escrow.ledger import checkpoint as cpmod
    from escrow.ledger.store import key_events_below

    committed = cpmod.parse_key_events(cpmod.parse_note(note)[0])
    if committed is None:
        return ""
    events = key_events_below(lg, size)
    if cpmod.key_events_digest(events) == committed:
        return ""
    return (
        f"The checkpoint's key-events line ({count(committed[0], 'key event')} below entry "
        f"{size}) does not match the log's ({len(events)}): the pack it came from was made "
        "with a key event left out or added."
    )


def _saved_checkpoint(lg: Any, note: str) -> Any:
    """The checkpoint ``note`` an auditor saved, once it is shown to be this log's
    (signed by its key, for its origin) and no larger than the log; CheckFailed if not."""
    from escrow.ledger.checkpoint import parse_checkpoint_body, parse_note, verify_checkpoint

    # the origin first: another log's checkpoint is signed by another key too, and is
    # best named as what it is
    origin = parse_checkpoint_body(parse_note(note)[0])[0]
    if origin != lg.origin:
        raise CheckFailed(
            f"The checkpoint is for the log {origin[:80]!r}, not this log {lg.origin!r}.",
            hint="Give a checkpoint you saved of this log, or point ESCROW_HOME or "
            "ESCROW_DB_URL at the log it came from.",
        )
    old = verify_checkpoint(note, lg.verifier_key())
    current = lg.size()
    if old.size > current:
        raise CheckFailed(
            f"The log holds {current} entries, fewer than the {old.size} of the "
            "checkpoint: it does not extend it.",
            hint=REWRITTEN_HINT,
        )
    return old


@ledger.command("verify")
@click.option(
    "--workers",
    type=Integer(min=1),
    default=None,
    metavar="N",
    help="Processes for signature checks [default: one per core for large logs].",
)
@json_option
@pass_app
def verify_cmd(app: App, workers: int | None, as_json: bool) -> None:
    """Audit the whole log: leaf hashes, tree, signatures, keys and checkpoints.

    Exit 1 naming the first bad index and the kind of problem when anything disagrees
    (edited, deleted, reordered, forged, bad-signature, key-not-valid, index, key-table,
    truncated, …). Reads the database itself: run it where the ledger is, not through a
    server.
    """
    with app.ledger(readonly=True) as lg:
        report = lg.verify(workers=workers)
    if as_json:
        app.emit_json(report.to_dict())
    else:
        for p in report.problems[:50]:  # each message names the entry (or the log part)
            app.out(f"FAIL {p.kind:<20} {p.message}")
        if report.ok:
            app.out(
                f"OK: {count(report.entries_checked, 'entry', 'entries')}, "
                f"{count(report.signatures_checked, 'signature')}, "
                f"{count(report.checkpoints_checked, 'checkpoint')}; "
                f"root {report.root.hex()}"
            )
    first = report.first
    if first is not None:
        where = f" {first.where}" if first.where else ""
        raise LedgerTamperError(
            f"The ledger failed verification{where}: {first.kind} ({first.message})",
            index=first.index,
            kind=first.kind,
        )


def _documents(data: bytes) -> list[tuple[int, bytes]]:
    """``(line number, bytes)`` of each envelope: one JSON document, or JSON Lines."""
    text = data.strip()
    if not text.removeprefix(b"\xef\xbb\xbf").strip():  # nothing, or only a UTF-8 BOM
        raise InputError("The input holds no envelope.")
    try:
        json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deeply: no envelope
        if _one_document_then_garbage(text):  # rejected once, as one document
            return [(1, text)]
        return [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
    return [(1, text)]


def _read_documents(lines: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of each envelope of an input read as it is appended:
    JSON Lines are read line by line (the input of `escrow post` may be larger than
    memory, or a pipe still being written); anything else -- one JSON document,
    pretty-printed or not, or a first line that is no JSON value by itself -- is read
    whole and split by :func:`_documents`, as before.  ``lines`` are the input's
    physical lines (each ending in ``\\n``, but maybe the last).  What is not JSON
    Lines, and an input with no envelope (:class:`InputError`), is found before the
    first result is asked for."""
    head: list[bytes] = []  # the input read until its form is known
    found: list[tuple[int, bytes]] = []  # its first two non-blank lines
    number = 0
    for chunk in lines:
        head.append(chunk)
        for line in chunk.splitlines():  # as bytes.splitlines numbers them: \n, \r\n, \r
            number += 1
            if line.strip():
                found.append((number, line))
        if len(found) >= 2:
            break
    if len(found) < 2:  # at most one envelope: the input is all read
        return iter(_documents(b"".join(head)))
    try:
        json.loads(found[0][1])
    except (ValueError, UnicodeDecodeError, RecursionError):
        # a JSON value spread over lines, or a bad first line: read it whole
        return iter(_documents(b"".join(head) + b"".join(lines)))
    return _more_lines(found, lines, number)


def _more_lines(
    found: list[tuple[int, bytes]], lines: Iterator[bytes], number: int
) -> Iterator[tuple[int, bytes]]:
    """The rest of a JSON Lines input, its non-blank lines numbered, read as asked for."""
    yield from found
    for chunk in lines:
        for line in chunk.splitlines():
            number += 1
            if line.strip():
                yield number, line


def _one_document_then_garbage(text: bytes) -> bool:
    """Whether ``text`` starts with one JSON value spread over several lines (a
    pretty-printed envelope) and goes on after it: one bad document, not JSON Lines."""
    try:
        decoded = text.removeprefix(b"\xef\xbb\xbf").decode()
        _, end = json.JSONDecoder().raw_decode(decoded)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return "\n" in decoded[:end]


class _ResultPrinter:
    """The results of ``escrow post`` on stdout, until a reader closes it (``escrow post
    FILE | head -1``, ``| grep -q rejected``): the envelopes after that are still
    appended, their results not printed, and stderr says so at the end."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.closed_at: int | None = None  # the line whose result found stdout closed

    def out(self, line: int, text: str) -> None:
        if self.closed_at is None:
            self._write(line, lambda: self.app.out(text))

    def json(self, doc: dict[str, Any]) -> None:
        self._write(0, lambda: self.app.emit_json(doc))

    def _write(self, line: int, write: Any) -> None:
        try:
            write()
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            self.closed_at = line
            stdout.discard()

    def report(self, handled: int, appended: int, existing: int, rejected: int) -> None:
        if self.closed_at is None:
            return
        where = f"at line {self.closed_at}" if self.closed_at else "before the results"
        try:
            self.app.say(
                f"Stdout was closed {where}, so not every result was printed; "
                f"{count(handled, 'envelope')} handled ({appended} appended, {existing} "
                f"already there, {rejected} rejected)."
            )
        except OSError:  # stderr went with it (`2>&1 | head`): the exit status tells
            pass


@click.command()
@click.argument("source", default="-", metavar="[FILE|-]", shell_complete=complete_paths)
@json_option
@pass_app
def post(app: App, source: str, as_json: bool) -> None:
    """Append DSSE envelopes (one JSON document, or JSON Lines) to the ledger.

    Each envelope must be signed by a registered, active key.  One result line per
    envelope; invalid envelopes are rejected one by one with the reason while the
    valid ones are still appended.  Exit 1 when any was rejected.  Exit 3 when the
    ledger becomes unusable part way: the envelopes before the line it stopped at
    were handled (--json: "results" so far and "stopped" with its "line" and
    "error"), none after; posting the same input again is safe.
    """
    if not source.strip():  # `escrow post "$FILE"` with FILE unset
        raise InputError(
            "The FILE argument is empty.", hint="Give the file of envelopes, or - for stdin."
        )
    with contextlib.ExitStack() as closing:
        try:
            if source == "-":
                if sys.stdin is None or sys.stdin.closed:  # started with stdin closed (`<&-`)
                    raise InputError(
                        "There is no input to read: stdin is closed.",
                        hint="Give a FILE, or pipe the envelopes in.",
                    )
                stdin = getattr(sys.stdin, "buffer", None)
                chunks: Iterator[bytes] = (
                    iter(stdin) if stdin is not None else _encoded_lines(sys.stdin)
                )
            else:
                chunks = iter(closing.enter_context(open(source, "rb")))  # noqa: SIM115
            # JSON Lines are read as they are appended, so memory does not grow with
            # the input, and a pipe's envelopes are appended while it is written
            docs = _read_documents(_reading(chunks, source))
        except OSError as e:
            raise InputError(f"Cannot read {source}: {e.strerror}.") from e
        _post_documents(app, docs, as_json)


def _encoded_lines(text: Any) -> Iterator[bytes]:
    """The lines of a text stdin (no binary buffer under it), UTF-8 encoded."""
    for line in text:
        yield line.encode("utf-8")


def _reading(chunks: Iterator[bytes], source: str) -> Iterator[bytes]:
    """``chunks``, an :class:`OSError` while they are read said as one sentence."""
    while True:
        try:
            chunk = next(chunks, None)
        except OSError as e:
            raise InputError(f"Cannot read {source}: {e.strerror}.") from e
        if chunk is None:
            return
        yield chunk


def _post_documents(app: App, docs: Iterator[tuple[int, bytes]], as_json: bool) -> None:
    """Append ``docs`` in order and report each result (the body of `escrow post`)."""
    results: list[dict[str, Any]] = []
    stopped: EscrowError | None = None  # the ledger became unusable part way (exit 3)
    printer = _ResultPrinter(app)  # a reader that goes away does not stop the appends
    read: collections.deque[int] = collections.deque()  # lines read, their results not out
    last = [0]  # the line of the last envelope read

    def envelopes() -> Iterator[bytes]:
        for line, raw in docs:
            read.append(line)
            last[0] = line
            yield raw

    def not_handled() -> int:
        """The line of the first envelope not handled: read, still to be read, or (the
        input could not be read on) the line after the last one read."""
        if read:
            return read[0]
        try:
            return next(docs, (last[0] + 1, b""))[0]
        except EscrowError:
            return last[0] + 1

    with app.ledger() as lg:
        # each envelope in its own transaction, in order; the next ones are checked
        # on a second thread meanwhile
        outcomes = lg.append_many(envelopes())
        try:
            for outcome in outcomes:
                line = read.popleft()
                if isinstance(outcome, EscrowError):
                    error = outcome.diagnostics()
                    results.append({"line": line, "status": "rejected", "error": error})
                    if not as_json:
                        printer.out(line, f"rejected line {line}: {error}")
                    continue
                entry, created = outcome
                status = "appended" if created else "exists"
                results.append(
                    {
                        "line": line,
                        "status": status,
                        "index": entry.index,
                        "leaf_hash": entry.leaf_hash,
                    }
                )
                if not as_json:
                    printer.out(line, f"{status} {entry.index} {entry.leaf_hash}")
        except EscrowError as e:
            stopped = e
    stop_line = not_handled() if stopped is not None else 0
    appended = sum(r["status"] == "appended" for r in results)
    existing = sum(r["status"] == "exists" for r in results)
    rejected = sum(r["status"] == "rejected" for r in results)
    if as_json:
        doc: dict[str, Any] = {
            "results": results,
            "appended": appended,
            "existing": existing,
            "rejected": rejected,
        }
        if stopped is not None:  # what was acknowledged before, and where it stopped
            doc["stopped"] = {"line": stop_line, "error": stopped.diagnostics()}
        printer.json(doc)
    printer.report(len(results), appended, existing, rejected)
    if stopped is not None:
        line = stop_line  # the first one not handled
        handled = (
            f"the envelopes before it were handled ({appended} appended, {existing} already "
            f"there, {rejected} rejected)"
        )
        if getattr(stopped, "maybe_received", False):
            # the connection was lost after the envelope was sent: the server may have
            # appended it (a server stopped mid-request answers no more)
            where = (
                f"stopped at line {line}, which the server may have appended before the "
                f"connection was lost: {handled}, none after it (posting the same input "
                "again is safe: what is there shows as `exists`)."
            )
        else:
            where = (
                f"stopped at line {line}: {handled}, none from it on (posting the same "
                "input again is safe)."
            )
        stopped.message = f"{stopped.message.rstrip('.')}; {where}"
        raise stopped
    if rejected:
        raise CheckFailed(
            f"{rejected} of {count(len(results), 'envelope')} "
            + ("was rejected." if rejected == 1 else "were rejected.")
        )


__all__ = ["ledger", "post", "EscrowError"]


def _audit_hint(app: App) -> str:
    """Where to audit the whole log: here, or on the host of the server worked through
    (`ledger verify` reads the database itself)."""
    if app.settings.server:
        return f"Run `escrow ledger verify` on the host of {app.settings.server}."
    return "Run `escrow ledger verify`."
