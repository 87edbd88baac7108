"""Rebuilding from a deposit: restore the context, load base images, read original layers.

Used by :func:`escrow.rebuild.verify.rebuild_entry` when no ``--context`` is
given: everything comes from the deposit store, so a rebuild needs neither the
original checkout nor the network nor the original image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.deposit.context import context_index, restore_context
from escrow.deposit.deposit import check_record, find_record, nothing_deposited
from escrow.deposit.images import load_image, missing_parts
from escrow.deposit.store import DepositStore, FileDepositStore, file_sha256, reading
from escrow.errors import CheckFailed, EscrowError, InputError

if TYPE_CHECKING:
    from escrow.capture.engine import DockerEngine
    from escrow.ledger.store import Entry
    from escrow.rebuild.layers import LayerIndex


@dataclass
class DepositInputs:
    context: Path
    #: the Dockerfile's bytes when it was kept outside the context
    dockerfile: bytes | None
    loaded: list[str]
    record: str


def _split_reference(ref: str) -> tuple[str, str]:
    name, _, digest = ref.partition("@")
    if digest:
        return name, ""
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "latest"
    return repo, tag


def prepare_from_deposit(
    store: DepositStore,
    entry: Entry,
    predicate: Mapping[str, Any],
    engine: DockerEngine,
    scratch: Path,
    say: Callable[[str], None],
) -> DepositInputs:
    """Restore the deposited context under ``scratch`` and load missing base images.

    Raises :class:`InputError` (exit 2) when the deposit lacks what the rebuild needs.
    Read under the store's shared lock: a ``gc --apply`` meanwhile waits.
    """
    with reading(store):
        return _prepare(store, entry, predicate, engine, scratch, say)


def _prepare(
    store: DepositStore,
    entry: Entry,
    predicate: Mapping[str, Any],
    engine: DockerEngine,
    scratch: Path,
    say: Callable[[str], None],
) -> DepositInputs:
    found = find_record(store, entry.leaf_hash)
    if found is None:
        raise InputError(
            f"Rebuilding entry {entry.index} needs its build context, and "
            f"{nothing_deposited(store, entry)}.",
            hint="Pass the folder the build used (--context DIR), or deposit it first "
            f"(escrow deposit {entry.index} --context DIR).",
        )
    digest, record = found
    report = check_record(store, predicate, record, digest=digest)
    if not report.complete:
        names = "; ".join(f"{m['kind']} {m['name']}: {m['reason']}" for m in report.missing[:5])
        raise InputError(
            f"The deposit of entry {entry.index} is incomplete ({names}).",
            hint=f"`escrow deposit check {entry.index}` lists everything missing; or pass "
            "--context DIR.",
        )
    recipe = predicate["inputs"]["recipe"]
    outside = str(recipe["path"]).startswith("/")
    dockerfile = store.get(str(record["recipe"]["sha256"])) if outside else None
    skip: dict[str, bytes | None] = {}
    if outside:
        # the archive embeds the Dockerfile and a synthetic .dockerignore (as the SDK does)
        skip[f".dockerfile.{str(recipe['sha256'])[:40]}"] = None
        patterns = predicate["inputs"]["context"].get("dockerignore")
        skip[".dockerignore"] = (
            "\n".join(patterns).encode("utf-8") if patterns is not None else None
        )
    target = scratch / "context"
    restore_context(store, context_index(store, str(record["context"]["index"])), target, skip=skip)
    say(f"escrow: restored the context of entry {entry.index} from the deposit")
    loaded = load_bases(store, predicate, engine, say)
    return DepositInputs(target, dockerfile, loaded, digest)


def load_bases(
    store: DepositStore,
    predicate: Mapping[str, Any],
    engine: DockerEngine,
    say: Callable[[str], None],
) -> list[str]:
    """Load into the engine the recorded base images (and ``COPY --from`` images) it lacks
    and the deposit holds (each checked against its image ID as it is loaded); their IDs."""
    loaded: list[str] = []
    inputs = predicate["inputs"]
    for base in [*(inputs.get("baseImages") or []), *(inputs.get("copyFromImages") or [])]:
        image_id = base.get("imageId")
        if not image_id or engine.inspect_image(str(image_id)) is not None:
            continue
        if missing_parts(store, str(image_id)):
            continue  # check_bases reports it as missing: verdict unknown
        ref = str(base.get("reference"))
        say(f"escrow: loading the base image {ref} ({str(image_id)[:19]}) from the deposit")
        load_image(engine.api, store, str(image_id))
        if engine.inspect_image(ref) is None and "@" not in ref:
            repo, tag = _split_reference(ref)
            engine.api.tag(str(image_id), repo, tag)
        loaded.append(str(image_id))
    return loaded


class DepositLayers:
    """A layer source reading the original image's layers from the deposit store, and
    anything else from ``fallback`` (the engine)."""

    def __init__(self, store: DepositStore, fallback: Any) -> None:
        self._store = store
        self._fallback = fallback

    def covers(self, diff_ids: set[str]) -> bool:
        return all(self._store.has(d) for d in diff_ids)

    def index(self, side: str, diff_id: str) -> LayerIndex:
        from escrow.rebuild.layers import LayerIndex

        damaged: EscrowError | None = None
        if side == "original" and self._store.has(diff_id):
            try:
                store = self._store
                if isinstance(store, FileDepositStore):
                    path = store.path(diff_id)
                    _check_layer(store, path, diff_id)
                else:  # a registry store checks the digest as it downloads
                    path = store.local_path(diff_id)  # type: ignore[attr-defined]
                return LayerIndex.of_file(path, f"deposited layer {diff_id[:19]}")
            except EscrowError as e:
                damaged = e
        try:
            index: LayerIndex = self._fallback.index(side, diff_id)
        except EscrowError:
            if damaged is None:
                raise
            # the engine lacks the image too: name the damaged deposit, not the engine
            raise damaged from None
        return index


def _check_layer(store: FileDepositStore, path: Path, diff_id: str) -> None:
    """The deposited layer file ``path`` hashes to its diff ID (else :class:`CheckFailed`):
    a damaged store must not be compared as the original's files."""
    hexid = diff_id.removeprefix("sha256:")
    try:
        ok = file_sha256(path) == hexid
    except OSError as e:
        raise CheckFailed(
            f"The deposited layer sha256:{hexid[:12]} cannot be read from the deposit store "
            f"{store.location} ({e.strerror or e})."
        ) from e
    if not ok:
        raise CheckFailed(
            f"The deposited layer sha256:{hexid[:12]} in the deposit store {store.location} "
            "does not match its SHA-256 (the store is damaged)",
            hint="Restore it from a backup, or import the exported deposit again "
            "(`escrow deposit import` replaces a damaged blob).",
        )
