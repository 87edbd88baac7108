"""Assemble the build manifest (an in-toto Statement with the build-manifest v1 predicate).

The shape is ``schemas/build-manifest.schema.json`` (the authority) and
``tests/assets/build-manifest.example.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from escrow import __version__
from escrow.blobs import BlobStore
from escrow.capture.engine import Engine
from escrow.capture.secrets import Redactor
from escrow.documents.types import BUILD_MANIFEST, STATEMENT_TYPE
from escrow.text import LOG_TAIL_CHARS, cut_tail

#: the runtime config fields recorded under ``image.config``
RUNTIME_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "Shell",
    "OnBuild",
)

#: lines of a failing step's log kept in ``build.failure.logTail``
LOG_TAIL_LINES = 20


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8: bytes that were not (an argv word, a path, kept by Python
    as lone surrogates) shown as ``\\xNN``; a canonical JSON document refuses them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate no undecodable byte gave
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def utf8_document(doc: Any) -> Any:
    """A JSON document with every string (keys too) made valid UTF-8 by :func:`utf8_text`."""
    if isinstance(doc, str):
        return utf8_text(doc)
    if isinstance(doc, list):
        return [utf8_document(v) for v in doc]
    if isinstance(doc, dict):
        return {utf8_text(k) if isinstance(k, str) else k: utf8_document(v) for k, v in doc.items()}
    return doc


def statement(subject: list[dict[str, Any]], predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": BUILD_MANIFEST,
        "predicate": predicate,
    }


def image_subject(image: Mapping[str, Any], name: str | None = None) -> list[dict[str, Any]]:
    """The subject of a succeeded build: the image, named by its first tag."""
    tags = list(image.get("tags") or [])
    subject: dict[str, Any] = {
        "name": name or (tags[0] if tags else str(image["id"])),
        "digest": {"sha256": str(image["id"]).removeprefix("sha256:")},
    }
    return [subject]


def recipe_subject(path: str, sha256: str) -> list[dict[str, Any]]:
    """The subject of a failed build: its recipe (there is no image)."""
    return [{"name": f"dockerfile:{path}", "digest": {"sha256": sha256}}]


def log_ref(blobs: BlobStore, data: bytes) -> dict[str, Any]:
    """Store a (scrubbed) log in the blob store; the manifest keeps its digest and size."""
    return {"sha256": blobs.put(bytes(data)), "size": len(data)}


def build_section(
    *,
    build_id: str,
    project: str,
    kind: str,
    status: str,
    started_on: str,
    finished_on: str,
    source: Mapping[str, Any] | None,
    phoenix: bool = False,
    pulled_base: bool = False,
) -> dict[str, Any]:
    """``predicate.build``.  ``phoenix``: built with no cache and its intermediates
    removed (``escrow build``); the context is clean unless the ``source`` revision is
    dirty."""
    return {
        "id": build_id,
        "project": project,
        "kind": kind,
        "status": status,
        "startedOn": started_on,
        "finishedOn": finished_on,
        "phoenix": {
            "noCache": phoenix,
            "removeIntermediates": phoenix,
            "pulledBase": pulled_base,
            "cleanContext": not (source or {}).get("dirty", False),
        },
    }


def log_tail(data: bytes, lines: int = LOG_TAIL_LINES, chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``lines`` lines of a (scrubbed) log, at most ``chars`` characters of
    them (the cut marked with "…"): ``build.failure.logTail``.  A step that failed after
    printing one long line (a minified file, a progress bar) had it all signed into the
    manifest, and a pack showing a tail of a megabyte never finished laying it out; the
    whole log is the step's log blob (`escrow logs INDEX STEP`)."""
    text = data.decode("utf-8", errors="replace")
    return cut_tail("\n".join(text.rstrip("\n").splitlines()[-lines:]), chars)


def builder_section(
    engine_facts: dict[str, Any], ci: dict[str, Any] | None, builder_id: str
) -> dict[str, Any]:
    builder: dict[str, Any] = {
        "id": builder_id,
        "escrowVersion": __version__,
        "engine": engine_facts,
    }
    if ci:
        builder["ci"] = ci
    return builder


def _tags(values: Any) -> list[str]:
    return [str(t) for t in (values or []) if t and str(t) != "<none>:<none>"]


def _repo_digests(values: Any) -> list[str]:
    return [str(t) for t in (values or []) if t and not str(t).startswith("<none>@")]


def runtime_config(config: Mapping[str, Any] | None, redactor: Redactor) -> dict[str, Any]:
    config = config or {}
    out: dict[str, Any] = {}
    for key in RUNTIME_FIELDS:
        value = config.get(key)
        if key == "Env":
            value = redactor.env(value)
        elif key == "Labels":
            value = redactor.labels(value)
        out[key] = value
    return out


def image_section(
    inspect: Mapping[str, Any], raw_config: Mapping[str, Any], redactor: Redactor
) -> dict[str, Any]:
    """``predicate.image``: ID, tags, repo digests, created, platform, size, runtime config."""
    cfg = raw_config.get("config") or inspect.get("Config") or {}
    image: dict[str, Any] = {
        "id": str(inspect["Id"]),
        "tags": _tags(inspect.get("RepoTags")),
        "repoDigests": _repo_digests(inspect.get("RepoDigests")),
        "created": str(raw_config.get("created") or inspect.get("Created") or ""),
        "os": str(raw_config.get("os") or inspect.get("Os") or ""),
        "architecture": str(raw_config.get("architecture") or inspect.get("Architecture") or ""),
        "size": int(inspect.get("Size") or 0),
        "config": runtime_config(cfg, redactor),
    }
    secrets = redactor.config_digests(cfg)
    if secrets:  # the values the config holds as "[secret NAME]", checkable
        image["secrets"] = secrets
    variant = raw_config.get("variant") or inspect.get("Variant")
    if variant:
        image["variant"] = str(variant)
    for key in ("author", "comment"):
        if raw_config.get(key):
            image[key] = redactor.text(str(raw_config[key]))
    if not image["created"]:
        image.pop("created")
    return image


def layers_and_history(
    raw_config: Mapping[str, Any],
    history_sizes: list[dict[str, Any]] | None,
    redactor: Redactor,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Map ``rootfs.diff_ids`` to the ``history`` entries that made them.

    Entries with ``empty_layer`` make no layer; every other entry, in order,
    made the next diff ID.  ``history_sizes`` is the history endpoint's list
    (oldest first), which gives each non-empty entry's layer size.
    """
    diff_ids = [str(d) for d in (raw_config.get("rootfs") or {}).get("diff_ids") or []]
    raw_history = list(raw_config.get("history") or [])
    sizes_aligned = history_sizes is not None and len(history_sizes) == len(raw_history)
    history: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    for h_index, entry in enumerate(raw_history):
        empty = bool(entry.get("empty_layer", False))
        created_by = redactor.text(str(entry.get("created_by") or ""))
        comment = entry.get("comment")
        item: dict[str, Any] = {
            "created": entry.get("created"),
            "createdBy": created_by,
            "emptyLayer": empty,
            "comment": redactor.text(str(comment)) if comment else None,
        }
        if entry.get("author"):
            item["author"] = redactor.text(str(entry["author"]))
        history.append(item)
        if empty or len(layers) >= len(diff_ids):
            continue
        size: int | None = None
        if sizes_aligned and history_sizes is not None:
            size = int(history_sizes[h_index].get("Size") or 0)
        layer: dict[str, Any] = {
            "index": len(layers),
            "diffId": diff_ids[len(layers)],
            "size": size,
            "historyIndex": h_index,
            "createdBy": created_by,
        }
        if item["comment"]:
            layer["comment"] = item["comment"]
        layers.append(layer)
    # layers no history entry accounts for (images imported without history)
    layers.extend(
        {"index": i, "diffId": diff_ids[i], "size": None, "historyIndex": None, "createdBy": None}
        for i in range(len(layers), len(diff_ids))
    )
    return layers, history


def capture_image_facts(
    engine: Engine,
    image_ref: str,
    redactor: Redactor,
    *,
    history: list[dict[str, Any]] | None = None,
    config_of: Callable[[str], dict[str, Any]] | None = None,
    inspected: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]] | None:
    """``(image, layers, history)`` of an image in the engine, or ``None`` if it is missing.

    ``history`` is the history endpoint's answer when the caller already has it;
    ``config_of(image_id)`` gives the raw config another way than
    :meth:`Engine.image_config` (``escrow build`` reads it from its deposit);
    ``inspected`` is the engine's inspect of ``image_ref`` when the caller already has it.
    """
    inspect = inspected if inspected is not None else engine.inspect_image(image_ref)
    if inspect is None:
        return None
    image_id = str(inspect["Id"])
    raw = config_of(image_id) if config_of is not None else engine.image_config(image_id)
    sizes = history if history else engine.history(image_id)
    image = image_section(inspect, raw, redactor)
    layers, history = layers_and_history(raw, sizes, redactor)
    return image, layers, history


def recipe_section(path: str, data: bytes, redactor: Redactor) -> dict[str, Any]:
    text = data.decode("utf-8", errors="replace")
    return {
        "path": path,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "text": redactor.text(text),
    }
