"""Self-contained escrow deposits: ``escrow deposit export`` and ``escrow deposit import``.

An exported deposit is a plain tar::

    TOC.json                       table of contents (read it first)
    checkpoint.txt                 the ledger's signed checkpoint (C2SP signed note)
    verifier-key.txt               the note verifier key of the ledger
    keys/<keyid>.pem               public key of every signer
    entries/<index>.envelope.json  each entry's signed DSSE envelope (the exact leaf bytes)
    blobs/sha256/<aa>/<hex>        every deposited blob, named by its SHA-256

With ``export --since-checkpoint`` (the escrow agent's saved checkpoint note),
``TOC.json`` also holds ``consistency``: the RFC 9162 consistency proof from that
checkpoint's size to the deposit's, and ``import --since-checkpoint`` refuses a
deposit whose log does not extend the agent's checkpoint (a fork, a rewrite, an
older view).

``TOC.json`` lists each entry (index, leaf hash, project, image, signer, its
inclusion proof in the checkpoint's tree, its deposit record) and every blob
with its size.  Import verifies all of it — the checkpoint against the
verifier key (pinned with ``--verifier-key``, else the included one, shown to
the user), each envelope's leaf hash and inclusion proof against the
checkpoint, each signature against the included key, every blob's SHA-256 and
size, and that each deposit is complete — in a staging folder inside the
store, before anything is stored.  What the TOC and the deposit records say
beside the signed statement (project, image, integration time, recipe, context,
base images…) must agree with it; any mismatch with what the archive's own TOC
and signed contents promise is tampering (exit 1), and only an archive that is
no deposit at all is an input error (exit 2).  A stored blob the archive also
carries is hashed and replaced when it is corrupt.

An imported entry is not appended to the local ledger (it belongs to another
log).  Its envelope, proof, checkpoint and key are kept in an *import record*
(``refs/imports/<leaf hash>``), and ``escrow rebuild --imported INDEX`` takes the
entry from there, checking its signature again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from escrow.blobs import HEX, locked_files
from escrow.deposit.context import context_index
from escrow.deposit.deposit import (
    Needs,
    build_predicate,
    check_record,
    find_record,
    nothing_deposited,
    record_blobs,
)
from escrow.deposit.safetar import MAX_MEMBER, TruncatedArchive, UnsafeArchive, safe_extract
from escrow.deposit.store import (
    IMPORTS,
    DepositStore,
    FileDepositStore,
    file_sha256,
    place_blob,
    reading,
)
from escrow.documents.types import BUILD_MANIFEST, DEPOSIT_RECORD, IMPORT_RECORD, KEY_EVENT
from escrow.errors import CheckFailed, EnvironmentProblem, InputError, SignatureError
from escrow.times import rfc3339, utc_now

if TYPE_CHECKING:
    from escrow.ledger.models import Checkpoint
    from escrow.ledger.store import Entry, Ledger

FORMAT = "escrow-deposit/v1"
_TOC_LIMIT = 64 << 20


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest[:2]}/{digest}"


# ---------------------------------------------------------------------------
# export


def _key_history(
    ledger: Ledger, keyids: set[str], tree_size: int, envelopes: dict[str, bytes]
) -> list[dict[str, Any]]:
    """The key events (added, revoked, retired) of ``keyids``, with inclusion proofs.

    They let an importer check that each signer was registered, and not revoked
    or retired, when it signed — not only that its signature verifies.
    """
    out: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = list(ledger.entries(predicate_type=KEY_EVENT, after=after, limit=500))
        for e in page:
            if e.index >= tree_size:
                continue
            pred = e.statement().get("predicate") or {}
            if pred.get("keyid") not in keyids:
                continue
            name = f"entries/{e.index}.envelope.json"
            envelopes[name] = e.envelope
            out.append(
                {
                    "index": e.index,
                    "leafHash": e.leaf_hash,
                    "keyid": pred.get("keyid"),
                    "event": pred.get("event"),
                    "envelope": name,
                    "inclusionProof": [h.hex() for h in ledger.inclusion_proof(e.index, tree_size)],
                }
            )
        if len(page) < 500:
            return out
        after = page[-1].index


def _verified_key_history(
    staged_root: Path, toc: dict[str, Any], checkpoint: Any, verifier: str
) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Key events of the archive, each included in the checkpoint and signed by the log key."""
    from escrow.ledger import merkle
    from escrow.ledger.checkpoint import parse_verifier_key
    from escrow.signing.dsse import Envelope

    _require_key_history(toc)
    _, _, log_public = parse_verifier_key(verifier)
    history: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for ev in toc["keyEvents"]:
        index = int(ev["index"])
        data = _read(staged_root, str(ev["envelope"]))
        leaf = merkle.leaf_hash(data)
        proof = [bytes.fromhex(h) for h in ev.get("inclusionProof") or []]
        if leaf.hex() != ev.get("leafHash"):
            raise CheckFailed(
                f"The key event at ledger index {index} does not have its listed leaf hash; "
                "nothing was imported."
            )
        if not merkle.verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root):
            raise CheckFailed(
                f"The key event at ledger index {index} does not verify against the deposit's "
                "checkpoint; nothing was imported."
            )
        try:
            env = Envelope.from_bytes(data)
            env.verify([log_public])  # key events are signed by the log's own key
            statement = env.statement()
        except SignatureError:
            raise
        except InputError as e:
            raise _altered(
                f"The key event at ledger index {index} is not valid ({e.message.rstrip('.')})"
            ) from None
        pred = statement.get("predicate")
        if statement.get("predicateType") != KEY_EVENT or not isinstance(pred, dict):
            raise _altered(f"Ledger entry {index} of the key history is not a key event")
        history.setdefault(str(pred.get("keyid")), []).append((index, pred))
    return history


def _require_key_history(toc: dict[str, Any]) -> None:
    if "keyEvents" not in toc:
        raise InputError(
            "The deposit archive lacks the key history of its signers; nothing was imported.",
            hint="Export it again with this version of escrow.",
        )


def _check_key_valid(
    history: dict[str, list[tuple[int, dict[str, Any]]]], signer: str, item: dict[str, Any]
) -> None:
    """Raise unless ``signer`` was added before entry ``item`` and not revoked/retired by then."""
    from escrow.signing.keys import PublicKey

    index = int(item["index"])
    events = sorted(history.get(signer, []), key=lambda e: e[0])
    added = [p for i, p in events if i < index and p.get("event") == "added"]
    if not added or PublicKey.from_pem(str(added[0].get("publicKey", ""))).keyid != signer:
        raise CheckFailed(
            f"Entry {index} is signed by key {signer[:16]}…, which the deposit's key history "
            "does not show registered before it; nothing was imported."
        )
    when = _parse_time(str(item.get("integratedAt", "")))
    for i, p in events:
        kind = p.get("event")
        if i >= index or kind not in ("revoked", "retired"):
            continue
        effective = _parse_time(str(p.get("effectiveFrom", "")))
        if kind == "revoked" or effective is None or when is None or effective <= when:
            raise CheckFailed(
                f"Entry {index} is signed by key {signer[:16]}…, which was {kind} before it; "
                "nothing was imported."
            )


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def export_deposit(
    ledger: Ledger,
    store: DepositStore,
    indexes: Sequence[int],
    out: Path,
    *,
    since_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Write the deposits of ``indexes`` to the tar ``out`` (atomically); the TOC.

    ``since_checkpoint``: the escrow agent's saved checkpoint note of this ledger; the
    TOC then carries the consistency proof from its size (CheckFailed, nothing written,
    when this ledger does not extend it).

    The store's shared lock is held from the first record read to the last blob
    written: a ``gc --apply`` run meanwhile waits, instead of removing a blob the
    export has listed but not copied yet.
    """
    with reading(store):
        return _export(ledger, store, indexes, out, since_checkpoint=since_checkpoint)


def _export(
    ledger: Ledger,
    store: DepositStore,
    indexes: Sequence[int],
    out: Path,
    *,
    since_checkpoint: str | None,
) -> dict[str, Any]:
    from escrow.ledger.models import rfc3339

    checkpoint = ledger.checkpoint()
    verifier = ledger.verifier_key()
    consistency = None
    if since_checkpoint is not None:
        consistency = _consistency_since(ledger, since_checkpoint, checkpoint, verifier)
    entries: list[dict[str, Any]] = []
    envelopes: dict[str, bytes] = {}
    keys: dict[str, str] = {}
    blobs: set[str] = set()
    owners: dict[str, list[int]] = {}  # blob -> the entries whose deposits need it
    for index in dict.fromkeys(indexes):
        entry = ledger.get(index)
        if entry.index >= checkpoint.size:
            raise InputError(f"Entry {index} is not covered by the latest checkpoint yet.")
        predicate = build_predicate(entry)  # only builds have deposits
        found = find_record(store, entry.leaf_hash)
        if found is None:
            why = nothing_deposited(store, entry)
            raise InputError(
                f"Entry {index} cannot be exported: {why}.",
                hint=f"Run `escrow deposit {index} --context DIR` first.",
            )
        digest, record = found
        report = check_record(store, predicate, record, digest=digest)
        if not report.complete:
            names = ", ".join(f"{m['kind']} {m['name']}" for m in report.missing[:5])
            raise CheckFailed(
                f"The deposit of entry {index} is incomplete ({names}); it cannot be exported.",
                hint=f"`escrow deposit check {index}` lists what is missing.",
            )
        proof = ledger.inclusion_proof(index, checkpoint.size)
        name = f"entries/{index}.envelope.json"
        envelopes[name] = entry.envelope
        keys[entry.signer] = ledger.key(entry.signer).public_pem
        for b in {digest, *record_blobs(store, record)}:
            blobs.add(b)
            owners.setdefault(b, []).append(index)
        entries.append(
            {
                "index": entry.index,
                "leafHash": entry.leaf_hash,
                "project": entry.project,
                "imageId": entry.image_id,
                "signer": entry.signer,
                "integratedAt": rfc3339(entry.integrated_at),
                "envelope": name,
                "treeSize": checkpoint.size,
                "inclusionProof": [h.hex() for h in proof],
                "record": digest,
            }
        )
    key_events = _key_history(ledger, set(keys), checkpoint.size, envelopes)
    toc = {
        "format": FORMAT,
        "createdAt": utc_now(),
        "origin": checkpoint.origin,
        "checkpoint": "checkpoint.txt",
        "verifierKey": verifier,
        "treeSize": checkpoint.size,
        "rootHash": checkpoint.root.hex(),
        "entries": entries,
        "keys": {k: f"keys/{k}.pem" for k in sorted(keys)},
        "keyEvents": key_events,
        "blobs": [{"sha256": b, "size": store.size(b)} for b in sorted(blobs)],
    }
    if consistency is not None:
        toc["consistency"] = consistency
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep_partial_exports(out)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=_PARTIAL, dir=out.parent)
    except OSError as e:
        raise _export_error(out, e) from e
    try:
        # locked while written: a later export of the same file removes only the partial
        # archives of exports that were killed, never one still being written
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:

                def add(name: str, data: bytes) -> None:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o644
                    info.mtime = 0
                    tar.addfile(info, io.BytesIO(data))

                add("TOC.json", json.dumps(toc, indent=2).encode())
                add("checkpoint.txt", checkpoint.note.encode())
                add("verifier-key.txt", (verifier + "\n").encode())
                for keyid, pem in sorted(keys.items()):
                    add(f"keys/{keyid}.pem", pem.encode())
                for name, data in envelopes.items():
                    add(name, data)
                for b in sorted(blobs):
                    info = tarfile.TarInfo(_blob_name(b))
                    info.size = store.size(b)
                    info.mode = 0o444
                    info.mtime = 0
                    with store.open(b) as src:
                        hashing = _HashingReader(src)
                        tar.addfile(info, hashing)
                    if hashing.hexdigest() != b:
                        raise _damaged_blob(store, b, owners[b])
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, out)  # whole, or not there at all
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise _export_error(out, e) from e
        raise
    return toc


class _HashingReader:
    """A blob being copied into the archive, hashed on the way (a damaged store's blob
    must not reach the escrow agent, whose import would refuse the whole archive)."""

    def __init__(self, src: Any) -> None:
        self._src = src
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._src.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _damaged_blob(store: DepositStore, digest: str, indexes: list[int]) -> CheckFailed:
    entries = ", ".join(map(str, indexes))
    return CheckFailed(
        f"The deposited blob {digest} in the deposit store {store.location} does not match "
        f"its SHA-256 (the store is damaged); nothing was written.",
        hint=f"The deposit of entr{'y' if len(indexes) == 1 else 'ies'} {entries} needs it: "
        f"restore it from a backup, or remove it and deposit the entry again (`escrow deposit "
        f"{indexes[0]} --context DIR`); `escrow deposit check {indexes[0]} --verify` lists every "
        "damaged blob of a deposit.",
    )


#: the name suffix of an archive being exported (``.NAME.XXXXXXXX.escrow-partial``)
_PARTIAL = ".escrow-partial"


def _sweep_partial_exports(out: Path) -> None:
    """Remove the partial archives of ``out`` that killed exports left (hundreds of MiB
    each, never renamed into place); one another export is writing is locked: kept."""
    for path, _, _, in_use in locked_files(
        out.parent.glob(f".{glob_escape(out.name)}.*{_PARTIAL}")
    ):
        if not in_use:  # not an export in progress
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _export_error(out: Path, e: OSError) -> InputError | EnvironmentProblem:
    """The deposit archive ``out`` could not be written: one sentence naming it (exit 2
    for a wrong path, else 3: a full disk, a read-only folder)."""
    why = e.strerror or str(e)
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder should be
        blocking = next((p for p in reversed(out.parents) if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            why = f"{blocking} is a file, not a folder"
    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST):
        return InputError(f"Cannot write the deposit archive {out}: {why}; nothing was written.")
    hint = (
        "Free some space and export again."
        if e.errno in (errno.ENOSPC, errno.EDQUOT)
        else "Give -o a file in a folder you can write to."
    )
    return EnvironmentProblem(
        f"Cannot write the deposit archive {out}: {why}; nothing was written.", hint=hint
    )


# ---------------------------------------------------------------------------
# consistency with the escrow agent's saved checkpoint


def _saved_checkpoint(note: str, verifier: str, checkpoint: Checkpoint, nothing: str) -> Checkpoint:
    """The saved checkpoint ``note`` once it is shown to be of the log of ``checkpoint``:
    signed by ``verifier``, for its origin (SignatureError / CheckFailed if not)."""
    from escrow.ledger.checkpoint import verify_checkpoint

    name, key_hash = verifier.split("+")[:2]
    try:
        old = verify_checkpoint(note, verifier)
    except SignatureError:
        raise SignatureError(
            f"The saved checkpoint is not signed by the deposit's log key {name}+{key_hash}; "
            f"{nothing}.",
            hint="It is a checkpoint of another log (or was altered): give the checkpoint you "
            "saved of this vendor's ledger.",
        ) from None
    if old.origin != checkpoint.origin:
        raise CheckFailed(
            f"The saved checkpoint is of the log {old.origin!r}, not {checkpoint.origin!r}; "
            f"{nothing}."
        )
    return old


def _consistency_since(
    ledger: Ledger, note: str, checkpoint: Checkpoint, verifier: str
) -> dict[str, Any] | None:
    """The TOC's ``consistency``: the proof from the saved checkpoint ``note`` to
    ``checkpoint`` (None when their sizes are equal or the old one is empty)."""
    from escrow.ledger import merkle

    nothing = "nothing was exported"
    old = _saved_checkpoint(note, verifier, checkpoint, nothing)
    if old.size > checkpoint.size:
        raise CheckFailed(
            f"The ledger holds {checkpoint.size} entries, fewer than the {old.size} of the "
            f"saved checkpoint: it does not extend it (truncated, or forked); {nothing}."
        )
    proof = ledger.consistency_proof(old.size, checkpoint.size) if old.size else []
    if not merkle.verify_consistency(old.size, checkpoint.size, old.root, checkpoint.root, proof):
        raise CheckFailed(
            f"The ledger does not extend the saved checkpoint: its first {old.size} entries "
            f"have another root than the checkpoint's (forked or rewritten); {nothing}."
        )
    if old.size in (0, checkpoint.size):
        return None  # nothing to prove: the importer compares the checkpoints themselves
    return {
        "oldSize": old.size,
        "oldRootHash": old.root.hex(),
        "proof": [h.hex() for h in proof],
    }


def _checked_consistency(toc: dict[str, Any], checkpoint: Checkpoint) -> None:
    """The TOC's ``consistency`` proof, when there is one, verifies against the deposit's
    checkpoint (else the archive was altered)."""
    from escrow.ledger import merkle

    c = toc.get("consistency")
    if c is None:
        return
    proof = [bytes.fromhex(h) for h in c["proof"]]
    if not 0 < c["oldSize"] < checkpoint.size or not merkle.verify_consistency(
        c["oldSize"], checkpoint.size, bytes.fromhex(c["oldRootHash"]), checkpoint.root, proof
    ):
        raise _altered(
            f"The deposit's consistency proof from size {c['oldSize']} does not verify against "
            "its checkpoint"
        )


def _check_since(toc: dict[str, Any], note: str, checkpoint: Checkpoint, verifier: str) -> int:
    """Refuse (CheckFailed) unless the deposit's log extends the agent's saved checkpoint
    ``note``: the same tree, or a larger one the TOC's consistency proof (checked by
    :func:`_checked_consistency`) shows grew from it.  The saved checkpoint's size."""
    old = _saved_checkpoint(note, verifier, checkpoint, _NOTHING)
    n, m = checkpoint.size, old.size
    forked = (
        f"At size {m} the deposit's log has another root than your saved checkpoint: the log "
        f"was forked or rewritten; {_NOTHING}."
    )
    evidence = (
        "Keep your saved checkpoint and the deposit's checkpoint.txt: both are signed by the "
        "log key, and together they prove the two histories."
    )
    if m > n:
        raise CheckFailed(
            f"The deposit's log (size {n}) is smaller than your saved checkpoint (size {m}): it "
            f"does not extend it (an older view of the log, or a truncated or forked one); "
            f"{_NOTHING}.",
            hint="Ask the vendor for a deposit exported from its current ledger.",
        )
    if m == n or m == 0:
        from escrow.ledger.merkle import EMPTY_ROOT

        if old.root != (checkpoint.root if m == n else EMPTY_ROOT):
            raise CheckFailed(forked, hint=evidence)
        return m
    c = toc.get("consistency")
    if c is None or c["oldSize"] != m:
        proven = f" (it proves it from size {c['oldSize']})" if c is not None else ""
        raise CheckFailed(
            f"The deposit carries no consistency proof from your saved checkpoint's size {m} "
            f"to its own {n}{proven}, so it cannot show the log only grew since; {_NOTHING}.",
            hint="Ask the vendor to export it again with `escrow deposit export INDEX... "
            "--since-checkpoint FILE`, FILE being your saved checkpoint.",
        )
    if bytes.fromhex(c["oldRootHash"]) != old.root:
        raise CheckFailed(forked, hint=evidence)
    return m


# ---------------------------------------------------------------------------
# import


@dataclass
class ImportResult:
    origin: str
    tree_size: int
    verifier_key: str
    entries: list[dict[str, Any]]
    blobs_new: int
    bytes_new: int
    blobs_repaired: int = 0
    since_size: int | None = None  # the saved checkpoint's size, with --since-checkpoint
    checkpoint_note: str = ""  # the deposit's verified checkpoint (the one to save for next time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "treeSize": self.tree_size,
            "verifierKey": self.verifier_key,
            "entries": self.entries,
            "blobsNew": self.blobs_new,
            "bytesNew": self.bytes_new,
            "blobsRepaired": self.blobs_repaired,
            "sinceCheckpoint": (
                None if self.since_size is None else {"size": self.since_size, "extended": True}
            ),
            "checkpoint": self.checkpoint_note,
        }


def _accept(name: str, info: tarfile.TarInfo) -> bool:
    if info.isdir():
        return False
    parts = name.split("/")
    ok = (
        name in ("TOC.json", "checkpoint.txt", "verifier-key.txt")
        or (len(parts) == 2 and parts[0] == "keys" and parts[1].endswith(".pem"))
        or (len(parts) == 2 and parts[0] == "entries" and parts[1].endswith(".envelope.json"))
        or (
            len(parts) == 4
            and parts[:2] == ["blobs", "sha256"]
            and HEX.match(parts[3]) is not None
            and parts[2] == parts[3][:2]
        )
    )
    if not ok:
        raise UnsafeArchive(
            f"The deposit archive holds the unexpected member {name!r}; refused.",
            hint="Only archives written by `escrow deposit export` can be imported.",
        )
    if info.islnk() or info.issym():
        raise UnsafeArchive(f"The deposit archive holds the link {name!r}; refused.")
    return True


_NOTHING = "nothing was imported"
_VERIFIER_SHAPE = "<name>+<8 hex>+<base64>"


def _altered(message: str) -> CheckFailed:
    """A deposit archive that does not hold what its own TOC and signed contents promise."""
    return CheckFailed(
        f"{message}: the archive was altered or corrupted; {_NOTHING}.",
        hint="Ask for the deposit again, or export it again from the original ledger.",
    )


def _read(root: Path, name: str, limit: int = _TOC_LIMIT) -> bytes:
    clean = Path(name)
    if clean.is_absolute() or ".." in clean.parts:
        raise UnsafeArchive(f"The table of contents names {name!r}, outside the deposit.")
    path = root / clean
    if not path.is_file() or path.is_symlink():
        raise _altered(f"The deposit archive lacks {name}, which its TOC.json lists")
    if path.stat().st_size > limit:
        raise UnsafeArchive(f"The member {name} of the deposit archive is too large.")
    return path.read_bytes()


def _begins_as_deposit(archive: Path) -> bool:
    """Whether ``archive`` begins with the TOC.json of an escrow deposit (then a truncated
    archive is a deposit cut short, not something else)."""
    try:
        with open(archive, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            first = tar.next()
            if first is None or first.name != "TOC.json" or not first.isreg():
                return False
            if first.size > _TOC_LIMIT:
                return False
            data = tar.extractfile(first)
            try:
                text = data.read() if data is not None else b""
            except tarfile.ReadError:
                return True  # cut short within its table of contents
            toc = json.loads(text)
    except (OSError, tarfile.TarError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(toc, dict) and toc.get("format") == FORMAT


def _malformed(what: str) -> CheckFailed:
    return _altered(f"The deposit archive's table of contents (TOC.json) is malformed ({what})")


def _hex64(value: Any) -> bool:
    return isinstance(value, str) and HEX.match(value) is not None


def _check_toc_shape(toc: dict[str, Any]) -> None:
    """Every field import reads has the type export writes; else :func:`_malformed`."""
    if not isinstance(toc.get("verifierKey"), str):
        raise _malformed("no verifierKey")
    if not isinstance(toc.get("checkpoint", "checkpoint.txt"), str):
        raise _malformed("checkpoint is not a member name")
    keys = toc.get("keys")
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
    ):
        raise _malformed("keys is not a map of key IDs to member names")
    blobs = toc.get("blobs")
    if not isinstance(blobs, list):
        raise _malformed("blobs is not a list")
    for b in blobs:
        if (
            not isinstance(b, dict)
            or not _hex64(b.get("sha256"))
            or type(b.get("size")) is not int
            or b["size"] < 0
        ):
            raise _malformed(f"the blob entry {str(b)[:60]!r}")

    def proof_ok(item: dict[str, Any]) -> bool:
        proof = item.get("inclusionProof")
        return isinstance(proof, list) and all(_hex64(h) for h in proof)

    entries = toc.get("entries")
    if not isinstance(entries, list):
        raise _malformed("entries is not a list")
    for n, item in enumerate(entries, 1):
        if (
            not isinstance(item, dict)
            or type(item.get("index")) is not int
            or item["index"] < 0
            or type(item.get("treeSize")) is not int
            or not _hex64(item.get("leafHash"))
            or not _hex64(item.get("record"))
            or not isinstance(item.get("envelope"), str)
            or not isinstance(item.get("signer"), str)
            or not proof_ok(item)
        ):
            raise _malformed(f"its entry {n}")
    c = toc.get("consistency")
    if c is not None and (
        not isinstance(c, dict)
        or type(c.get("oldSize")) is not int
        or not _hex64(c.get("oldRootHash"))
        or not proof_ok({"inclusionProof": c.get("proof")})
    ):
        raise _malformed("its consistency proof")
    events = toc.get("keyEvents")
    if events is not None and not isinstance(events, list):
        raise _malformed("keyEvents is not a list")
    for n, ev in enumerate(events or [], 1):
        if (
            not isinstance(ev, dict)
            or type(ev.get("index")) is not int
            or ev["index"] < 0
            or not _hex64(ev.get("leafHash"))
            or not isinstance(ev.get("envelope"), str)
            or not proof_ok(ev)
        ):
            raise _malformed(f"its key event {n}")


def _unlisted(extra: list[str]) -> NoReturn:
    more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
    raise _altered(f"The deposit archive holds {extra[0]}{more}, which its TOC.json does not list")


def _members(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def _pinned_key(verifier_key: str | None) -> str | None:
    """The ``--verifier-key`` given, once it parses (else a usage error, exit 2)."""
    from escrow.ledger.checkpoint import parse_verifier_key

    if verifier_key is None:
        return None
    key = verifier_key.strip()
    try:
        parse_verifier_key(key)
    except InputError as e:
        shown = key if len(key) <= 40 else key[:37] + "…"
        raise InputError(
            f"The --verifier-key {shown!r} is not a note verifier key ({_VERIFIER_SHAPE}).",
            hint="Pass the ledger's verifier key as its vendor published it "
            "(`escrow ledger verifier-key` prints it), or @FILE to read it from a file.",
        ) from e
    return key


def _signed_time(predicate: dict[str, Any]) -> datetime | None:
    build = predicate.get("build")
    finished = build.get("finishedOn") if isinstance(build, dict) else None
    return _parse_time(finished) if isinstance(finished, str) else None


def _verified_time(index: int, item: dict[str, Any], predicate: dict[str, Any]) -> datetime:
    """The entry's integration time from the TOC, checked against its signed build time."""
    text = item.get("integratedAt")
    when = _parse_time(text) if isinstance(text, str) else None
    if when is None:
        raise _altered(
            f"TOC.json gives entry {index} the integratedAt {text!r}, which is not a time"
        )
    finished = _signed_time(predicate)
    if finished is not None and when < finished:
        raise _altered(
            f"TOC.json gives entry {index} the integratedAt {text}, before the build its signed "
            f"statement records finished ({rfc3339(finished)})"
        )
    return when


def _index_fields(statement: dict[str, Any]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """``(project, image_id, diff_ids)`` of a signed build manifest, as the ledger indexes it."""
    from escrow.ledger.store import index_fields

    return index_fields(BUILD_MANIFEST, statement)


def _check_signed_fields(index: int, item: dict[str, Any], statement: dict[str, Any]) -> None:
    """Project and image of the TOC entry are the ones its signed statement states."""
    project, image_id, _ = _index_fields(statement)
    for field, signed in (("project", project), ("imageId", image_id)):
        if item.get(field) != signed:
            raise _altered(
                f"TOC.json gives entry {index} the {field} {item.get(field)!r}, but its signed "
                f"statement says {signed!r}"
            )


def _deposit_record(staged: FileDepositStore, index: int, digest: str) -> dict[str, Any]:
    if not staged.has(digest):
        raise _altered(f"The deposit archive lacks the deposit record {digest} of entry {index}")
    try:
        record = json.loads(staged.get(digest))
    except (ValueError, UnicodeDecodeError, RecursionError):
        record = None
    if not isinstance(record, dict) or record.get("type") != DEPOSIT_RECORD:
        raise _altered(
            f"The deposit record {digest[:16]}… of entry {index} is not a deposit record"
        )
    return record


def _check_record_fields(
    staged: FileDepositStore,
    index: int,
    leaf: str,
    when: datetime,
    record: dict[str, Any],
    predicate: dict[str, Any],
) -> None:
    """Every field of the deposit record that the signed predicate (or the verified ledger
    entry) also states agrees with it; else the record was altered."""

    def differs(field: str, got: Any, want: Any) -> CheckFailed:
        return _altered(
            f"The deposit record of entry {index} gives {field} {got!r}, but the signed build "
            f"manifest says {want!r}"
        )

    needs = Needs.of(predicate)
    project, _, _ = _index_fields({"predicate": predicate})
    entry = record.get("entry")
    if not isinstance(entry, dict):
        raise _altered(f"The deposit record of entry {index} does not name its entry")
    if entry.get("leafHash") != leaf:
        raise _altered(f"The deposit record of entry {index} is for another entry")
    build = predicate.get("build")
    if not isinstance(build, dict):
        build = {}
    for field, want in (
        ("index", index),
        ("project", project),
        ("imageId", needs.image_id),
        ("buildId", build.get("id")),
    ):
        if entry.get(field) != want:
            raise differs(f"the entry {field}", entry.get(field), want)
    got_time = entry.get("integratedAt")
    if not isinstance(got_time, str) or _parse_time(got_time) != when:
        raise _altered(
            f"The deposit record of entry {index} gives the entry integratedAt {got_time!r}, "
            f"but TOC.json gives {rfc3339(when)}"
        )
    recipe = record.get("recipe")
    if recipe:
        want_recipe = needs.recipe or {}
        for key in ("path", "sha256"):
            if not isinstance(recipe, dict) or recipe.get(key) != want_recipe.get(key):
                got = recipe.get(key) if isinstance(recipe, dict) else recipe
                raise differs(f"the recipe {key}", got, want_recipe.get(key))
    ctx = record.get("context")
    if ctx:
        want_ctx = needs.context or {}
        if not isinstance(ctx, dict):
            raise differs("the context", ctx, want_ctx.get("treeDigest"))
        for key in ("treeDigest", "archiveDigest", "archiveSize"):
            if key in want_ctx and ctx.get(key) != want_ctx[key]:
                raise differs(f"the context {key}", ctx.get(key), want_ctx[key])
        if _hex64(ctx.get("index")) and staged.has(str(ctx["index"])):
            try:
                ctx_index = context_index(staged, str(ctx["index"]))
            except (InputError, ValueError, UnicodeDecodeError, RecursionError):
                raise _altered(
                    f"The context index {str(ctx['index'])[:16]}… of entry {index} is not a "
                    "context index"
                ) from None
            if ctx_index.get("archiveDigest") != ctx.get("archiveDigest"):
                raise _altered(
                    f"The context index of entry {index} is for another context archive than "
                    "its deposit record names"
                )
    for base in record.get("baseImages") or []:
        ref = base.get("reference") if isinstance(base, dict) else base
        if not isinstance(base, dict) or base not in needs.bases:
            raise differs(
                "the base image", ref, [b["reference"] for b in needs.bases] or "no base image"
            )
    image = record.get("image")
    if image and (not isinstance(image, dict) or image.get("imageId") != needs.image_id):
        got = image.get("imageId") if isinstance(image, dict) else image
        raise differs("the image", got, needs.image_id)
    for log in record.get("logs") or []:
        if log not in needs.logs:
            raise differs("the step log", log, "none such")
    if record.get("filesBlob") and record["filesBlob"] != needs.files_blob:
        raise differs("the context file list", record["filesBlob"], needs.files_blob)


def _missing_names(
    staged: FileDepositStore, predicate: dict[str, Any], record: dict[str, Any], missing: list[Any]
) -> str:
    """What a deposit lacks, context files named by their path in the context."""
    context = (Needs.of(predicate).context or {}) if predicate else {}
    paths: dict[str, str] = {}
    files = context.get("files")
    blob = (context.get("filesBlob") or {}).get("sha256")
    if files is None and blob and staged.has(str(blob)):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            files = json.loads(staged.get(str(blob)))
    for f in files or []:
        if isinstance(f, dict) and f.get("sha256"):
            paths.setdefault(str(f["sha256"]), str(f.get("path")))
    skeleton = None
    ctx = record.get("context") or {}
    if isinstance(ctx, dict) and staged.has(str(ctx.get("index"))):
        with contextlib.suppress(InputError, ValueError, UnicodeDecodeError, KeyError):
            skeleton = str(context_index(staged, str(ctx["index"]))["skeleton"])
    names = []
    for m in missing[:5]:
        digest = str(m.get("digest"))
        if m.get("kind") == "context" and m.get("name") == "context file":
            if digest in paths:
                names.append(f"context file {paths[digest]}")
            elif digest == skeleton:
                names.append(f"context skeleton {digest[:16]}…")
            else:
                names.append(f"context file with SHA-256 {digest[:16]}…")
        else:
            names.append(f"{m['kind']} {m['name']}")
    return ", ".join(names)


def _corrupt(store: FileDepositStore, digest: str, say: Callable[[str], None]) -> bool:
    """Whether the stored blob ``digest`` does not hash to its name (then say so)."""
    path = store.path(digest)
    if not path.is_file():
        return False
    try:
        if file_sha256(path) == digest:
            return False
    except OSError:
        pass
    say(
        f"escrow: the stored blob {digest} did not match its SHA-256; "
        "replaced it with the archive's copy."
    )
    return True


def _say_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def import_deposit(
    store: DepositStore,
    archive: Path,
    *,
    verifier_key: str | None = None,
    max_member: int = MAX_MEMBER,
    say: Callable[[str], None] | None = None,
    since_checkpoint: str | None = None,
) -> ImportResult:
    """Verify the exported deposit ``archive`` completely, then store it.

    ``since_checkpoint``: the checkpoint note the importer saved of this log earlier; the
    deposit is refused (CheckFailed, nothing stored) unless its log extends it.

    Anything that does not match what the archive's TOC and signed contents promise is
    :class:`CheckFailed` (exit 1); only an archive that is no deposit at all, or a
    malformed ``verifier_key``, is an :class:`InputError` (exit 2).  ``say`` (stderr by
    default) is told of stored blobs that were corrupt and replaced from the archive.
    """
    from escrow.ledger import merkle
    from escrow.ledger.checkpoint import parse_verifier_key, verify_checkpoint
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

    say = say or _say_stderr
    verifier_key = _pinned_key(verifier_key)
    try:
        src = open(archive, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise InputError(f"Cannot read the deposit archive {archive}: {e.strerror}.") from e
    work: Path | None = None
    try:
        with (
            _storing(store, archive),
            store.lock(exclusive=False),
            contextlib.ExitStack() as stack,
        ):
            # made under the shared lock: `gc --apply` (exclusive) never sweeps it away
            if isinstance(store, FileDepositStore):
                (store.root / "tmp").mkdir(parents=True, exist_ok=True)
                work = Path(tempfile.mkdtemp(prefix="import-", dir=store.root / "tmp"))
            else:  # a registry: staged in a local temporary folder, uploaded once verified
                work = Path(tempfile.mkdtemp(prefix="escrow-import-"))
            staged_root = work / "deposit"
            with src:
                try:
                    safe_extract(
                        src,
                        staged_root,
                        what=f"The deposit archive {archive}",
                        max_member=max_member,
                        accept=_accept,
                    )
                except TruncatedArchive as e:
                    if not _begins_as_deposit(archive):
                        raise
                    # a deposit cut short (a copy interrupted): what its TOC promises is missing
                    raise _altered(e.message.rstrip(".")) from None
            staged = FileDepositStore(staged_root)
            members = _members(staged_root)
            if "TOC.json" not in members:
                if not members:
                    raise InputError(
                        f"The archive {archive} is not an escrow deposit ({FORMAT}): it holds "
                        "nothing.",
                        hint="Import an archive written by `escrow deposit export`.",
                    )
                raise _altered("The deposit archive has no TOC.json (its table of contents)")
            try:
                toc = json.loads(_read(staged_root, "TOC.json"))
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise _altered("The deposit archive's TOC.json is not JSON") from None
            if not isinstance(toc, dict) or toc.get("format") != FORMAT:
                raise InputError(
                    f"The archive {archive} is not an escrow deposit ({FORMAT}).",
                )
            _check_toc_shape(toc)
            _require_key_history(toc)  # an export by an older escrow: named before its members
            if not toc["entries"]:
                raise _altered("The deposit archive's TOC.json lists no entries")
            # -- the checkpoint
            included = str(toc["verifierKey"]).strip()
            if verifier_key is not None and verifier_key != included:
                from escrow.text import printable

                raise SignatureError(
                    "The deposit's ledger verifier key is not the one you pinned "
                    "(--verifier-key); refused.",
                    hint=f"The deposit gives the key {printable(included[:200])}, not "
                    f"{printable(verifier_key[:200])}: ask the vendor which key its ledger has, "
                    "and import only under the key it published.",
                )
            if verifier_key is None:
                try:
                    parse_verifier_key(included)
                except InputError:
                    raise _altered(
                        "The verifier key in the deposit's TOC.json is not a note verifier key"
                    ) from None
            key_file = _read(staged_root, "verifier-key.txt").decode("utf-8", "replace").strip()
            if key_file != included:
                raise _altered(
                    "The deposit's verifier-key.txt is not the verifier key its TOC.json gives"
                )
            verifier = verifier_key or included
            checkpoint_name = str(toc.get("checkpoint", "checkpoint.txt"))
            note = _read(staged_root, checkpoint_name).decode("utf-8", "replace")
            try:
                checkpoint = verify_checkpoint(note, verifier)
            except SignatureError:
                raise
            except InputError as e:
                why = e.message.rstrip(".")
                raise _altered(
                    f"The deposit's {checkpoint_name} is not a signed checkpoint ({why})"
                ) from None
            _checked_consistency(toc, checkpoint)
            since_size = (
                None
                if since_checkpoint is None
                else _check_since(toc, since_checkpoint, checkpoint, verifier)
            )
            # -- members the TOC does not list
            named = {"TOC.json", "verifier-key.txt", checkpoint_name}
            named.update(str(v) for v in toc["keys"].values())
            named.update(str(e["envelope"]) for e in toc["entries"])
            named.update(str(e["envelope"]) for e in toc.get("keyEvents") or [])
            listed: dict[str, int] = {str(b["sha256"]): int(b["size"]) for b in toc["blobs"]}
            named.update(_blob_name(b) for b in listed)
            # (blobs first; an unlisted envelope or key once the listed ones are checked,
            # which names better what was taken out of the TOC)
            extra = sorted(members - named, key=lambda n: (not n.startswith("blobs/"), n))
            if extra and extra[0].startswith("blobs/"):
                _unlisted(extra)
            # -- every blob
            for digest, size in listed.items():
                if _blob_name(digest) not in members:
                    raise _altered(f"The deposit archive lacks the blob {digest}")
                path = staged.path(digest)
                if path.stat().st_size != size:
                    raise _altered(
                        f"The deposited blob {digest} does not have its listed size ({size} bytes)"
                    )
                if file_sha256(path) != digest:
                    raise _altered(f"The deposited blob {digest} does not match its SHA-256")
            # -- the signers' key history, then every entry
            key_history = _verified_key_history(staged_root, toc, checkpoint, verifier)
            checked: list[tuple[dict[str, Any], bytes, str]] = []
            for item in toc["entries"]:
                index = int(item["index"])
                envelope = _read(staged_root, str(item["envelope"]))
                leaf = merkle.leaf_hash(envelope)
                if leaf.hex() != item["leafHash"]:
                    raise _altered(
                        f"The envelope of entry {index} does not have its listed leaf hash"
                    )
                proof = [bytes.fromhex(h) for h in item["inclusionProof"]]
                if item["treeSize"] != checkpoint.size or not merkle.verify_inclusion(
                    leaf, index, checkpoint.size, proof, checkpoint.root
                ):
                    raise CheckFailed(
                        f"The inclusion proof of entry {index} does not verify against the "
                        "deposit's checkpoint; nothing was imported."
                    )
                signer = str(item["signer"])
                keyfile = toc["keys"].get(signer)
                if keyfile is None:
                    raise _altered(f"The deposit's TOC.json lists no public key for {signer}")
                pem = _read(staged_root, str(keyfile)).decode("utf-8", "replace")
                try:
                    public = PublicKey.from_pem(pem)
                except InputError:
                    raise _altered(
                        f"The deposit's key file {keyfile} is not a public key"
                    ) from None
                if public.keyid != signer:
                    raise SignatureError(f"The key file {keyfile} is not the key {signer}.")
                try:
                    env = Envelope.from_bytes(envelope)
                    env.verify([public])
                    statement = env.statement()
                except SignatureError:
                    raise
                except InputError as e:
                    raise _altered(
                        f"The envelope of entry {index} is not valid ({e.message.rstrip('.')})"
                    ) from None
                if statement.get("predicateType") != BUILD_MANIFEST or not isinstance(
                    statement.get("predicate"), dict
                ):
                    raise _altered(f"Entry {index} of the deposit is not a build manifest")
                predicate: dict[str, Any] = statement["predicate"]
                _check_signed_fields(index, item, statement)
                when = _verified_time(index, item, predicate)
                _check_key_valid(key_history, signer, {**item, "integratedAt": rfc3339(when)})
                record_digest = str(item["record"])
                record = _deposit_record(staged, index, record_digest)
                _check_record_fields(staged, index, str(item["leafHash"]), when, record, predicate)
                try:
                    report = check_record(staged, predicate, record, digest=record_digest)
                except (InputError, ValueError, KeyError, TypeError, RecursionError):
                    raise _altered(f"The deposit record of entry {index} is malformed") from None
                if not report.complete:
                    names = _missing_names(staged, predicate, record, report.missing)
                    raise _altered(f"The deposit of entry {index} is incomplete ({names})")
                project, image_id, _ = _index_fields(statement)
                checked.append(
                    (
                        {
                            **item,
                            "project": project,
                            "imageId": image_id,
                            "integratedAt": rfc3339(when),
                        },
                        envelope,
                        pem,
                    )
                )
            if extra:
                _unlisted(extra)
            # -- everything verified: store it
            blobs_new = bytes_new = repaired = 0
            for digest, size in listed.items():
                if not isinstance(store, FileDepositStore):
                    if store.has(digest):
                        continue  # a registry checks every read against its digest
                    w = store.writer()
                    with staged.open(digest) as f:
                        while chunk := f.read(1 << 20):
                            w.write(chunk)
                    w.commit(digest)
                    blobs_new += 1
                    bytes_new += size
                    continue
                final = store.path(digest)
                if final.is_file():
                    if not _corrupt(store, digest, say):
                        continue
                    repaired += 1
                else:
                    blobs_new += 1
                    bytes_new += size
                place_blob(staged.path(digest), final)  # flushed to disk, then renamed
            entries = []
            stack.enter_context(_recording_imports(store))  # one import at a time decides
            for item, envelope, pem in checked:
                env_digest = hashlib.sha256(envelope).hexdigest()
                if isinstance(store, FileDepositStore) and _corrupt(store, env_digest, say):
                    store.path(env_digest).unlink()
                    repaired += 1
                env_digest = store.put(envelope)
                kept = _kept_import(store, str(item["leafHash"]), checkpoint, verifier, env_digest)
                if kept is not None:  # imported before, from this tree or a larger one
                    entries.append(
                        {
                            "index": kept["index"],
                            "leafHash": kept["leafHash"],
                            "project": kept["project"],
                            "imageId": kept["imageId"],
                            "new": False,
                        }
                    )
                    continue
                doc = {
                    "type": IMPORT_RECORD,
                    "origin": checkpoint.origin,
                    "index": int(item["index"]),
                    "leafHash": item["leafHash"],
                    "project": item["project"],
                    "imageId": item["imageId"],
                    "signer": item["signer"],
                    "integratedAt": item["integratedAt"],
                    "envelope": env_digest,
                    "treeSize": checkpoint.size,
                    "inclusionProof": item["inclusionProof"],
                    "checkpoint": checkpoint.note,
                    "verifierKey": verifier,
                    "publicKey": pem,
                    "record": item["record"],
                    "importedAt": utc_now(),
                }
                digest = store.put(json.dumps(doc, sort_keys=True).encode())
                store.set_ref(IMPORTS, str(item["leafHash"]), digest)
                entries.append(
                    {
                        "index": doc["index"],
                        "leafHash": doc["leafHash"],
                        "project": doc["project"],
                        "imageId": doc["imageId"],
                        "new": True,
                    }
                )
    finally:
        src.close()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return ImportResult(
        checkpoint.origin,
        checkpoint.size,
        verifier,
        entries,
        blobs_new,
        bytes_new,
        repaired,
        since_size,
        checkpoint.note,
    )


@contextlib.contextmanager
def _storing(store: DepositStore, archive: Path) -> Iterator[None]:
    """A full disk, or a store that cannot be written, while an archive is imported: one
    sentence naming the archive and the store (an OSError of a write names no file)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise EnvironmentProblem(
            f"Cannot import {archive} into the deposit store {store.location}: {e.strerror or e}.",
            hint="Free some space (or make the store writable) and import again: the blobs "
            "stored so far are reused, and `escrow gc --apply` removes them otherwise.",
        ) from e


@contextlib.contextmanager
def _recording_imports(store: DepositStore) -> Iterator[None]:
    """Hold the import references of a folder store locked (``flock`` on their folder)
    while an import decides, entry by entry, whether its record is kept or written: two
    imports of one archive at once each found no record, each wrote its own (another
    ``importedAt``), and each said the entries were new; the record the other replaced
    stayed in the store, referenced by nothing."""
    if not isinstance(store, FileDepositStore):
        yield
        return
    folder = store.root / "refs" / IMPORTS
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _kept_import(
    store: DepositStore, leaf_hash: str, checkpoint: Any, verifier: str, envelope: str
) -> dict[str, Any] | None:
    """The entry's earlier import record when it stays as it is: the same entry of the
    same ledger (verifier key), proven in a tree at least as large.  An import from a
    larger tree replaces it (a fresher proof); importing the same archive again changes
    nothing."""
    digest = store.get_ref(IMPORTS, leaf_hash)
    if digest is None or not store.has(digest):
        return None
    try:
        doc = json.loads(store.get(digest))
    except (ValueError, InputError):
        return None  # unreadable: written again
    if (
        isinstance(doc, dict)
        and doc.get("verifierKey") == verifier
        and doc.get("origin") == checkpoint.origin
        and doc.get("envelope") == envelope
        and isinstance(doc.get("treeSize"), int)
        and doc["treeSize"] >= checkpoint.size
    ):
        return doc
    return None


# ---------------------------------------------------------------------------
# imported entries, for rebuild


def imported_entries(store: DepositStore) -> list[dict[str, Any]]:
    out = []
    for _leaf, digest in store.refs(IMPORTS):
        if store.has(digest):
            out.append(json.loads(store.get(digest)))
    return out


def _spans(indexes: list[int]) -> str:
    """Sorted indexes as runs: ``1-8, 10, 13``."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _ledger_names(doc: dict[str, Any]) -> set[str]:
    """What names the ledger an import came from: its origin, its verifier key, and the key
    hash in it (ledgers made by `escrow init` all have the origin ``escrow.local/ledger``)."""
    key = str(doc.get("verifierKey") or "")
    parts = key.split("+", 2)  # <name>+<8 hex>+<base64>, which may hold '+' itself
    return {str(doc.get("origin") or ""), key, parts[1] if len(parts) == 3 else ""} - {""}


def imported_entry(
    store: DepositStore, index: int, origin: str | None = None
) -> tuple[Entry, dict[str, Any]]:
    """The imported entry ``index`` (of the ledger ``origin``), signature checked again."""
    from escrow.ledger import merkle
    from escrow.ledger.checkpoint import verify_checkpoint
    from escrow.ledger.models import Entry
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

    docs = [
        d for d in imported_entries(store) if origin is None or origin.strip() in _ledger_names(d)
    ]
    matches = [d for d in docs if int(d["index"]) == index]
    if not matches:
        held = sorted({int(d["index"]) for d in docs})
        raise InputError(
            f"No imported deposit holds entry {index}"
            + (f" of the ledger {origin}." if origin else "."),
            hint=(
                f"The imported deposits in {store.location} hold entries {_spans(held)}: "
                "give the index in the vendor's ledger, as `escrow deposit import` printed it."
                if held
                else f"No deposit of {'that ledger' if origin else 'another ledger'} was "
                f"imported into {store.location}: `escrow deposit import ARCHIVE` first, or "
                "give the --deposit-store it was imported into."
            ),
        )
    if len(matches) > 1:
        keys = sorted({str(d["verifierKey"]) for d in matches})
        raise InputError(
            f"Imported deposits from {len(keys)} ledgers hold an entry {index}.",
            hint="Name the ledger with --origin: its origin when the origins differ, else its "
            "verifier key or the 8 hex digits in it (" + "; ".join(keys) + ").",
        )
    doc = matches[0]
    try:
        envelope = store.get(str(doc["envelope"]))
    except InputError as e:  # missing or corrupt in the store: a failed check, not bad input
        raise CheckFailed(
            f"The imported entry {index}'s envelope is damaged in the deposit store: "
            f"{e.message[:1].lower()}{e.message[1:]}",
            hint="Import the deposit again: it replaces a corrupt or missing blob.",
        ) from None
    checkpoint = verify_checkpoint(str(doc["checkpoint"]), str(doc["verifierKey"]))
    leaf = merkle.leaf_hash(envelope)
    proof = [bytes.fromhex(h) for h in doc["inclusionProof"]]
    if leaf.hex() != doc["leafHash"] or not merkle.verify_inclusion(
        leaf, index, checkpoint.size, proof, checkpoint.root
    ):
        raise CheckFailed(f"The imported entry {index} no longer matches its inclusion proof.")
    env = Envelope.from_bytes(envelope)
    env.verify([PublicKey.from_pem(str(doc["publicKey"]))])
    statement = env.statement()
    predicate = statement["predicate"]
    integrated = doc.get("integratedAt")
    at = (
        datetime.fromisoformat(str(integrated).replace("Z", "+00:00"))
        if integrated
        else datetime.now(UTC)
    )
    entry = Entry(
        index=index,
        leaf_hash=str(doc["leafHash"]),
        envelope=envelope,
        predicate_type=str(statement["predicateType"]),
        project=doc.get("project"),
        image_id=doc.get("imageId"),
        signer=str(doc["signer"]),
        integrated_at=at,
    )
    return entry, predicate
