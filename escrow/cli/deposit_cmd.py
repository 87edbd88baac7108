"""``escrow deposit …`` (deposit, check, export, import, stats) and ``escrow gc``.

Thin: parse the options, call :mod:`escrow.deposit`, print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from escrow.cli.app import App, Integer, json_option, pass_app
from escrow.errors import CheckFailed, EnvironmentProblem, InputError, UsageError
from escrow.text import count

if TYPE_CHECKING:
    from escrow.deposit.store import DepositStore

_store_option = click.option(
    "--deposit-store",
    metavar="PATH|oci://HOST[:PORT]/REPO",
    help="The deposit store [default: ESCROW_DEPOSIT_STORE, else deposit_store in "
    "config.json, else ESCROW_HOME/deposits].",
)


def _store(app: App, override: str | None) -> DepositStore:
    from escrow.deposit.store import open_store

    return open_store(app.settings.home, override, reach=True)


def _existing_store(app: App, override: str | None) -> DepositStore:
    """:func:`_store` for the commands that only read or prune: a folder store that does
    not exist is an error, not created (a mistyped ESCROW_HOME must not look empty)."""
    from escrow.deposit.store import FileDepositStore

    store = _store(app, override)
    if isinstance(store, FileDepositStore) and not store.root.is_dir():
        raise EnvironmentProblem(
            f"There is no deposit store at {store.root}.",
            hint="Nothing has been deposited there yet; check ESCROW_HOME, --deposit-store "
            "or ESCROW_DEPOSIT_STORE.",
        )
    return store


def _origin_needs_imported(origin: str | None, imported: bool) -> None:
    """``--origin`` names the ledger of an imported entry: without ``--imported`` INDEX is an
    entry of the local ledger, which would be taken instead of the imported one meant."""
    if origin is not None and not imported:
        raise UsageError(
            "--origin names the ledger of an imported entry and needs --imported; "
            "nothing was checked.",
            hint="Add --imported for an entry of an imported deposit, or drop --origin for "
            "an entry of this ledger.",
        )


def _not_stdio(path: Path, what: str, option: str) -> None:
    """``-`` (standard input or output) is not supported: a file named ``-`` is not meant."""
    if str(path) == "-":
        how = (
            "write the archive to standard output"
            if what == "export"
            else "read the archive from standard input"
        )
        raise UsageError(
            f"escrow deposit {what} does not {how} ('-'); nothing was done.",
            hint=f"Give {option} a file path (./- for a file named '-').",
        )


def _escrow_file(output: Path, app: App, store: DepositStore, since: Path | None) -> str | None:
    """Which of escrow's own files or folders ``output`` (``export -o``) is, if any: a tar in
    place of the ledger database, a key, a store's file or the agent's saved checkpoint
    destroys it."""
    from escrow.deposit.store import FileDepositStore
    from escrow.ledger.store import sqlite_file

    settings = app.settings
    files: list[tuple[Path, str]] = [
        (settings.home / "config.json", "escrow's config.json"),
        (settings.key_path, "the signing key"),
        (settings.log_key_path, "the log signing key"),
    ]
    if since is not None:
        files.append((since, "the saved checkpoint --since-checkpoint reads"))
    db = sqlite_file(settings.db_url)
    if db:
        files += [
            (Path(db + suffix), "the ledger database") for suffix in ("", "-wal", "-shm", ".lock")
        ]
    folders: list[tuple[Path, str]] = [
        (settings.keys_dir, "escrow's keys folder"),
        (settings.blobs_dir, "the ledger's blob store"),
    ]
    if isinstance(store, FileDepositStore):
        folders.append((store.root, "the deposit store"))
    target = output.resolve()
    for path, what in files:
        if target == path.resolve() or (
            output.exists() and path.exists() and os.path.samefile(output, path)
        ):
            return f"{what}, which the export would overwrite"
    for folder, what in folders:
        if target.is_relative_to(folder.resolve()):
            return f"inside {what}, which only escrow writes to"
    return None


def _saved_note(path: Path) -> str:
    """The checkpoint note given with ``--since-checkpoint`` (InputError, exit 2, if none)."""
    import stat

    from escrow.ledger.checkpoint import read_checkpoint_file

    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None  # missing or unreadable: read_checkpoint_file names why
    if mode is not None and not stat.S_ISREG(mode):
        # a FIFO would be read until a writer closes it (forever), a device without end
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a folder"
            if stat.S_ISDIR(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
        )
        raise InputError(
            f"The saved checkpoint {path} is {kind}, not a file holding a checkpoint note."
        )
    if mode is not None and path.stat().st_size == 0:
        raise InputError(f"The saved checkpoint {path} is empty, not a checkpoint note.")
    return read_checkpoint_file(
        path,
        hint="Give the checkpoint.txt of a deposit you imported, or the output of "
        "`escrow ledger checkpoint`.",
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _missing_lines(items: list[dict[str, Any]]) -> list[str]:
    return [
        f"  missing {m['kind']} {m['name']}"
        + (f" ({str(m['digest'])[:19]})" if m.get("digest") else "")
        + f": {m['reason']}"
        for m in items
    ]


class DepositGroup(click.Group):
    """``escrow deposit INDEX`` is short for ``escrow deposit add INDEX``; a first word that
    is neither a command nor an index (``escrow deposit expor 12``) is a mistyped command,
    said so with the commands it may mean, not an invalid INDEX."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        mistyped = first == 0 and not args[0][:1].isdigit()
        if first is not None and args[first] not in self.commands and not mistyped:
            args = ["add", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "INDEX [OPTIONS]  |  COMMAND [ARGS]...")


@click.group(cls=DepositGroup)
def deposit() -> None:
    """Escrow deposits: everything a rebuild needs, stored once by SHA-256.

    `escrow deposit INDEX` (short for `escrow deposit add INDEX`) deposits the
    inputs of ledger entry INDEX: the context, the Dockerfile, the step logs,
    the base images layer by layer and the built image. `escrow build`
    deposits by default. `escrow rebuild INDEX` without --context then takes
    everything from the deposit.
    """


@deposit.command("add")
@click.argument("index", type=Integer(min=0))
@click.option(
    "--context",
    "context",
    type=click.Path(file_okay=False, path_type=Path),
    help="The build context the entry was built from (re-archived; its tree digest must "
    "be the recorded one).",
)
@click.option(
    "-f",
    "--file",
    "dockerfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Dockerfile, when it was outside the context.",
)
@click.option(
    "--no-image",
    is_flag=True,
    help="Do not deposit the built image (a rebuild elsewhere then cannot compare "
    "differing layers file by file).",
)
@_store_option
@json_option
@pass_app
def add(
    app: App,
    index: int,
    context: Path | None,
    dockerfile: Path | None,
    no_image: bool,
    deposit_store: str | None,
    as_json: bool,
) -> None:
    """Deposit the inputs of ledger entry INDEX while they are still at hand.

    Without --context only the images, the Dockerfile (if deposited before) and
    the logs are deposited. Exits 1 when the deposit is still incomplete,
    listing what is missing.
    """
    from escrow.deposit.deposit import build_predicate, complete_words, deposit_entry

    store = _store(app, deposit_store)
    entry = app.ledger().get(index)
    result = deposit_entry(
        store,
        entry,
        blobs_dir=app.settings.blobs_dir,
        context_dir=context,
        dockerfile=dockerfile,
        include_image=not no_image,
        say=app.say,
    )
    doc = result.to_dict()
    if as_json:
        app.emit_json(doc)
    else:
        done = complete_words(build_predicate(entry)) if result.complete else "INCOMPLETE"
        app.out(f"deposit of entry {index}: {done}")
        app.out(f"record:    {result.record}")
        app.out(f"deposited: {', '.join(result.deposited) or 'nothing new'}")
        app.out(f"new bytes: {_size(result.bytes_new)}")
        for line in _missing_lines(result.missing):
            app.out(line)
        for m in result.optional_missing:
            app.out(f"  not deposited (optional) {m['kind']}: {m['reason']}")
    if not result.complete:
        raise CheckFailed(
            f"The deposit of entry {index} is incomplete "
            f"({count(len(result.missing), 'item')} missing).",
            hint=_incomplete_hint(result.missing, context_given=context is not None),
        )


def _incomplete_hint(missing: list[dict[str, Any]], *, context_given: bool) -> str:
    """What would complete a deposit, for the kinds of items still missing."""
    kinds = {str(m["kind"]) for m in missing}
    hints = []
    if kinds & {"context", "dockerfile"} and not context_given:
        hints.append("Pass --context DIR (and -f FILE) with the inputs as they were at build time.")
    bases = sorted({str(m["name"]) for m in missing if m["kind"] == "base-image"})
    if bases:
        hints.append(
            f"The engine no longer has the base image{'s' if len(bases) > 1 else ''} "
            f"{', '.join(bases)}: load or pull the very image recorded (its ID is in "
            "`escrow show INDEX`) and run this command again."
        )
    if kinds & {"log", "file-list"}:
        hints.append(
            "Step logs and file lists are kept in the blob store of the ESCROW_HOME that "
            "recorded the build: run the deposit there."
        )
    return " ".join(hints) or "Run `escrow deposit check INDEX` for the details."


@deposit.command("check")
@click.argument("index", type=Integer(min=0))
@click.option("--verify", is_flag=True, help="Also re-hash every deposited blob.")
@click.option("--imported", is_flag=True, help="INDEX is an entry of an imported deposit.")
@click.option(
    "--origin",
    help="With --imported, when deposits of several ledgers hold that index: the ledger's "
    "origin, its verifier key, or the 8 hex digits of its key hash.",
)
@_store_option
@json_option
@pass_app
def check(
    app: App,
    index: int,
    verify: bool,
    imported: bool,
    origin: str | None,
    deposit_store: str | None,
    as_json: bool,
) -> None:
    """Whether the deposit of entry INDEX holds everything a rebuild needs.

    Exit codes: 0 complete; 1 incomplete (what is missing is listed); 2 no such build
    entry; 3 the ledger or the deposit store cannot be reached.
    """
    from escrow.deposit.deposit import build_predicate, check_entry, complete_words

    _origin_needs_imported(origin, imported)
    store = _store(app, deposit_store)
    if imported:
        from escrow.deposit.bundle import imported_entry

        entry, _ = imported_entry(store, index, origin)
    else:
        entry = app.ledger().get(index)
    report = check_entry(store, entry, verify=verify)
    doc = {
        "index": index,
        "leafHash": entry.leaf_hash,
        "complete": report.complete,
        "record": report.record,
        "missing": report.missing,
        "optionalMissing": report.optional,
        "verifiedBlobs": report.verified,
    }
    if as_json:
        app.emit_json(doc)
    else:
        done = complete_words(build_predicate(entry)) if report.complete else "INCOMPLETE"
        app.out(f"deposit of entry {index}: {done}")
        for line in _missing_lines(report.missing):
            app.out(line)
        for m in report.optional:
            app.out(f"  not deposited (optional) {m['kind']}: {m['reason']}")
        if verify:
            app.out(f"re-hashed {count(report.verified, 'blob')}")
    if not report.complete:
        raise CheckFailed(
            f"The deposit of entry {index} is incomplete "
            f"({count(len(report.missing), 'item')} missing)."
        )


@deposit.command("export")
@click.argument("indexes", nargs=-1, required=True, type=Integer(min=0), metavar="INDEX...")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The tar file to write.",
)
@click.option(
    "--since-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The escrow agent's saved checkpoint note of this ledger: include the "
    "consistency proof from it (refused when the ledger does not extend it).",
)
@_store_option
@json_option
@pass_app
def export(
    app: App,
    indexes: tuple[int, ...],
    output: Path,
    since_checkpoint: Path | None,
    deposit_store: str | None,
    as_json: bool,
) -> None:
    """Write a self-contained escrow deposit of entries INDEX... to a tar file.

    It holds the deposited inputs and images, the signed envelopes, their
    inclusion proofs, the ledger checkpoint, its verifier key and the signers'
    public keys, with a table of contents (TOC.json) — for an escrow agent.
    With --since-checkpoint, also the consistency proof from the agent's
    checkpoint, which `escrow deposit import --since-checkpoint` needs.
    """
    from escrow.deposit.bundle import export_deposit

    _not_stdio(output, "export", "-o")
    old_note = _saved_note(since_checkpoint) if since_checkpoint is not None else None
    store = _store(app, deposit_store)
    own = _escrow_file(output, app, store, since_checkpoint)
    if own is not None:
        raise UsageError(
            f"The output {output} is {own}; nothing was written.",
            hint="Give -o a new file of its own, outside escrow's ledger, keys and stores.",
        )
    toc = export_deposit(
        app.local_ledger(), store, list(indexes), output, since_checkpoint=old_note
    )
    total = sum(int(b["size"]) for b in toc["blobs"])
    doc = {
        "output": str(output),
        "entries": [e["index"] for e in toc["entries"]],
        "blobs": len(toc["blobs"]),
        "bytes": total,
        "origin": toc["origin"],
        "treeSize": toc["treeSize"],
        "verifierKey": toc["verifierKey"],
        "consistencyFrom": (toc.get("consistency") or {}).get("oldSize"),
    }
    if as_json:
        app.emit_json(doc)
    else:
        count = len(toc["entries"])
        app.out(
            f"wrote {output}: {count} entr{'y' if count == 1 else 'ies'}"
            f", {len(toc['blobs'])} blobs ({_size(total)})"
        )
        app.out(f"ledger {toc['origin']} at size {toc['treeSize']}")
        app.out(f"verifier key: {toc['verifierKey']}")
        if doc["consistencyFrom"] is not None:
            app.out(f"consistency proof from size {doc['consistencyFrom']} included")


@deposit.command("import")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--verifier-key",
    metavar="KEY|@FILE",
    help="The ledger's note verifier key the deposit must be signed under (recommended; "
    "otherwise the key inside the archive is trusted and printed).",
)
@click.option(
    "--max-member-size",
    type=Integer(min=1),
    metavar="BYTES",
    default=64 << 30,
    show_default=True,
    help="Refuse archive members larger than this many bytes.",
)
@click.option(
    "--since-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The checkpoint note you saved of this vendor's ledger earlier (e.g. the "
    "checkpoint.txt of the last deposit you imported): refuse the deposit unless its "
    "log extends it (same tree, or proven consistent).",
)
@click.option(
    "--save-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Once the deposit is imported, write its verified checkpoint note to FILE (it may "
    "be the --since-checkpoint FILE): the one to pass to --since-checkpoint next time. "
    "Left as it was when the import is refused.",
)
@_store_option
@json_option
@pass_app
def import_(
    app: App,
    archive: Path,
    verifier_key: str | None,
    max_member_size: int,
    since_checkpoint: Path | None,
    save_checkpoint: Path | None,
    deposit_store: str | None,
    as_json: bool,
) -> None:
    """Verify an exported deposit completely, then store it.

    Checked before anything is stored: the checkpoint signature, each entry's
    inclusion proof and signature, every blob's SHA-256, the completeness of
    each deposit, and that no member would be written outside the store.
    With --since-checkpoint, also that the vendor's log only grew since the
    checkpoint you saved (exit 1 on a fork, nothing stored). Imported entries
    are rebuilt with `escrow rebuild --imported INDEX`.
    """
    from escrow.deposit.bundle import import_deposit

    _not_stdio(archive, "import", "ARCHIVE")
    old_note = _saved_note(since_checkpoint) if since_checkpoint is not None else None
    if verifier_key is not None and verifier_key.startswith("@"):
        try:
            verifier_key = Path(verifier_key[1:]).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InputError(
                f"Cannot read the verifier key file {verifier_key[1:]}: {e.strerror or e}."
            ) from e
    store = _store(app, deposit_store)
    slot = _checkpoint_slot(save_checkpoint) if save_checkpoint is not None else None
    try:
        result = import_deposit(
            store,
            archive,
            verifier_key=verifier_key,
            max_member=max_member_size,
            say=app.say,
            since_checkpoint=old_note,
        )
        if save_checkpoint is not None and slot is not None:
            _save_note(slot, save_checkpoint, result.checkpoint_note, archive)
    finally:
        if slot is not None:
            slot.unlink(missing_ok=True)
    if as_json:
        app.emit_json(
            {
                **result.to_dict(),
                "savedCheckpoint": None if save_checkpoint is None else str(save_checkpoint),
            }
        )
        return
    new = sum(1 for item in result.entries if item["new"])
    again = len(result.entries) - new
    app.out(
        f"imported {count(new, 'entry', 'entries')}"
        + (f" ({count(again, 'entry', 'entries')} imported before, kept)" if again else "")
        + f" from ledger {result.origin} (size {result.tree_size})"
    )
    app.out(f"verifier key: {result.verifier_key}")
    if result.since_size is not None:
        app.out(
            f"extends your saved checkpoint (size {result.since_size}): "
            + (
                "the same tree"
                if result.since_size == result.tree_size
                else f"the log only grew, to size {result.tree_size}"
            )
        )
    for item in result.entries:
        before = "" if item["new"] else "  (imported before)"
        image = item["imageId"] or "-"  # a failed build made no image
        app.out(f"  entry {item['index']}  {item['project']}  {image}{before}")
    app.out(f"{count(result.blobs_new, 'new blob')} ({_size(result.bytes_new)})")
    if save_checkpoint is not None:
        app.out(
            f"saved its checkpoint (size {result.tree_size}) to {save_checkpoint}: pass it "
            "with --since-checkpoint to the next import"
        )
    else:
        app.say(
            "escrow: note: to check the next deposit with --since-checkpoint, keep this one's "
            "checkpoint: --save-checkpoint FILE writes it (it is the archive's checkpoint.txt)."
        )
    if verifier_key is None and old_note is None:
        app.say(
            "escrow: note: the archive was checked against its own verifier key; compare it with "
            "the one the vendor published (or pass --verifier-key)."
        )
    elif verifier_key is None:
        app.say(
            "escrow: note: the archive's own verifier key was used; it is the key that signed "
            "your saved checkpoint."
        )


def _checkpoint_slot(path: Path) -> Path:
    """A temporary file beside ``path`` (``--save-checkpoint``), made before the import so that
    a checkpoint file that cannot be written is refused (exit 2) before anything is stored."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise InputError(
            f"Cannot write the checkpoint file {path} ({e.strerror or e}); nothing was imported.",
            hint="Give --save-checkpoint a file in a folder you can write to.",
        ) from e
    os.close(fd)
    return Path(tmp)


def _save_note(slot: Path, path: Path, note: str, archive: Path) -> None:
    """Write ``note`` to ``path`` through ``slot``: the old file stays whole until replaced."""
    try:
        with slot.open("w", encoding="utf-8") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        os.replace(slot, path)
    except OSError as e:
        raise EnvironmentProblem(
            f"The deposit was imported, but its checkpoint could not be saved to {path} "
            f"({e.strerror or e}).",
            hint=f"Extract it from the archive instead: tar -xOf {archive} checkpoint.txt > FILE",
        ) from e


def _figures_text(name: str, f: dict[str, Any]) -> str:
    return (
        f"{name}: {count(f['entries'], 'entry', 'entries')}, {count(f['blobs'], 'blob')}, "
        f"stored {_size(f['bytesStored'])}, "
        f"dedup saved {_size(f['bytesSavedByDedup'])} (of {_size(f['bytesLogical'])})"
    )


@deposit.command("stats")
@_store_option
@json_option
@pass_app
def stats(app: App, deposit_store: str | None, as_json: bool) -> None:
    """Bytes stored, bytes deduplication saved, per project and for the whole store."""
    from escrow.deposit.gc import store_stats

    doc = store_stats(_existing_store(app, deposit_store))
    if as_json:
        app.emit_json(doc)
        return
    app.out(f"deposit store {doc['store']}")
    app.out(_figures_text("all projects", doc))
    app.out(
        f"on disk: {count(doc['blobsOnDisk'], 'blob')}, {_size(doc['bytesOnDisk'])}; "
        f"unreferenced: {count(doc['unreferenced']['blobs'], 'blob')}, "
        f"{_size(doc['unreferenced']['bytes'])}; imported entries: {doc['imports']}"
    )
    if doc["temporary"]["files"]:
        app.out(
            f"temporary: {count(doc['temporary']['files'], 'file')}, "
            f"{_size(doc['temporary']['bytes'])} that interrupted deposits and imports left "
            "(`escrow gc --apply` removes them)"
        )
    for name, f in doc["projects"].items():
        app.out("  " + _figures_text(name, f))


@deposit.command("imports")
@_store_option
@json_option
@pass_app
def imports(app: App, deposit_store: str | None, as_json: bool) -> None:
    """List the entries imported from other ledgers, by ledger and index.

    What `escrow deposit import` stored, and what `escrow rebuild --imported INDEX
    [--origin O]` takes."""
    from escrow.deposit.bundle import imported_entries
    from escrow.text import padded

    docs = sorted(
        imported_entries(_existing_store(app, deposit_store)),
        key=lambda d: (str(d.get("verifierKey")), int(d.get("index", -1))),
    )
    rows = [
        {
            "origin": d.get("origin"),
            "verifierKey": d.get("verifierKey"),
            "index": d.get("index"),
            "project": d.get("project"),
            "imageId": d.get("imageId"),
            "leafHash": d.get("leafHash"),
            "integratedAt": d.get("integratedAt"),
            "importedAt": d.get("importedAt"),
        }
        for d in docs
    ]
    if as_json:
        app.emit_json({"imports": rows})
        return
    if not rows:
        app.say(
            "No entries are imported in this deposit store (`escrow deposit import` adds them)."
        )
        return
    ledger = None
    for r in rows:
        if r["verifierKey"] != ledger:
            ledger = r["verifierKey"]
            key_hash = str(ledger or "").split("+")[1:2] or ["?"]
            app.out(f"ledger {r['origin']} (key {key_hash[0]})")
        image = str(r["imageId"] or "-").removeprefix("sha256:")[:12]
        # padded by terminal columns: a CJK or emoji project name takes two per character
        app.out(
            f"  entry {r['index']:<6} {padded(str(r['project'] or '-'), 24)} {image:<12}  "
            f"imported {r['importedAt']}"
        )


@click.command()
@click.option(
    "--keep-days", type=Integer(min=0), metavar="N", help="Keep entries built in the last N days."
)
@click.option(
    "--keep-last",
    type=Integer(min=0),
    metavar="N",
    help="Keep the N most recent entries per project.",
)
@click.option("--apply", is_flag=True, help="Remove what is reclaimable [default: a dry run].")
@_store_option
@json_option
@pass_app
def gc(
    app: App,
    keep_days: int | None,
    keep_last: int | None,
    apply: bool,
    deposit_store: str | None,
    as_json: bool,
) -> None:
    """Report, and with --apply reclaim, deposit space under a retention policy.

    Per project: bytes stored, bytes deduplication saved, the entries retained
    and dropped, and what would be reclaimed. An entry is retained when either
    rule keeps it (with neither, all are); imported deposits are always
    retained. Nothing a retained entry needs is ever removed.
    """
    from escrow.blobs import BlobStore
    from escrow.deposit.gc import collect_garbage

    doc = collect_garbage(
        _existing_store(app, deposit_store),
        keep_days=keep_days,
        keep_last=keep_last,
        apply=apply,
        log_blobs=BlobStore(app.settings.blobs_dir),
    )
    if as_json:
        app.emit_json(doc)
        return
    for name, f in doc["projects"].items():
        app.out(_figures_text(name, f))
        app.out(
            f"  retained {len(f['retained'])}"
            + (f" ({f['imported']} imported: always kept)" if f["imported"] else "")
            + f", dropped {len(f['dropped'])}"
            + (f" ({', '.join(map(str, f['dropped'][:10]))})" if f["dropped"] else "")
            + f"; reclaimable {_size(f['reclaimableBytes'])}"
        )
    verb = "reclaimed" if apply else "would reclaim"
    app.out(
        f"{verb} {doc['reclaimBlobs']} blobs, {_size(doc['reclaimBytes'])} "
        f"(of {_size(doc['bytesStored'])} stored; {doc['unreferenced']['blobs']} unreferenced)"
    )
    if doc["inProgress"]["blobs"]:
        app.out(
            f"kept {count(doc['inProgress']['blobs'], 'blob')} "
            f"({_size(doc['inProgress']['bytes'])}) that deposits in progress have stored but "
            "not recorded yet"
        )
    if doc["storeTemporary"]["files"]:
        app.out(
            f"{'removed' if apply else 'would remove'} "
            f"{count(doc['storeTemporary']['files'], 'temporary file')} "
            f"({_size(doc['storeTemporary']['bytes'])}) that interrupted deposits and imports "
            f"left in {doc['store']}"
        )
    if doc["logTemporary"]["files"]:
        app.out(
            f"{'removed' if apply else 'would remove'} "
            f"{count(doc['logTemporary']['files'], 'temporary file')} "
            f"({_size(doc['logTemporary']['bytes'])}) that interrupted log writes left in "
            f"{app.settings.blobs_dir}"
        )
    for damage in doc.get("damaged") or []:
        app.say(f"escrow: warning: the store is damaged: {damage}; --apply would remove nothing")
    if not apply:
        app.say("escrow: dry run; pass --apply to remove.")
