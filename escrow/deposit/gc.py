"""What the deposit store holds, and reclaiming space under a retention policy.

Every blob is *referenced* by the deposit records it belongs to (and by import
records).  A blob's bytes are stored once however many records reference it:
``logical`` bytes count each reference, ``stored`` bytes count each blob once,
and the difference is what deduplication saved.

``gc`` keeps, per project, the entries within ``keep_days`` days or among
the ``keep_last`` most recent (either rule retains; with neither, everything
is retained), and every imported deposit.  It drops the references of the
other entries and reclaims the blobs that no retained record references, plus
blobs no record references at all (left by interrupted deposits).  It is a dry
run unless ``apply``; applying holds the store's exclusive lock, so no deposit
is half-way through while blobs are removed, and keeps the blobs a deposit in
progress has pinned (stored, but not referenced yet: ``escrow build`` stores the
context and layers while the engine builds, and records them after it).  Each
removed deposit of a ledger entry is noted, so that ``escrow deposit check`` can
say that gc removed it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from escrow.blobs import BlobStore
from escrow.deposit.deposit import record_blobs
from escrow.deposit.store import ENTRIES, IMPORTS, DepositStore, FileDepositStore, reading
from escrow.errors import CheckFailed
from escrow.times import rfc3339


@dataclass
class _Item:
    namespace: str
    leaf: str
    project: str
    index: int
    at: datetime
    blobs: set[str] = field(default_factory=set)


def _parse_time(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _damage(store: DepositStore, namespace: str, leaf: str, record: Any) -> list[str]:
    """What of a reference's deposit is missing from the store although its record names it
    (the record itself, its context index, an image config): the blobs that it names in turn
    are unknown, so they look unreferenced."""
    what = "deposit" if namespace == ENTRIES else "import"
    if record is None:
        return [f"the {what} record of entry {leaf[:16]}… is missing"]
    docs: list[tuple[str, str]] = []
    if namespace == IMPORTS:
        docs.append(("deposit record", str(record.get("record"))))
    ctx = record.get("context") or {}
    if ctx.get("index"):
        docs.append(("context index", str(ctx["index"])))
    images = [str(b.get("imageId")) for b in record.get("baseImages") or []]
    if record.get("image"):
        images.append(str(record["image"].get("imageId")))
    docs.extend(("image config", i) for i in images)
    return [
        f"the {name} {digest.removeprefix('sha256:')[:16]}… of entry {leaf[:16]}… is missing"
        for name, digest in docs
        if not store.has(digest)
    ]


def _items(store: DepositStore, damaged: list[str] | None = None) -> list[_Item]:
    """Every deposit and import in the store, with the blobs it needs; what a damaged store
    lacks of them is appended to ``damaged``."""
    damaged = [] if damaged is None else damaged
    items: list[_Item] = []
    for leaf, digest in store.refs(ENTRIES):
        if not store.has(digest):
            damaged.extend(_damage(store, ENTRIES, leaf, None))
            continue
        record = json.loads(store.get(digest))
        damaged.extend(_damage(store, ENTRIES, leaf, record))
        e = record.get("entry") or {}
        item = _Item(
            ENTRIES,
            leaf,
            str(e.get("project") or "(none)"),
            int(e.get("index", -1)),
            _parse_time(e.get("integratedAt")),
        )
        item.blobs = {digest, *record_blobs(store, record)}
        items.append(item)
    for leaf, digest in store.refs(IMPORTS):
        if not store.has(digest):
            damaged.extend(_damage(store, IMPORTS, leaf, None))
            continue
        doc = json.loads(store.get(digest))
        damaged.extend(_damage(store, IMPORTS, leaf, {"record": doc.get("record")}))
        item = _Item(
            IMPORTS,
            leaf,
            str(doc.get("project") or "(none)"),
            int(doc.get("index", -1)),
            _parse_time(doc.get("integratedAt")),
        )
        item.blobs = {digest, str(doc["envelope"]), str(doc["record"])}
        if store.has(str(doc["record"])):
            record = json.loads(store.get(str(doc["record"])))
            damaged.extend(_damage(store, ENTRIES, leaf, record))
            item.blobs.update(record_blobs(store, record))
        items.append(item)
    return items


def _sizes(store: DepositStore) -> dict[str, int]:
    sizes = getattr(store, "sizes", None)  # a registry store reads them from its manifests
    if callable(sizes):
        return dict(sizes())
    return {d: store.size(d) for d in store}


def _figures(blobs_per_item: list[set[str]], sizes: dict[str, int]) -> dict[str, int]:
    unique: set[str] = set().union(*blobs_per_item) if blobs_per_item else set()
    logical = sum(sizes.get(b, 0) for s in blobs_per_item for b in s)
    stored = sum(sizes.get(b, 0) for b in unique)
    return {
        "entries": len(blobs_per_item),
        "blobs": len(unique),
        "bytesStored": stored,
        "bytesLogical": logical,
        "bytesSavedByDedup": logical - stored,
    }


def store_stats(store: DepositStore) -> dict[str, Any]:
    """Figures for the whole store, and per project."""
    with reading(store):
        sizes = _sizes(store)
        items = _items(store)
        temporary = store.temporary() if isinstance(store, FileDepositStore) else (0, 0)
    referenced: set[str] = set().union(*(i.blobs for i in items)) if items else set()
    unref = set(sizes) - referenced
    by_project: dict[str, list[_Item]] = defaultdict(list)
    for item in items:
        by_project[item.project].append(item)
    doc = {
        "store": store.location,
        **_figures([i.blobs for i in items], sizes),
        "blobsOnDisk": len(sizes),
        "bytesOnDisk": sum(sizes.values()),
        "imports": sum(1 for i in items if i.namespace == IMPORTS),
        "unreferenced": {"blobs": len(unref), "bytes": sum(sizes[b] for b in unref)},
        "temporary": {"files": temporary[0], "bytes": temporary[1]},
        "projects": {
            p: _figures([i.blobs for i in group], sizes) for p, group in sorted(by_project.items())
        },
    }
    return doc


def _days_before(now: datetime, days: int) -> datetime:
    """``days`` days before ``now``; a span longer than the calendar keeps everything."""
    try:
        return now - timedelta(days=days)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def collect_garbage(
    store: DepositStore,
    *,
    keep_days: int | None = None,
    keep_last: int | None = None,
    apply: bool = False,
    now: datetime | None = None,
    log_blobs: BlobStore | None = None,
) -> dict[str, Any]:
    """Report (and with ``apply`` reclaim) what the retention policy lets go.

    ``log_blobs``: the blob store of the step logs (``ESCROW_HOME/blobs``), whose
    temporary files that interrupted writes left are reported (and removed with
    ``apply``) too; one a live process is writing is left alone."""
    now = now or datetime.now(UTC)
    since = None if keep_days is None else _days_before(now, keep_days)
    with store.lock(exclusive=True) if apply else reading(store):
        sizes = _sizes(store)
        damaged: list[str] = []
        items = _items(store, damaged)
        if apply and damaged:
            # what the missing documents name looks unreferenced: removing it would make
            # the damage beyond repair (an import of the exported deposit brings them back)
            raise CheckFailed(
                f"The deposit store {store.location} is damaged ({damaged[0]}"
                + (f", and {len(damaged) - 1} more" if len(damaged) > 1 else "")
                + "); gc --apply removed nothing.",
                hint="`escrow deposit check INDEX` names what is damaged; import the exported "
                "deposit again or deposit the entry again (escrow deposit INDEX --context DIR), "
                "or remove its reference, then run gc again.",
            )
        in_use = store.pinned(clean=apply) & set(sizes)  # a registry store has no pins
        by_project: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_project[item.project].append(item)
        retained: list[_Item] = []
        dropped: list[_Item] = []
        for group in by_project.values():
            group.sort(key=lambda i: (i.at, i.index), reverse=True)
            for rank, item in enumerate(group):
                keep = (
                    item.namespace == IMPORTS
                    or (keep_days is None and keep_last is None)
                    or (keep_last is not None and rank < keep_last)
                    or (since is not None and item.at >= since)
                )
                (retained if keep else dropped).append(item)
        gone_keys = {(i.namespace, i.leaf) for i in dropped}
        needed: set[str] = set().union(*(i.blobs for i in retained)) if retained else set()
        referenced: set[str] = set().union(*(i.blobs for i in items)) if items else set()
        orphans = set(sizes) - referenced - in_use
        projects: dict[str, Any] = {}
        for name, group in sorted(by_project.items()):
            gone = [i for i in group if (i.namespace, i.leaf) in gone_keys]
            freed = set().union(*(i.blobs for i in gone)) - needed - in_use if gone else set()
            projects[name] = {
                **_figures([i.blobs for i in group], sizes),
                "retained": [i.index for i in group if (i.namespace, i.leaf) not in gone_keys],
                "imported": sum(1 for i in group if i.namespace == IMPORTS),
                "dropped": [i.index for i in gone],
                "reclaimableBlobs": len(freed & set(sizes)),
                "reclaimableBytes": sum(sizes.get(b, 0) for b in freed),
            }
        reclaim = (
            set().union(*(i.blobs for i in dropped)) - needed if dropped else set()
        ) | orphans
        reclaim &= set(sizes)
        reclaim -= in_use
        temporary = store.temporary() if isinstance(store, FileDepositStore) else (0, 0)
        if apply:
            for item in dropped:
                if item.namespace == ENTRIES:
                    store.mark_collected(item.leaf, rfc3339(now))
                store.delete_ref(item.namespace, item.leaf)
            for digest in sorted(reclaim):
                store.delete(digest)
            store.clean_tmp()
    log_tmp = (0, 0) if log_blobs is None else log_blobs.incoming(clean=apply)
    return {
        "store": store.location,
        "applied": apply,
        "policy": {"keepDays": keep_days, "keepLast": keep_last},
        "projects": projects,
        "unreferenced": {"blobs": len(orphans), "bytes": sum(sizes[b] for b in orphans)},
        "inProgress": {"blobs": len(in_use), "bytes": sum(sizes[b] for b in in_use)},
        "reclaimBlobs": len(reclaim),
        "reclaimBytes": sum(sizes[b] for b in reclaim),
        "bytesStored": sum(sizes.values()),
        "logTemporary": {"files": log_tmp[0], "bytes": log_tmp[1]},
        "storeTemporary": {"files": temporary[0], "bytes": temporary[1]},
        "damaged": damaged,
    }
