"""Images in the deposit store: saved from the engine layer by layer, loaded back.

An image is stored as its config blob (named by the image ID, since the image
ID is the SHA-256 of the config) and one blob per layer, uncompressed, named
by its diff ID (the SHA-256 of the uncompressed layer).  A base layer shared
by a hundred builds is therefore stored once, and the config alone says which
layers an image needs (``rootfs.diff_ids``).

Saving streams ``docker save`` of every wanted image at once (the engine sends
each layer once) straight into the store, hashing as it writes; the names the
archive gives (``<v1>/layer.tar`` in the classic layout, ``blobs/sha256/<hex>``
in the OCI layout) are checked against the configs once ``manifest.json``
arrives.  Loading builds a classic ``docker load`` archive from the blobs, as a
stream, and checks the engine reports the recorded image ID.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from escrow.blobs import check_digest
from escrow.deposit.store import DepositStore
from escrow.errors import CheckFailed, EngineUnavailable, InputError

if TYPE_CHECKING:
    from escrow.capture.engine import DockerEngine
    from escrow.deposit.ahead import SaveAhead

_CHUNK = 1 << 20
_SMALL = 4 << 20


def stored_config(store: DepositStore, image_id: str) -> dict[str, Any]:
    """The raw config of a stored image; :class:`InputError` when absent or not an object."""
    config = json.loads(store.get(image_id))
    if not isinstance(config, dict):
        raise InputError(f"The deposited config of {image_id} is not a JSON object.")
    return config


def image_layers(store: DepositStore, image_id: str) -> list[str]:
    """The diff IDs of a stored image (from its config); :class:`InputError` when absent."""
    config = stored_config(store, image_id)
    return [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]


def missing_parts(store: DepositStore, image_id: str) -> list[str]:
    """What of image ``image_id`` the store lacks: ``[]``, ``["config"]`` or diff IDs."""
    if not store.has(image_id):
        return ["config"]
    return [d for d in image_layers(store, image_id) if not store.has(d)]


@dataclass
class SaveReport:
    images: dict[str, list[str]] = field(default_factory=dict)  # image ID -> diff IDs
    bytes_read: int = 0
    bytes_written: int = 0  # new blobs only
    blobs_new: int = 0


def _known_layers(
    engine: DockerEngine, store: DepositStore, image_ids: Sequence[str]
) -> dict[int, set[str]]:
    """Size -> diff IDs of the layers of ``image_ids`` that the store already holds."""
    known: dict[int, set[str]] = {}
    for image_id in image_ids:
        try:
            inspect = engine.inspect_image(image_id) or {}
        except EngineUnavailable:  # the save itself reports it
            inspect = {}
        for diff_id in (inspect.get("RootFS") or {}).get("Layers") or []:
            d = str(diff_id).removeprefix("sha256:")
            if store.has(d):
                known.setdefault(store.size(d), set()).add(d)
    return known


def saved_config(
    engine: DockerEngine, store: DepositStore, image_id: str, ahead: SaveAhead | None = None
) -> dict[str, Any]:
    """Save image ``image_id`` into ``store`` unless it is all there; its raw config.

    Beside a local engine whose stores this process can read, the config and the layers
    the store lacks (none, when ``ahead`` stored them while the build ran) come from
    them, each checked against its digest (:func:`from_engine_stores`): no ``docker save``.
    """
    if ahead is not None:
        ahead.wait()
    with store.lock(exclusive=False):
        config = from_engine_stores(engine, store, image_id)
        if config is not None:
            return config
        if missing_parts(store, image_id):
            save_images(engine, store, [image_id])
        return stored_config(store, image_id)


def from_engine_stores(
    engine: DockerEngine, store: DepositStore, image_id: str
) -> dict[str, Any] | None:
    """Complete image ``image_id`` in ``store`` from the engine's own stores, without a
    ``docker save``: its config (:meth:`DockerEngine.local_config`) and whichever of its
    layers the store lacks (:func:`local_layers`), each checked against its digest.  Its
    config, else None (then save it).  Hold the store's lock."""
    local = getattr(engine, "local_config", None)
    raw = local(image_id) if local is not None else None
    if raw is None:
        return None
    config = json.loads(raw)
    diff_ids = [str(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
    if not local_layers(engine, store, diff_ids):
        return None
    store.put(raw)  # named by its SHA-256: the image ID
    return dict(config)


def local_layers(engine: DockerEngine, store: DepositStore, diff_ids: Sequence[str]) -> bool:
    """Store the layers of ``diff_ids`` the store lacks, rebuilt from the engine's layer
    store (:meth:`DockerEngine.local_layer`); whether every layer is now there.

    Each layer is written only if its SHA-256 is its diff ID, so what the engine's
    private layout gives is trusted only when it is exactly the layer ``docker save``
    would have given.  A layer that cannot be read or does not match is left for a
    ``docker save``.  Daily phoenix builds change their top layers only, so this reads
    a few small layers from disk where a save would export the whole image.
    """
    local = getattr(engine, "local_layer", None)
    complete = True
    for index, diff_id in enumerate(diff_ids):
        digest = diff_id.removeprefix("sha256:")
        if store.has(digest):
            continue
        chunks = local(diff_ids, index) if local is not None else None
        if chunks is None:
            complete = False
            continue
        writer = store.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
            writer.commit(digest)
        except (OSError, ValueError, InputError):
            writer.abort()
            complete = False
    return complete


def save_images(
    engine: DockerEngine, store: DepositStore, image_ids: Sequence[str], *, speculate: bool = True
) -> SaveReport:
    """Stream ``docker save`` of ``image_ids`` into ``store``: configs and layers by digest.

    A layer whose size is that of a layer of these images the store already
    holds is only hashed, not written (the base layers of a daily build).  A
    small one is kept in memory meanwhile and stored if its hash turns out to be
    another; for a large one, the save is then streamed once more without this
    shortcut.
    """
    from escrow.rebuild.layers import BlockReader, IterSource, iter_members

    report = SaveReport()
    if not image_ids:
        return report
    known = _known_layers(engine, store, image_ids) if speculate else {}
    lost = False
    src = IterSource(engine.save(image_ids, chunk_size=_CHUNK), "docker save")
    reader = BlockReader(src)
    small: dict[str, bytes] = {}
    stored: dict[str, str] = {}  # member name -> digest
    links: dict[str, str] = {}
    for member in iter_members(reader):
        name = member.name.lstrip("./")
        if member.tartype == tarfile.SYMTYPE:  # a layer shared by two saved images
            links[name] = posixpath.normpath(
                posixpath.join(posixpath.dirname(name), member.linkname)
            )
            continue
        if member.tartype not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            continue
        report.bytes_read += member.size
        if name in ("manifest.json", "index.json") or (
            member.size <= _SMALL and not name.endswith("layer.tar") and "/" not in name
        ):
            small[name] = member.read(_SMALL)
            if name.endswith(".json") and name not in ("manifest.json", "index.json"):
                stored[name] = store.put(small[name])
            continue
        if name.endswith("/json") or name.endswith("/VERSION") or name == "oci-layout":
            continue
        if member.size in known and member.size <= _SMALL:
            # Small layers often share a size (tar sizes are multiples of 512): keep
            # the bytes, so that a new one is stored without streaming again.
            data = member.read(_SMALL)
            digest = hashlib.sha256(data).hexdigest()
            if digest not in known[member.size]:
                stored[name] = store.put(data)
                report.bytes_written += member.size
                report.blobs_new += 1
            else:
                stored[name] = digest
            continue
        if member.size in known:
            h = hashlib.sha256()
            member.feed(h.update)
            if h.hexdigest() in known[member.size]:
                stored[name] = h.hexdigest()
            else:
                lost = True
            continue
        w = store.writer()
        try:
            member.feed(w.write)
        except BaseException:
            w.abort()
            raise
        expected = name.rsplit("/", 1)[-1] if name.startswith("blobs/sha256/") else None
        digest = w.commit(expected)
        if getattr(w, "created", True):
            report.bytes_written += member.size
            report.blobs_new += 1
        stored[name] = digest
    for name, target in links.items():
        if target in stored:
            stored[name] = stored[target]
    if lost:
        return save_images(engine, store, image_ids, speculate=False)
    if "manifest.json" not in small:
        raise EngineUnavailable("The Docker Engine's image archive has no manifest.json.")
    try:
        manifest = json.loads(small["manifest.json"])
    except ValueError as e:
        raise EngineUnavailable("The Docker Engine's image archive manifest is not JSON.") from e
    for item in manifest:
        config_name = str(item["Config"]).lstrip("./")
        config_digest = stored.get(config_name)
        if config_digest is None:
            raise EngineUnavailable(f"The image archive lacks the config {config_name}.")
        config = json.loads(store.get(config_digest))
        diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
        layers = [stored.get(str(x).lstrip("./")) for x in item.get("Layers") or []]
        if [f"sha256:{d}" for d in layers] != diff_ids:
            raise EngineUnavailable(
                f"The layers the engine saved for sha256:{config_digest} do not hash to its "
                "diff IDs (the archive is not what the image config describes)."
            )
        report.images[f"sha256:{config_digest}"] = diff_ids
    for wanted in image_ids:
        if wanted.startswith("sha256:") and wanted not in report.images:
            raise EngineUnavailable(f"The Docker Engine did not save the image {wanted}.")
    return report


# ---------------------------------------------------------------------------
# loading


def load_archive(store: DepositStore, image_id: str, tags: Sequence[str] = ()) -> Iterator[bytes]:
    """A classic ``docker load`` archive of a stored image, as a stream of chunks."""
    config = store.get(image_id)
    hexid = check_digest(image_id)
    diff_ids = [str(d) for d in json.loads(config)["rootfs"]["diff_ids"]]
    layer_names = [f"{check_digest(d)}/layer.tar" for d in diff_ids]
    manifest = json.dumps(
        [{"Config": f"{hexid}.json", "RepoTags": list(tags) or None, "Layers": layer_names}]
    ).encode()

    def header(name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        return info.tobuf(tarfile.USTAR_FORMAT)

    def pad(size: int) -> bytes:
        return b"\0" * (-size % tarfile.BLOCKSIZE)

    yield header(f"{hexid}.json", len(config)) + config + pad(len(config))
    seen: set[str] = set()
    for diff_id, name in zip(diff_ids, layer_names, strict=True):
        if name in seen:
            continue
        seen.add(name)
        size = store.size(diff_id)
        yield header(name, size)
        h = hashlib.sha256()
        with store.open(diff_id) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                yield chunk
        if h.hexdigest() != check_digest(diff_id):
            # before the manifest: the engine loads nothing from an archive cut here
            raise CheckFailed(
                f"The deposited layer sha256:{check_digest(diff_id)[:12]} of the image "
                f"{image_id[:19]} does not match its SHA-256 (the deposit store "
                f"{store.location} is damaged); nothing was loaded.",
                hint="Restore it from a backup, or import the exported deposit again "
                "(`escrow deposit import` replaces a damaged blob).",
            )
        yield pad(size)
    yield header("manifest.json", len(manifest)) + manifest + pad(len(manifest))
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def load_image(api: Any, store: DepositStore, image_id: str, tags: Iterable[str] = ()) -> None:
    """``docker load`` a stored image; :class:`EngineUnavailable` when the engine refuses."""
    import docker.errors
    import requests.exceptions

    missing = missing_parts(store, image_id)
    if missing:
        raise InputError(
            f"The deposit lacks parts of the image {image_id[:19]} ({', '.join(missing[:3])}).",
            hint="`escrow deposit check INDEX` lists what is missing.",
        )
    try:
        for item in api.load_image(load_archive(store, image_id, list(tags))):
            if isinstance(item, dict) and item.get("error"):
                raise EngineUnavailable(
                    f"The Docker Engine could not load {image_id[:19]}: {item['error']}."
                )
    except docker.errors.APIError as e:
        raise EngineUnavailable(
            f"The Docker Engine could not load {image_id[:19]}: {e.explanation}."
        ) from e
    except requests.exceptions.RequestException as e:
        raise EngineUnavailable(f"The Docker Engine is unreachable: {e}.") from e
    try:
        got = api.inspect_image(image_id)
    except docker.errors.APIError as e:
        raise EngineUnavailable(
            f"The Docker Engine did not keep the loaded image {image_id[:19]}."
        ) from e
    if got.get("Id") != image_id:
        raise EngineUnavailable(f"The Docker Engine loaded {got.get('Id')} for {image_id}.")
