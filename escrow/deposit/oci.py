"""The deposit store in an OCI registry: ``--deposit-store oci://HOST[:PORT]/REPO``.

Every deposit blob is a registry blob of the repository ``REPO``: registry
blobs are named by the SHA-256 of their bytes, exactly as the file store's
are, so the deposit code (contexts split per file, images by diff ID, the
deposit records) works unchanged, and the registry deduplicates them.

References are tags, each on a small OCI manifest whose config is the
referenced document and whose layers are every blob that document needs —
so the registry's own garbage collection never drops a blob a deposit
needs, and ``skopeo``/``oras`` show what a deposit holds::

    entries-<leaf hash>    the deposit record of a ledger entry ("contexts and logs as OCI
                           artifacts": context index, skeleton, files, logs, Dockerfile)
    imports-<leaf hash>    the import record of an entry imported from another ledger
    image-<image ID hex>   every deposited image as a real OCI image: its config (the
                           image ID) and its uncompressed layers (the diff IDs) — base
                           images by reference, pullable with ``docker pull``

Every blob read is hashed as it arrives and refused when it does not match
its digest (a tampered registry storage is detected, never used).

Locking: the registry has no locks.  :meth:`OciDepositStore.lock` serialises
the processes of this machine; across machines, a ``gc --apply`` racing a
deposit that reuses a blob gc just deleted makes the deposit's manifest push
fail (the registry refuses a manifest naming an unknown blob), so the deposit
reports the error instead of recording an incomplete deposit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from escrow.blobs import check_digest
from escrow.deposit.store import _NAMESPACES, ENTRIES, IMPORTS, NewBlobs, SpoolWriter
from escrow.errors import InputError

SCHEME = "oci://"
REF_TYPE = "application/vnd.escrow.deposit.ref.v1+json"
BLOB_TYPE = "application/vnd.escrow.deposit.blob"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_LAYER = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20
#: blobs up to this size are kept in memory once read (they are immutable by digest)
_CACHE_MAX = 256 << 10
#: the largest blob read into memory (records, indexes, configs, envelopes: all far
#: smaller); layers and archives are streamed to files (:meth:`OciDepositStore.open`)
MAX_IN_MEMORY = 256 << 20


def parse_location(location: str) -> tuple[str, str]:
    """``oci://HOST[:PORT]/REPO`` → ``(HOST[:PORT], REPO)``."""
    from escrow.registry.reference import _REPO, masked_credentials

    masked = masked_credentials(location)
    if masked is not None:  # never printed, never recorded: docker login's are used
        raise InputError(
            f"The deposit store {masked} holds credentials (USER:PASSWORD@), which escrow "
            "never takes in its address; nothing was done with it.",
            hint="Remove them and log in to the registry with docker login instead.",
        )
    rest = location.removeprefix(SCHEME).strip("/")
    host, _, repo = rest.partition("/")
    if not host or not repo or not _REPO.match(repo):
        raise InputError(
            f"The deposit store {location} is not oci://HOST[:PORT]/REPOSITORY.",
            hint="For example --deposit-store oci://registry.example:5000/escrow/deposits.",
        )
    return host, repo


class _OciWriter(SpoolWriter):
    """Spools a blob to a local temporary file, hashing it; uploads on commit
    unless the registry already holds it."""

    def __init__(self, store: OciDepositStore) -> None:
        super().__init__(store.scratch, "escrow-oci-")
        self._store = store

    def _store_blob(self, digest: str) -> None:
        self._file.close()
        if not self._store.has(digest):
            self.created = self._store.client.put_blob(
                self._store.repository, self._tmp, f"sha256:{digest}", self.size
            )
            if self.created:
                self._store.new.add(self.size)
        self._store._sizes[digest] = self.size


class OciDepositStore:
    """The deposit store in the repository ``REPO`` of an OCI registry."""

    def __init__(self, location: str) -> None:
        from escrow.registry.client import RegistryClient

        self.location = location if location.startswith(SCHEME) else SCHEME + location
        self.host, self.repository = parse_location(self.location)
        self.client = RegistryClient(self.host)
        self._sizes: dict[str, int] = {}  # blobs known to be present -> size
        self._small: dict[str, bytes] = {}
        self._scratch: Path | None = None
        self._layer_files: dict[str, Path] = {}
        self.new = NewBlobs()

    @property
    def scratch(self) -> Path:
        """A local folder for spooled uploads and downloaded layers (removed on close)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="escrow-oci-store-"))
        return self._scratch

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
            self._layer_files.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- blobs -----------------------------------------------------------
    def has(self, digest: str) -> bool:
        d = check_digest(digest)
        if d in self._sizes:
            return True
        size = self.client.blob_size(self.repository, f"sha256:{d}")
        if size is None:
            return False
        self._sizes[d] = size
        return True

    def size(self, digest: str) -> int:
        d = check_digest(digest)
        if not self.has(d):
            raise InputError(f"The blob {d} is not in the deposit store {self.location}.")
        return self._sizes[d]

    def writer(self) -> _OciWriter:
        return _OciWriter(self)

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self.client.put_blob_bytes(self.repository, data)
            self._sizes[digest] = len(data)
            self.new.add(len(data))
        return digest

    def get(self, digest: str) -> bytes:
        d = check_digest(digest)
        cached = self._small.get(d)
        if cached is not None:
            return cached
        if not self.has(d):
            raise InputError(f"The blob {d} is not in the deposit store {self.location}.")
        if self._sizes[d] > MAX_IN_MEMORY:  # what the registry says it holds
            raise InputError(
                f"The blob {d} of the deposit store {self.location} is {self._sizes[d]} bytes, "
                f"more than the {MAX_IN_MEMORY >> 20} MiB a record or index of a deposit can be."
            )
        data = self.client.blob(self.repository, f"sha256:{d}", limit=MAX_IN_MEMORY)
        if len(data) <= _CACHE_MAX:
            self._small[d] = data
        return data

    def open(self, digest: str) -> BinaryIO:
        """The blob as a local temporary file, downloaded and checked in full first."""
        d = check_digest(digest)
        if not self.has(d):
            raise InputError(f"The blob {d} is not in the deposit store {self.location}.")
        f = tempfile.TemporaryFile(prefix="escrow-oci-", dir=self.scratch)  # noqa: SIM115
        try:
            self.client.blob_to_file(self.repository, f"sha256:{d}", f)
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f

    def local_path(self, digest: str) -> Path:
        """A local copy of the blob (checked), kept until :meth:`close` — for readers
        that need a file (the layer comparison of a rebuild)."""
        d = check_digest(digest)
        path = self._layer_files.get(d)
        if path is None:
            path = self.scratch / f"blob-{d}"
            with open(path, "wb") as f:
                self.client.blob_to_file(self.repository, f"sha256:{d}", f)
            self._layer_files[d] = path
        return path

    def delete(self, digest: str) -> None:
        d = check_digest(digest)
        self.client.delete_blob(self.repository, f"sha256:{d}")
        self._sizes.pop(d, None)
        self._small.pop(d, None)

    def __iter__(self) -> Iterator[str]:
        """The blobs the store's references need (a registry cannot list its blobs;
        the ones nothing references are its own garbage collection's)."""
        seen: set[str] = set()
        for tag in self._tags():
            manifest = self._ref_manifest(tag)
            if manifest is None:
                continue
            for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                d = str(desc.get("digest", "")).removeprefix("sha256:")
                if d and d not in seen:
                    seen.add(d)
                    self._sizes.setdefault(d, int(desc.get("size", 0)))
                    yield d

    def sizes(self) -> dict[str, int]:
        """Size of every blob the references need (from their manifests: no HEAD each)."""
        return {d: self._sizes[d] for d in self}

    # -- references --------------------------------------------------------
    @staticmethod
    def _tag(namespace: str, name: str) -> str:
        if namespace not in _NAMESPACES:
            raise InputError(f"Unknown reference namespace {namespace!r}.")
        return f"{namespace}-{check_digest(name)}"

    def _tags(self) -> list[str]:
        return self.client.tags(self.repository)

    def _ref_manifest(self, tag: str) -> dict[str, Any] | None:
        got = self.client.find_manifest(self.repository, tag)
        return None if got is None else got.json()

    def _needed(self, namespace: str, digest: str) -> list[str]:
        """Every blob the document ``digest`` (a record) references."""
        from escrow.deposit.deposit import record_blobs

        doc = json.loads(self.get(digest))
        if namespace == ENTRIES:
            return record_blobs(self, doc)
        out = [str(doc["envelope"]), str(doc["record"])]
        if self.has(str(doc["record"])):
            out += record_blobs(self, json.loads(self.get(str(doc["record"]))))
        return out

    def _descriptor(self, digest: str, media_type: str = BLOB_TYPE) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": self.size(digest)}

    def set_ref(self, namespace: str, name: str, digest: str) -> None:
        from escrow.registry.client import OCI_MANIFEST

        tag = self._tag(namespace, name)
        d = check_digest(digest)
        needed = [b for b in dict.fromkeys(self._needed(namespace, d)) if b != d]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": REF_TYPE,
            "config": self._descriptor(d, REF_TYPE),
            "layers": [self._descriptor(b) for b in needed if self.has(b)],
            "annotations": {"dev.escrow.ref": f"{namespace}/{name}"},
        }
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self.client.put_manifest(self.repository, tag, data, OCI_MANIFEST)
        if namespace == ENTRIES:
            self._tag_images(d)

    def _tag_images(self, record_digest: str) -> None:
        """Each image of a deposit record as a real OCI image ``REPO:image-<hex>``."""
        from escrow.registry.client import OCI_MANIFEST

        record = json.loads(self.get(record_digest))
        images = [str(b["imageId"]) for b in record.get("baseImages") or []]
        if record.get("image"):
            images.append(str(record["image"]["imageId"]))
        for image_id in dict.fromkeys(images):
            hexid = check_digest(image_id)
            tag = f"image-{hexid}"
            if self.client.head_manifest(self.repository, tag) is not None:
                continue
            config = json.loads(self.get(hexid))
            diff_ids = [str(x) for x in (config.get("rootfs") or {}).get("diff_ids") or []]
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": self._descriptor(hexid, IMAGE_CONFIG),
                "layers": [self._descriptor(check_digest(x), IMAGE_LAYER) for x in diff_ids],
            }
            data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
            self.client.put_manifest(self.repository, tag, data, OCI_MANIFEST)

    def get_ref(self, namespace: str, name: str) -> str | None:
        manifest = self._ref_manifest(self._tag(namespace, name))
        if manifest is None:
            return None
        return check_digest(str((manifest.get("config") or {}).get("digest", "")))

    def delete_ref(self, namespace: str, name: str) -> None:
        digest = self.client.head_manifest(self.repository, self._tag(namespace, name))
        if digest is not None:
            self.client.delete_manifest(self.repository, digest)

    def refs(self, namespace: str) -> Iterator[tuple[str, str]]:
        prefix = f"{namespace}-"
        for tag in sorted(self._tags()):
            if tag.startswith(prefix):
                name = tag[len(prefix) :]
                value = self.get_ref(namespace, name)
                if value is not None:
                    yield name, value

    def image_tags(self) -> list[str]:
        return [t for t in self._tags() if t.startswith("image-")]

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *, exclusive: bool) -> Iterator[None]:
        """This machine's processes only (see the module docstring)."""
        self.client.ping()
        name = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"escrow-oci-{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- gc's notes: none in a registry ------------------------------------
    def unpin(self) -> None:
        """Nothing to drop: a registry store keeps no pins (it lists only the blobs its
        references need, so an upload not recorded yet is never taken for unreferenced)."""

    def pinned(self, *, clean: bool = False) -> set[str]:
        return set()

    def mark_collected(self, name: str, when: str) -> None:
        """A registry keeps no note of the deposits gc removed."""

    def collected(self, name: str) -> str | None:
        return None

    def clean_tmp(self) -> None:
        """Nothing to clean in a registry (unfinished uploads are the registry's to purge);
        drop the dangling ``image-`` tags no record references."""
        needed: set[str] = set()
        for _leaf, digest in self.refs(ENTRIES):
            if self.has(digest):
                record = json.loads(self.get(digest))
                needed.update(
                    check_digest(str(b["imageId"])) for b in record.get("baseImages") or []
                )
                if record.get("image"):
                    needed.add(check_digest(str(record["image"]["imageId"])))
        for _leaf, digest in self.refs(IMPORTS):
            if self.has(digest):
                doc = json.loads(self.get(digest))
                if self.has(str(doc["record"])):
                    record = json.loads(self.get(str(doc["record"])))
                    needed.update(
                        check_digest(str(b["imageId"])) for b in record.get("baseImages") or []
                    )
        for tag in self.image_tags():
            if tag.removeprefix("image-") not in needed:
                manifest = self.client.head_manifest(self.repository, tag)
                if manifest is not None:
                    self.client.delete_manifest(self.repository, manifest)
