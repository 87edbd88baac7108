"""Depositing what a rebuild of a ledger entry needs, and checking a deposit is complete.

A *deposit record* (JSON, itself a blob) lists, for one build-manifest entry,
every blob a rebuild needs: the Dockerfile, the context (index, skeleton and
files, :mod:`escrow.deposit.context`), the step logs, a large file list, the
base images (config and layers, :mod:`escrow.deposit.images`) and the built
image itself (so that a rebuild anywhere can compare layers file by file).
The reference ``entries/<leaf hash>`` names the entry's current record;
depositing again merges with it (what was deposited before stays).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from escrow.deposit.context import context_blobs, context_index, store_context
from escrow.deposit.images import from_engine_stores, image_layers, missing_parts, save_images
from escrow.deposit.store import ENTRIES, IMPORTS, DepositStore, open_store, reading
from escrow.documents.types import BUILD_MANIFEST, DEPOSIT_RECORD
from escrow.errors import InputError
from escrow.times import rfc3339, utc_now

if TYPE_CHECKING:
    from escrow.blobs import BlobStore
    from escrow.capture.engine import DockerEngine
    from escrow.config import Settings
    from escrow.deposit.ahead import ContextAhead
    from escrow.ledger.store import Entry

ContextInput = str | Path | bytes | IO[bytes] | None


def _deposit_blob(local: BlobStore, store: DepositStore, digest: str) -> None:
    """Copy a blob of the local blob store (a step's log, a file list) into the deposit a
    piece at a time: a log of hundreds of megabytes was read whole into memory.  One whose
    bytes do not match its name is refused, as :meth:`BlobStore.get` refuses it."""
    h = hashlib.sha256()
    w = store.writer()
    try:
        with local.open(digest) as f:
            while piece := f.read(1 << 20):
                h.update(piece)
                w.write(piece)
        if h.hexdigest() != digest:
            raise InputError(
                f"The blob {local.path(digest)} does not match its SHA-256 name (corrupted)."
            )
    except BaseException:
        w.abort()
        raise
    w.commit(digest)


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------
# what an entry needs


@dataclass
class Needs:
    """What a rebuild of one build-manifest entry needs, read from its predicate."""

    recipe: dict[str, Any] | None
    context: dict[str, Any] | None
    logs: list[str]
    files_blob: str | None
    bases: list[dict[str, Any]]
    image_id: str | None

    @classmethod
    def of(cls, predicate: Mapping[str, Any]) -> Needs:
        inputs = predicate.get("inputs") or {}
        context = inputs.get("context") or None
        logs = sorted(
            {
                str(s["log"]["sha256"])
                for s in predicate.get("steps") or []
                if isinstance(s.get("log"), dict) and s["log"].get("sha256")
            }
        )
        files_blob = ((context or {}).get("filesBlob") or {}).get("sha256")
        # the base images and the images COPY --from copies files from: a rebuild needs both
        bases = [
            {"reference": str(b.get("reference")), "imageId": str(b["imageId"])}
            for b in [*(inputs.get("baseImages") or []), *(inputs.get("copyFromImages") or [])]
            if b.get("imageId")
        ]
        unique = list({b["imageId"]: b for b in reversed(bases)}.values())[::-1]
        image_id = (predicate.get("image") or {}).get("id")
        return cls(
            recipe=inputs.get("recipe") or None,
            context=context,
            logs=logs,
            files_blob=files_blob,
            bases=unique,
            image_id=str(image_id) if image_id else None,
        )


def build_predicate(entry: Entry) -> dict[str, Any]:
    """The build manifest predicate of ``entry``; :class:`InputError` for any other kind."""
    if entry.predicate_type != BUILD_MANIFEST:
        raise InputError(
            f"Entry {entry.index} is not a build manifest ({entry.predicate_type}); only builds "
            "have deposits.",
            hint="`escrow log` lists the builds.",
        )
    predicate: dict[str, Any] = entry.statement()["predicate"]
    return predicate


def complete_words(predicate: Mapping[str, Any]) -> str:
    """How a complete deposit of the build ``predicate`` is told: of a failed build, what it
    holds, and that it made no image (``escrow rebuild`` refuses it: nothing to reproduce)."""
    if (predicate.get("build") or {}).get("status") != "succeeded":
        return "complete (the inputs and logs of a failed build; it made no image)"
    return "complete"


# ---------------------------------------------------------------------------
# records


def find_record(store: DepositStore, leaf_hash: str) -> tuple[str, dict[str, Any]] | None:
    """The deposit record of the entry with this leaf hash (deposited or imported)."""
    digest = store.get_ref(ENTRIES, leaf_hash)
    if digest is None:
        imported = store.get_ref(IMPORTS, leaf_hash)
        if imported is None or not store.has(imported):
            return None
        digest = str(json.loads(store.get(imported))["record"])
    if not store.has(digest):
        return None
    record = json.loads(store.get(digest))
    if not isinstance(record, dict) or record.get("type") != DEPOSIT_RECORD:
        raise InputError(f"The deposit record {digest[:16]}… is not a deposit record.")
    return digest, record


def record_blobs(store: DepositStore, record: Mapping[str, Any]) -> list[str]:
    """Every blob a record references (reading context indexes and image configs)."""
    out: list[str] = []
    if record.get("recipe"):
        out.append(str(record["recipe"]["sha256"]))
    ctx = record.get("context")
    if ctx:
        out.append(str(ctx["index"]))
        if store.has(str(ctx["index"])):
            out.extend(context_blobs(context_index(store, str(ctx["index"]))))
    out.extend(str(x) for x in record.get("logs") or [])
    if record.get("filesBlob"):
        out.append(str(record["filesBlob"]))
    images = [str(b["imageId"]) for b in record.get("baseImages") or []]
    if record.get("image"):
        images.append(str(record["image"]["imageId"]))
    for image_id in images:
        out.append(image_id.removeprefix("sha256:"))
        if store.has(image_id):
            out.extend(d.removeprefix("sha256:") for d in image_layers(store, image_id))
    return sorted(set(out))


# ---------------------------------------------------------------------------
# depositing


@dataclass
class DepositResult:
    index: int
    leaf_hash: str
    record: str
    deposited: list[str] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    optional_missing: list[dict[str, Any]] = field(default_factory=list)
    bytes_new: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leafHash": self.leaf_hash,
            "record": self.record,
            "complete": self.complete,
            "deposited": self.deposited,
            "missing": self.missing,
            "optionalMissing": self.optional_missing,
            "bytesNew": self.bytes_new,
        }


def _open_archive(archive: ContextInput) -> tuple[IO[bytes] | None, bool]:
    if archive is None:
        return None, False
    if isinstance(archive, bytes):
        return io.BytesIO(archive), True
    if isinstance(archive, (str, Path)):
        try:
            return open(archive, "rb"), True  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise InputError(f"Cannot read the context archive {archive}: {e.strerror}.") from e
    return archive, False


def _sha256_of(f: IO[bytes]) -> str:
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _dockerfile_from_archive(f: IO[bytes], recipe: Mapping[str, Any]) -> bytes | None:
    """The recipe's bytes out of the context archive (a member, or the embedded copy)."""
    path = str(recipe["path"])
    names = {path.lstrip("./")} if not path.startswith("/") else set()
    names.add(f".dockerfile.{str(recipe['sha256'])[:40]}")
    f.seek(0)
    with tarfile.open(fileobj=f, mode="r:") as tar:
        for m in tar:
            if m.name in names and m.isreg():
                data = tar.extractfile(m)
                if data is not None:
                    content = data.read()
                    if hashlib.sha256(content).hexdigest() == recipe["sha256"]:
                        return content
    return None


def _archive_from_dir(
    context_dir: Path, dockerfile: Path | None, needs: Needs
) -> tuple[IO[bytes], bytes | None]:
    """Re-archive ``context_dir`` with capture's own ``make_context``; the tree digest must
    be the recorded one."""
    from escrow.capture.context import make_context

    recipe = needs.recipe or {}
    if dockerfile is None and str(recipe.get("path", "")).startswith("/"):
        dockerfile = Path(str(recipe["path"]))
    ctx = make_context(
        context_dir,
        dockerfile,
        require_dockerfile=bool(recipe),
        embed_dockerfile=True,
        leave_out=tuple((needs.context or {}).get("excluded") or ()),  # as the build did
    )
    recorded = (needs.context or {}).get("treeDigest")
    if ctx.tree_digest != recorded:
        ctx.close()
        raise InputError(
            f"The folder {context_dir} is not the recorded build context (tree digest "
            f"{ctx.tree_digest[:12]}… instead of {str(recorded)[:12]}…).",
            hint="Pass the context as it was at build time; `escrow rebuild INDEX --context DIR` "
            "lists the files that differ.",
        )
    if ctx.archive is None:  # pragma: no cover - keep_archive is the default
        raise InputError(f"No archive was made of the build context {context_dir}.")
    return ctx.archive, ctx.dockerfile_bytes


def deposit_entry(
    store: DepositStore,
    entry: Entry,
    *,
    blobs_dir: Path,
    engine: DockerEngine | None = None,
    context_archive: ContextInput = None,
    context_dir: Path | None = None,
    dockerfile: Path | None = None,
    include_image: bool = True,
    say: Callable[[str], None] | None = None,
    context_ahead: ContextAhead | None = None,
) -> DepositResult:
    """Deposit what a rebuild of ``entry`` needs; what could not be deposited is listed.

    ``context_ahead``: the context of ``context_dir`` stored while the engine built it
    (used when it is the recorded one and still all there)."""
    from escrow.blobs import BlobStore

    say = say or (lambda _m: None)
    predicate = build_predicate(entry)
    needs = Needs.of(predicate)
    previous = find_record(store, entry.leaf_hash)
    record: dict[str, Any] = dict(previous[1]) if previous else {}
    record.update(
        {
            "type": DEPOSIT_RECORD,
            "entry": {
                "index": entry.index,
                "leafHash": entry.leaf_hash,
                "project": entry.project,
                "imageId": needs.image_id,
                "buildId": (predicate.get("build") or {}).get("id"),
                "integratedAt": rfc3339(entry.integrated_at),
            },
            "depositedAt": utc_now(),
        }
    )
    result = DepositResult(entry.index, entry.leaf_hash, "")
    with store.lock(exclusive=False):
        # -- context and Dockerfile
        ahead = context_ahead.result() if context_ahead is not None else None
        if ahead is not None and (
            not needs.context
            or ahead.tree_digest != needs.context.get("treeDigest")
            or not all(store.has(b) for b in ahead.blobs)
        ):
            ahead = None
        f, close = _open_archive(context_archive)
        df_bytes: bytes | None = None
        try:
            if ahead is not None and needs.context:
                record["context"] = {
                    "treeDigest": needs.context.get("treeDigest"),
                    "archiveDigest": ahead.archive_digest,
                    "archiveSize": ahead.archive_size,
                    "index": ahead.index,
                }
                result.deposited.append("context")
                df_bytes = ahead.dockerfile
            elif f is None and context_dir is not None and needs.context:
                f, df_bytes = _archive_from_dir(Path(context_dir), dockerfile, needs)
                close = True
            elif f is not None and needs.context:
                got = _sha256_of(f)
                if got != needs.context.get("archiveDigest"):
                    raise InputError(
                        f"The context archive given for entry {entry.index} is not the recorded "
                        f"one (SHA-256 {got[:12]}… instead of "
                        f"{str(needs.context.get('archiveDigest'))[:12]}…)."
                    )
            if f is not None and needs.context:
                known = {
                    str(x["path"]): str(x["sha256"])
                    for x in needs.context.get("files") or []
                    if x.get("sha256")
                }
                digest, index = store_context(store, f, known)
                record["context"] = {
                    "treeDigest": needs.context.get("treeDigest"),
                    "archiveDigest": index["archiveDigest"],
                    "archiveSize": index["archiveSize"],
                    "index": digest,
                }
                result.deposited.append("context")
                if needs.recipe and df_bytes is None:
                    df_bytes = _dockerfile_from_archive(f, needs.recipe)
        finally:
            if f is not None and close:
                f.close()
        if needs.recipe and df_bytes is not None:
            if hashlib.sha256(df_bytes).hexdigest() == needs.recipe["sha256"]:
                store.put(df_bytes)
                record["recipe"] = {
                    "path": needs.recipe["path"],
                    "sha256": needs.recipe["sha256"],
                }
                result.deposited.append("dockerfile")

        # -- logs and the file list, from the blob store
        local = BlobStore(blobs_dir)
        logs: list[str] = []
        for digest in needs.logs + ([needs.files_blob] if needs.files_blob else []):
            if store.has(digest):
                logs.append(digest)
            elif local.exists(digest):
                _deposit_blob(local, store, digest)
                logs.append(digest)
        record["logs"] = sorted(x for x in logs if x != needs.files_blob)
        if needs.files_blob and needs.files_blob in logs:
            record["filesBlob"] = needs.files_blob

        # -- images
        wanted = [b["imageId"] for b in needs.bases if missing_parts(store, b["imageId"])]
        if include_image and needs.image_id and missing_parts(store, needs.image_id):
            wanted.append(needs.image_id)
        if wanted:
            if engine is None:
                from escrow.capture.engine import DockerEngine

                engine = DockerEngine()
            # from the engine's own stores when this process can read them (the
            # layers the store lacks, and the config); the rest by docker save
            wanted = [i for i in wanted if from_engine_stores(engine, store, i) is None]
            present = [i for i in wanted if engine.inspect_image(i) is not None]
            if present:
                say(f"escrow: saving {len(present)} image(s) into the deposit store")
                save_images(engine, store, present)
        record["baseImages"] = [b for b in needs.bases if not missing_parts(store, b["imageId"])]
        if record["baseImages"]:
            result.deposited.append("base-images")
        if include_image and needs.image_id and not missing_parts(store, needs.image_id):
            record["image"] = {"imageId": needs.image_id}
            result.deposited.append("image")

        if previous is not None and _same_record(previous[1], record):
            digest = previous[0]  # nothing new: the record stays (gc would find a copy)
        else:
            digest = store.put(_json_bytes(record))
            store.set_ref(ENTRIES, entry.leaf_hash, digest)
        store.unpin()  # referenced now: gc keeps what it needs
    result.record = digest
    # everything this store object stored: with `escrow build`, also what its threads
    # stored while the engine built (the context, the layers saved ahead, the config)
    result.bytes_new = store.new.bytes
    check = check_record(store, predicate, record)
    result.missing = check.missing
    result.optional_missing = check.optional
    return result


def _same_record(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two deposit records of an entry say the same but for when they were made."""
    return {k: v for k, v in old.items() if k != "depositedAt"} == {
        k: v for k, v in new.items() if k != "depositedAt"
    }


def deposit_build(
    settings: Settings,
    entry_index: int,
    context_archive: ContextInput = None,
    *,
    context_dir: Path | None = None,
    dockerfile: Path | None = None,
    engine: DockerEngine | None = None,
    store: DepositStore | None = None,
    include_image: bool = True,
    say: Callable[[str], None] | None = None,
) -> DepositResult:
    """Deposit the inputs of ledger entry ``entry_index`` (``escrow build`` calls this).

    ``context_archive``: the very archive sent to the engine (a path, bytes or a
    binary file), checked against the recorded archive digest; or
    ``context_dir`` (and ``dockerfile``), re-archived with capture's own
    ``make_context`` and checked against the recorded tree digest.
    """
    from escrow.ledger.store import Ledger

    store = store or open_store(settings.home)
    with Ledger.open(settings, create=False) as ledger:
        entry = ledger.get(entry_index)
    return deposit_entry(
        store,
        entry,
        blobs_dir=settings.blobs_dir,
        engine=engine,
        context_archive=context_archive,
        context_dir=context_dir,
        dockerfile=dockerfile,
        include_image=include_image,
        say=say,
    )


# ---------------------------------------------------------------------------
# checking


@dataclass
class CheckReport:
    record: str | None
    missing: list[dict[str, Any]]
    optional: list[dict[str, Any]]
    verified: int = 0

    @property
    def complete(self) -> bool:
        return self.record is not None and not self.missing


def check_record(
    store: DepositStore,
    predicate: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    *,
    verify: bool = False,
    digest: str | None = None,
    collected: str | None = None,
) -> CheckReport:
    """What a rebuild from this deposit would lack (``missing``), and what it could do
    without (``optional``: the built image, for file-level comparison).  ``collected``:
    when ``gc --apply`` removed the deposit (with no ``record``)."""
    needs = Needs.of(predicate)
    missing: list[dict[str, Any]] = []
    optional: list[dict[str, Any]] = []
    if record is None:
        reason = (
            f"the store {store.location} holds no deposit of this entry: it was never deposited "
            "there (one made into another store needs --deposit-store), or `escrow gc --apply` "
            "removed it"
        )
        if collected:
            reason = (
                f"`escrow gc --apply` removed its deposit from the store {store.location} at "
                f"{collected} (the retention policy dropped this entry)"
            )
        return CheckReport(None, [{"kind": "deposit", "name": "record", "reason": reason}], [])

    def need(kind: str, name: str, blob: str | None, reason: str) -> None:
        if blob is None or not store.has(blob):
            missing.append({"kind": kind, "name": name, "digest": blob, "reason": reason})

    if needs.recipe:
        got = (record.get("recipe") or {}).get("sha256")
        need(
            "dockerfile",
            str(needs.recipe["path"]),
            str(got) if got == needs.recipe["sha256"] else None,
            "the Dockerfile is not deposited",
        )
    if needs.context:
        ctx = record.get("context") or {}
        if ctx.get("treeDigest") != needs.context.get("treeDigest") or not ctx.get("index"):
            missing.append(
                {
                    "kind": "context",
                    "name": "build context",
                    "digest": needs.context.get("treeDigest"),
                    "reason": "the build context is not deposited "
                    "(escrow deposit INDEX --context DIR)",
                }
            )
        elif not store.has(str(ctx["index"])):
            need("context", "context index", str(ctx["index"]), "the context index is missing")
        else:
            try:
                index = context_index(store, str(ctx["index"]))
            except InputError as e:  # damaged: named, as a missing blob is
                missing.append(_damaged("context", "context index", str(ctx["index"]), e))
            else:
                for blob in context_blobs(index):
                    need("context", "context file", blob, "a context file blob is missing")
    for log in needs.logs:
        need("log", "step log", log, "a step log is not deposited")
    if needs.files_blob:
        need("file-list", "context file list", needs.files_blob, "the file list is not deposited")
    for base in needs.bases:
        try:
            parts = missing_parts(store, base["imageId"])
        except InputError as e:  # its config is damaged: named, as a missing one is
            missing.append(_damaged("base-image", base["reference"], base["imageId"], e))
            continue
        missing.extend(
            {
                "kind": "base-image",
                "name": base["reference"],
                "digest": base["imageId"] if part == "config" else part,
                "reason": "image config not deposited" if part == "config" else "layer missing",
            }
            for part in parts
        )
    if needs.image_id:
        try:
            parts = missing_parts(store, needs.image_id)
        except InputError:  # a damaged config of the built image: as good as none
            parts = ["config"]
        if parts:
            optional.append(
                {
                    "kind": "original-image",
                    "name": needs.image_id,
                    "digest": needs.image_id,
                    "reason": "without it a rebuild elsewhere cannot compare differing layers "
                    "file by file",
                }
            )
    verified = 0
    if verify:
        try:
            blobs = record_blobs(store, record)
        except InputError:  # a damaged index or config, listed above
            blobs = []
        for blob in blobs:
            if store.has(blob):
                try:
                    with store.open(blob) as f:
                        h = hashlib.sha256()
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                except OSError as e:
                    raise InputError(f"Cannot read the deposited blob {blob}: {e}.") from e
                if h.hexdigest() != blob:
                    missing.append(
                        {
                            "kind": "corrupt",
                            "name": "blob",
                            "digest": blob,
                            "reason": "its content does not match its SHA-256 name",
                        }
                    )
                verified += 1
    return CheckReport(digest, missing, optional, verified)


def _damaged(kind: str, name: str, digest: str | None, error: InputError) -> dict[str, Any]:
    """A ``missing`` item for a deposited document that cannot be read (``error`` says why)."""
    return {
        "kind": kind,
        "name": name,
        "digest": digest,
        "reason": f"damaged: {error.message[:1].lower()}{error.message[1:].rstrip('.')}",
    }


def _dangling(store: DepositStore, entry: Entry) -> dict[str, Any] | None:
    """The ``missing`` item for an entry whose reference in the store names a record that is
    not there, or is not a digest at all (a damaged store), else None."""
    for namespace, what in ((ENTRIES, "deposit record"), (IMPORTS, "import record")):
        try:
            digest = store.get_ref(namespace, entry.leaf_hash)
        except InputError as e:
            return _damaged("deposit", f"{namespace} reference", None, e)
        if digest is not None:
            return {
                "kind": "deposit",
                "name": "record",
                "digest": digest,
                "reason": f"the store {store.location} references the {what} {digest[:16]}… "
                "of this entry, which is not in the store (the store is damaged)",
            }
    return None


def nothing_deposited(store: DepositStore, entry: Entry) -> str:
    """Why ``entry`` has no deposit, as the end of a sentence: gc removed it, or none was made."""
    dangling = _dangling(store, entry)
    if dangling is not None:
        return str(dangling["reason"]).removeprefix("damaged: ")
    when = store.collected(entry.leaf_hash)  # a registry store keeps no such note: None
    if when is not None:
        return (
            f"`escrow gc --apply` removed its deposit at {when} (the retention policy dropped it)"
        )
    return "nothing is deposited for it"


def check_entry(store: DepositStore, entry: Entry, *, verify: bool = False) -> CheckReport:
    """Whether the deposit of ``entry`` is complete, read under the store's shared lock:
    a ``gc --apply`` meanwhile removes it before or after, not half-way through."""
    predicate = build_predicate(entry)
    with reading(store):
        try:
            found = find_record(store, entry.leaf_hash)
        except InputError as e:  # a damaged reference or record: named, not a usage error
            return CheckReport(None, [_damaged("deposit", "record", None, e)], [])
        if found is None:
            dangling = _dangling(store, entry)
            if dangling is not None:
                return CheckReport(None, [dangling], [])
            return check_record(store, predicate, None, collected=store.collected(entry.leaf_hash))
        return check_record(store, predicate, found[1], verify=verify, digest=found[0])
