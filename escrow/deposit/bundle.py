"""Self-contained escrow deposits: ``escrow deposit export`` and ``escrow deposit import``.

An exported deposit is a plain tar::

    TOC.json                       table of contents (read it first)
    checkpoint.txt                 the ledger's signed checkpoint (C2SP signed note)
    verifier-key.txt               the note verifier key of the ledger
    keys/<keyid>.pem               public key of every signer
    entries/<index>.envelope.json  each entry's signed DSSE envelope (the exact leaf bytes)
    blobs/sha256/<aa>/<hex>        every deposited blob, named by its SHA-256

``TOC.json`` lists each entry (index, leaf hash, project, image, signer, its
inclusion proof in the checkpoint's tree, its deposit record) and every blob
with its size.  Import verifies all of it — the checkpoint against the
verifier key (pinned with ``--verifier-key``, else the included one, shown to
the user), each envelope's leaf hash and inclusion proof against the
checkpoint, each signature against the included key, every blob's SHA-256 and
size, and that each deposit is complete — in a staging folder inside the
store, before anything is stored.

An imported entry is not appended to the local ledger (it belongs to another
log).  Its envelope, proof, checkpoint and key are kept in an *import record*
(``refs/imports/<leaf hash>``), and ``escrow rebuild --imported INDEX`` takes the
entry from there, checking its signature again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.blobs import HEX
from escrow.deposit.deposit import (
    build_predicate,
    check_record,
    find_record,
    record_blobs,
)
from escrow.deposit.safetar import MAX_MEMBER, UnsafeArchive, safe_extract
from escrow.deposit.store import IMPORTS, DepositStore, FileDepositStore
from escrow.documents.types import BUILD_MANIFEST, KEY_EVENT
from escrow.errors import CheckFailed, InputError, SignatureError
from escrow.times import utc_now

if TYPE_CHECKING:
    from escrow.ledger.store import Entry, Ledger

FORMAT = "escrow-deposit/v1"
IMPORT_RECORD = "https://escrow.dev/deposit-import/v1"
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

    if "keyEvents" not in toc:
        raise InputError(
            "The deposit archive lacks the key history of its signers; nothing was imported.",
            hint="Export it again with this version of escrow.",
        )
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
        env = Envelope.from_bytes(data)
        env.verify([log_public])  # key events are signed by the log's own key
        statement = env.statement()
        if statement.get("predicateType") != KEY_EVENT:
            raise InputError(f"Ledger entry {index} of the key history is not a key event.")
        pred = statement.get("predicate") or {}
        history.setdefault(str(pred.get("keyid")), []).append((index, pred))
    return history


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
    ledger: Ledger, store: DepositStore, indexes: Sequence[int], out: Path
) -> dict[str, Any]:
    """Write the deposits of ``indexes`` to the tar ``out`` (atomically); the TOC."""
    from escrow.ledger.models import rfc3339

    checkpoint = ledger.checkpoint()
    verifier = ledger.verifier_key()
    entries: list[dict[str, Any]] = []
    envelopes: dict[str, bytes] = {}
    keys: dict[str, str] = {}
    blobs: set[str] = set()
    for index in dict.fromkeys(indexes):
        entry = ledger.get(index)
        if entry.index >= checkpoint.size:
            raise InputError(f"Entry {index} is not covered by the latest checkpoint yet.")
        predicate = build_predicate(entry)  # only builds have deposits
        found = find_record(store, entry.leaf_hash)
        if found is None:
            raise InputError(
                f"Nothing is deposited for entry {index}.",
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
        blobs.add(digest)
        blobs.update(record_blobs(store, record))
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".escrow-export-", dir=out.parent)
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):

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
                    tar.addfile(info, src)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return toc


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "treeSize": self.tree_size,
            "verifierKey": self.verifier_key,
            "entries": self.entries,
            "blobsNew": self.blobs_new,
            "bytesNew": self.bytes_new,
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


def _read(root: Path, name: str, limit: int = _TOC_LIMIT) -> bytes:
    clean = Path(name)
    if clean.is_absolute() or ".." in clean.parts:
        raise UnsafeArchive(f"The table of contents names {name!r}, outside the deposit.")
    path = root / clean
    if not path.is_file() or path.is_symlink():
        raise InputError(f"The deposit archive lacks {name}, which its table of contents names.")
    if path.stat().st_size > limit:
        raise UnsafeArchive(f"The member {name} of the deposit archive is too large.")
    return path.read_bytes()


def import_deposit(
    store: DepositStore,
    archive: Path,
    *,
    verifier_key: str | None = None,
    max_member: int = MAX_MEMBER,
) -> ImportResult:
    """Verify the exported deposit ``archive`` completely, then store it."""
    from escrow.ledger import merkle
    from escrow.ledger.checkpoint import verify_checkpoint
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

    try:
        src = open(archive, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise InputError(f"Cannot read the deposit archive {archive}: {e.strerror}.") from e
    if isinstance(store, FileDepositStore):
        (store.root / "tmp").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="import-", dir=store.root / "tmp"))
    else:  # a registry: staged in a local temporary folder, uploaded once verified
        work = Path(tempfile.mkdtemp(prefix="escrow-import-"))
    try:
        with store.lock(exclusive=False):
            staged_root = work / "deposit"
            with src:
                safe_extract(
                    src,
                    staged_root,
                    what=f"The deposit archive {archive}",
                    max_member=max_member,
                    accept=_accept,
                )
            staged = FileDepositStore(staged_root)
            try:
                toc = json.loads(_read(staged_root, "TOC.json"))
            except ValueError as e:
                raise InputError("The deposit archive's TOC.json is not JSON.") from e
            if not isinstance(toc, dict) or toc.get("format") != FORMAT:
                raise InputError(
                    f"The archive {archive} is not an escrow deposit ({FORMAT}).",
                )
            # -- the checkpoint
            included = str(toc.get("verifierKey", "")).strip()
            if verifier_key is not None and verifier_key.strip() != included:
                raise SignatureError(
                    "The deposit's ledger verifier key is not the one you pinned "
                    "(--verifier-key); refused."
                )
            note = _read(staged_root, str(toc.get("checkpoint", "checkpoint.txt"))).decode()
            checkpoint = verify_checkpoint(note, verifier_key or included)
            # -- every blob
            listed: dict[str, int] = {}
            for b in toc.get("blobs") or []:
                listed[str(b["sha256"])] = int(b["size"])
            present = set(staged)
            if present - set(listed):
                raise InputError(
                    "The deposit archive holds blobs its table of contents does not list."
                )
            for digest, size in listed.items():
                if digest not in present:
                    raise InputError(f"The deposit archive lacks the blob {digest}.")
                path = staged.path(digest)
                if path.stat().st_size != size:
                    raise InputError(f"The deposited blob {digest} does not have its listed size.")
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                if h.hexdigest() != digest:
                    raise CheckFailed(
                        f"The deposited blob {digest} does not match its SHA-256 (corrupted or "
                        "altered); nothing was imported."
                    )
            # -- the signers' key history, then every entry
            key_history = _verified_key_history(
                staged_root, toc, checkpoint, verifier_key or included
            )
            checked: list[tuple[dict[str, Any], bytes, str]] = []
            for item in toc.get("entries") or []:
                index = int(item["index"])
                envelope = _read(staged_root, str(item["envelope"]))
                leaf = merkle.leaf_hash(envelope)
                if leaf.hex() != item["leafHash"]:
                    raise CheckFailed(
                        f"The envelope of entry {index} does not have its listed leaf hash."
                    )
                proof = [bytes.fromhex(h) for h in item.get("inclusionProof") or []]
                if int(item.get("treeSize", -1)) != checkpoint.size or not merkle.verify_inclusion(
                    leaf, index, checkpoint.size, proof, checkpoint.root
                ):
                    raise CheckFailed(
                        f"The inclusion proof of entry {index} does not verify against the "
                        "deposit's checkpoint; nothing was imported."
                    )
                signer = str(item["signer"])
                keyfile = (toc.get("keys") or {}).get(signer)
                if keyfile is None:
                    raise InputError(f"The deposit archive lacks the public key {signer}.")
                pem = _read(staged_root, str(keyfile)).decode()
                public = PublicKey.from_pem(pem)
                if public.keyid != signer:
                    raise SignatureError(f"The key file {keyfile} is not the key {signer}.")
                env = Envelope.from_bytes(envelope)
                env.verify([public])
                _check_key_valid(key_history, signer, item)
                statement = env.statement()
                if statement.get("predicateType") != BUILD_MANIFEST:
                    raise InputError(f"Entry {index} of the deposit is not a build manifest.")
                record_digest = str(item["record"])
                if not staged.has(record_digest):
                    raise InputError(f"The deposit archive lacks the record of entry {index}.")
                record = json.loads(staged.get(record_digest))
                if (record.get("entry") or {}).get("leafHash") != item["leafHash"]:
                    raise CheckFailed(f"The deposit record of entry {index} is for another entry.")
                report = check_record(staged, statement["predicate"], record, digest=record_digest)
                if not report.complete:
                    names = ", ".join(f"{m['kind']} {m['name']}" for m in report.missing[:5])
                    raise CheckFailed(f"The deposit of entry {index} is incomplete ({names}).")
                checked.append((item, envelope, pem))
            if not checked:
                raise InputError("The deposit archive holds no entries.")
            # -- everything verified: store it
            blobs_new = bytes_new = 0
            for digest, size in listed.items():
                if not isinstance(store, FileDepositStore):
                    if store.has(digest):
                        continue
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
                    continue
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged.path(digest), final)
                blobs_new += 1
                bytes_new += size
            entries = []
            for item, envelope, pem in checked:
                env_digest = store.put(envelope)
                doc = {
                    "type": IMPORT_RECORD,
                    "origin": checkpoint.origin,
                    "index": int(item["index"]),
                    "leafHash": item["leafHash"],
                    "project": item.get("project"),
                    "imageId": item.get("imageId"),
                    "signer": item["signer"],
                    "integratedAt": item.get("integratedAt"),
                    "envelope": env_digest,
                    "treeSize": checkpoint.size,
                    "inclusionProof": item["inclusionProof"],
                    "checkpoint": checkpoint.note,
                    "verifierKey": verifier_key or included,
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
                    }
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImportResult(
        checkpoint.origin, checkpoint.size, verifier_key or included, entries, blobs_new, bytes_new
    )


# ---------------------------------------------------------------------------
# imported entries, for rebuild


def imported_entries(store: DepositStore) -> list[dict[str, Any]]:
    out = []
    for _leaf, digest in store.refs(IMPORTS):
        if store.has(digest):
            out.append(json.loads(store.get(digest)))
    return out


def imported_entry(
    store: DepositStore, index: int, origin: str | None = None
) -> tuple[Entry, dict[str, Any]]:
    """The imported entry ``index`` (of the ledger ``origin``), signature checked again."""
    from escrow.ledger import merkle
    from escrow.ledger.checkpoint import verify_checkpoint
    from escrow.ledger.models import Entry
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

    matches = [
        d
        for d in imported_entries(store)
        if int(d["index"]) == index and (origin is None or d["origin"] == origin)
    ]
    if not matches:
        raise InputError(
            f"No imported deposit holds entry {index}"
            + (f" of the ledger {origin}." if origin else "."),
            hint="`escrow deposit stats --json` lists the imported entries.",
        )
    if len(matches) > 1:
        origins = ", ".join(sorted({str(d["origin"]) for d in matches}))
        raise InputError(
            f"Imported deposits from several ledgers hold an entry {index} ({origins}).",
            hint="Name the ledger with --origin.",
        )
    doc = matches[0]
    envelope = store.get(str(doc["envelope"]))
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
