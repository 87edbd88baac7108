"""``escrow capture IMAGE``: record an image that something else built.

A scripted build that runs commands in a container and commits each stage
(``docker commit``), another build tool, an imported image: escrow records
what the engine holds — config, the full history (each commit's command or
comment), layers mapped to history entries — and the inputs when given.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from escrow.blobs import BlobStore
from escrow.capture import dockerfile as dfparse
from escrow.capture.build import default_project, resolve_bases, resolve_copy_sources
from escrow.capture.context import escrow_folders_in, make_context
from escrow.capture.engine import Engine
from escrow.capture.manifest import (
    build_section,
    builder_section,
    capture_image_facts,
    image_subject,
    recipe_section,
    statement,
    utf8_document,
)
from escrow.capture.secrets import Redactor
from escrow.capture.source import builder_id, ci_facts, git_source
from escrow.errors import InputError
from escrow.times import utc_now

#: an image ID or ID prefix, with or without ``sha256:``
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")


def _untagged_hint(ref: str, engine: Engine | None) -> str | None:
    """For a name without a tag that the engine does not hold (it means ``NAME:latest``):
    the tags of that repository the engine does hold, as the hint to give."""
    from escrow.registry.reference import Reference

    if engine is None or "@" in ref or _IMAGE_ID.match(ref):
        return None
    try:
        parsed = Reference.parse(ref)
    except InputError:
        return None
    if parsed.tag is not None:
        return None
    name = ref.strip()
    try:  # the SDK's images list, filtered by the engine to that repository
        images = engine.api.images(name=name)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - only a better hint is lost
        return None
    tags = sorted(
        {t for i in images for t in i.get("RepoTags") or [] if t.rpartition(":")[0] == name}
    )
    if not tags:
        return None
    shown = ", ".join(tags[:10]) + (f" and {len(tags) - 10} more" if len(tags) > 10 else "")
    return f"Without a tag it means {name}:latest; the engine holds {shown}."


def image_not_found(ref: str, engine: Engine | None = None) -> InputError:
    if _IMAGE_ID.match(ref) and len(ref.removeprefix("sha256:")) < 64:
        # the engine answers "no such image" for a prefix of several IDs too
        return InputError(
            f"The image {ref} does not exist in the Docker Engine, or more than one image "
            "ID begins with it.",
            hint="Give more of the ID's digits (`docker images --no-trunc` lists them), "
            "or the image's name.",
        )
    return InputError(
        f"The image {ref!r} does not exist in the Docker Engine."
        if ref != ref.strip() or not ref.isprintable()
        else f"The image {ref} does not exist in the Docker Engine.",
        hint=_untagged_hint(ref, engine)
        or "Check the name with `docker images`, or build it first.",
    )


def check_image_ref(ref: str) -> None:
    """Refuse (exit 2) what is neither an image ID (prefix) nor an image reference, before
    the engine is asked: an empty name or ``..`` would otherwise reach another endpoint
    of the engine's API and be reported as the engine failing."""
    if _IMAGE_ID.match(ref):
        return
    from escrow.registry.reference import Reference

    try:
        Reference.parse(ref)
    except InputError:
        pass
    else:
        parts = ref.partition("@")[0].split("/")
        if ref == ref.strip() and not any(p in ("", ".", "..") for p in parts):
            return
    raise InputError(
        f"{ref!r} is not an image name or ID.",
        hint="Give NAME[:TAG], NAME@sha256:DIGEST or an image ID (`docker images` lists them).",
    )


def capture_inputs(
    context: Path | None,
    dockerfile: Path | None,
    engine: Engine,
    blobs: BlobStore,
    redactor: Redactor,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``inputs`` from an optional context folder and recipe file; and the git source."""
    inputs: dict[str, Any] = {"buildArgs": [], "baseImages": []}
    source: dict[str, Any] | None = None
    if context is not None:
        leave_out = escrow_folders_in(context, blobs.root.parent)
        with make_context(
            context,
            dockerfile,
            require_dockerfile=False,
            embed_dockerfile=False,
            keep_archive=False,
            leave_out=leave_out,
        ) as ctx:
            inputs["context"] = ctx.to_manifest(blobs)
            if ctx.dockerfile_bytes is not None and ctx.dockerfile_path is not None:
                inputs["recipe"] = recipe_section(
                    ctx.dockerfile_path, ctx.dockerfile_bytes, redactor
                )
        source = git_source(
            Path(context),
            leave_out=leave_out,
            recipe=Path(dockerfile) if dockerfile is not None else None,
            environ=environ,
        )
    elif dockerfile is not None:
        try:
            data = Path(dockerfile).read_bytes()
        except OSError as e:
            raise InputError(f"Cannot read the recipe {dockerfile}: {e.strerror}.") from e
        inputs["recipe"] = recipe_section(str(dockerfile), data, redactor)
        source = git_source(Path(dockerfile).resolve().parent, environ=environ)
    recipe = inputs.get("recipe")
    if recipe is not None:
        try:
            df = dfparse.parse(str(recipe.get("text") or ""))
        except InputError:
            df = None  # a build script, not a Dockerfile
        if df is not None and df.stages:
            inputs["baseImages"], _ = resolve_bases(df, engine, strict=False)
            copied = resolve_copy_sources(df, engine, strict=False)
            if copied:
                inputs["copyFromImages"] = copied
    if source is not None:
        inputs["source"] = source
    return inputs, source


def capture_image(
    image: str,
    *,
    engine: Engine,
    blobs: BlobStore,
    context: Path | None = None,
    dockerfile: Path | None = None,
    project: str | None = None,
    redactor: Redactor | None = None,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The build-manifest Statement of ``image`` as the engine holds it."""
    check_image_ref(image)
    redactor = redactor or Redactor()
    started_on = utc_now()
    engine_facts = engine.facts()
    facts = capture_image_facts(engine, image, redactor)
    if facts is None:
        raise image_not_found(image, engine)
    image_doc, layers, history = facts
    inputs, source = capture_inputs(context, dockerfile, engine, blobs, redactor, environ)
    if project is None:
        tags = image_doc["tags"]
        project = (
            default_project(context)
            if context is not None
            else _repo_name(image if image in tags or not tags else tags[0])
        )
    ci = ci_facts(environ)
    predicate: dict[str, Any] = {
        "build": build_section(
            build_id=str(uuid.uuid4()),
            project=project,
            kind="image",
            status="succeeded",
            started_on=started_on,
            finished_on=utc_now(),
            source=source,
        ),
        "builder": builder_section(engine_facts, ci, builder_id(ci)),
        "inputs": inputs,
        "steps": [],
        "image": image_doc,
        "layers": layers,
        "history": history,
    }
    name = image if image in image_doc["tags"] else None
    # a path (of the context, the recipe) that is not UTF-8 is recorded with ``\xNN`` escapes
    doc = redactor.document(statement(image_subject(image_doc, name), predicate))
    return dict(utf8_document(doc))


def _repo_name(ref: str) -> str:
    """``registry:5000/team/app:tag`` → ``app`` (the default project of a capture)."""
    if _IMAGE_ID.match(ref):  # an image ID, or the first digits of one
        return "default"
    last = ref.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0] or "default"
