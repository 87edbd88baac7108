"""``escrow rebuild`` and ``escrow diff``: reproduce a build; explain how two builds differ."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from escrow.cli.app import App, Integer, json_option, pass_app


def _items(images: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """The traced input images of a rebuild (``RebuildResult.images``), each with how the
    text names it: ``base image`` or ``COPY --from image``."""
    images = images or {}
    return [("base image", x) for x in images.get("baseImages") or []] + [
        ("COPY --from image", x) for x in images.get("copyFromImages") or []
    ]


def _diff_hint(item: Mapping[str, Any]) -> str:
    """`` `escrow diff A B` shows what changed in it`` when recorded builds made both the
    recorded image and the one its reference names now, as ``escrow diff`` says it."""
    made = [
        ((item.get(side) or {}).get("builtBy") or {}).get("index") for side in ("recorded", "now")
    ]
    if None in made or made[0] == made[1]:
        return ""
    return f"`escrow diff {made[0]} {made[1]}` shows what changed in it"


def _moved_lines(images: Mapping[str, Any] | None) -> list[str]:
    """A line for each recorded input image the engine holds whose reference names another
    image now (the rebuild used the recorded one), naming the builds that made both."""
    from escrow.rebuild.manifests import built_by_text, short_id

    told: dict[tuple[Any, ...], list[str]] = {}
    firsts: dict[tuple[Any, ...], tuple[str, Mapping[str, Any]]] = {}
    for what, item in _items(images):
        if "now" not in item or not item.get("inEngine"):
            continue
        key = (what, item["reference"], item["recorded"]["imageId"], item["now"]["imageId"])
        where = f"line {item['line']}" if "line" in item else f"stage {item['stage']}"
        told.setdefault(key, []).append(where)
        firsts.setdefault(key, (what, item))
    lines = []
    for key, wheres in told.items():
        what, item = firsts[key]
        recorded, now = item["recorded"], item["now"]
        named = (
            f"the reference now names {short_id(now['imageId'])}{built_by_text(now)}"
            if now.get("imageId")
            else "the reference names no image now"
        )
        lines.append(
            f"  {what} {item['reference']} ({', '.join(wheres)}): the recorded "
            f"{short_id(recorded['imageId'])}{built_by_text(recorded)}; {named}"
        )
        hint = _diff_hint(item)
        if hint:
            lines.append(f"    {hint}")
    return lines


def _missing_lines(missing: Mapping[str, Any], images: Mapping[str, Any] | None) -> list[str]:
    """What the ledger says of a base image the engine lacks: the build that made it
    (which ``escrow rebuild`` can rebuild, though as another image), and the one behind
    its reference now."""
    from escrow.rebuild.manifests import built_by_text, short_id

    item = next(
        (
            x
            for _, x in _items(images)
            if not x.get("inEngine")
            and x["reference"] == missing.get("name")
            and x["recorded"]["imageId"] == missing.get("digest")
        ),
        None,
    )
    if item is None:
        return []
    lines = []
    maker = item["recorded"].get("builtBy")
    if maker:
        by = f"entry {maker['index']}" + (f" ({maker['project']})" if maker.get("project") else "")
        lines.append(
            f"    the recorded image was built by {by}: `escrow rebuild {maker['index']}` "
            "rebuilds that image from its own inputs, but as a new one under another ID; "
            f"this rebuild needs the recorded one, which a deposit of entry {maker['index']} "
            "holds too"
        )
    now = item.get("now")
    if now and now.get("imageId") and (maker or now.get("builtBy")):
        hint = _diff_hint(item)
        lines.append(
            f"    {item['reference']} now names {short_id(now['imageId'])}{built_by_text(now)}"
            + (f": {hint}" if hint else "")
        )
    return lines


def _render_verdict(
    statement: dict[str, Any], images: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
) -> str:
    """The verdict for people; ``images`` (``RebuildResult.images``) adds the builds of the
    ledger that made the base images that moved or are missing."""
    from escrow.rebuild.manifests import render_layers

    pred = statement["predicate"]
    verdict = pred["verdict"]
    original, rebuild = pred["original"], pred["rebuild"]
    lines = [
        f"Rebuild of entry {original['index']} (project {pred['project']}): {verdict['overall']}",
        f"  original {original['imageId'][:19]}  rebuilt {(rebuild['imageId'] or '(none)')[:19]}",
    ]
    if rebuild.get("pinning") == "rewritten-from":
        lines.append("  base images pinned by rewriting FROM to the recorded image IDs")
    lines += _moved_lines(images)
    if verdict.get("normalisations"):
        lines.append(f"  normalised: {', '.join(verdict['normalisations'])}")
    missing = verdict.get("missing") or []
    told = set()  # a base two stages share is missing twice, and traced once
    for m in missing:
        lines.append(f"  missing {m['kind']} {m['name']}: {m.get('reason', '')}")
        if m.get("kind") == "base-image" and (m.get("name"), m.get("digest")) not in told:
            told.add((m.get("name"), m.get("digest")))
            lines += _missing_lines(m, images)
    if any(m.get("kind") == "base-image" for m in missing):
        lines.append(
            "  to rebuild it, put the recorded base image back into the engine under its image "
            "ID (`docker load` of a saved copy, or `docker pull` by its repo digest; "
            f"`escrow show {original['index']}` lists both) and run the rebuild again; a build "
            "deposited with its base images has them loaded from the deposit store"
        )
    failure = verdict.get("failure")
    if failure:
        step, code = failure.get("step"), failure.get("exitCode")
        where = "failed" if step is None else f"failed at step {step}"
        # no exit code: the engine failed (or refused the build), not a step's command
        how = "no exit code" if code is None else f"exit code {code}"
        what = failure.get("instruction")
        lines.append(f"  {where}, {how}" + (f": {what}" if what else ""))
        lines.append(f"    {failure.get('message', '')}")
        lines += [f"    | {x}" for x in str(failure.get("logTail") or "").splitlines()[-10:]]
    for c in verdict.get("config") or []:
        lines.append(f"  config {c['field']}: {c['original']!r} -> {c['rebuilt']!r}")
    if verdict.get("layers"):
        lines.append("Layers")
        lines += render_layers(verdict["layers"], True)
    return "\n".join(lines)


@click.command()
@click.argument("index", type=Integer(min=0))
@click.option(
    "--context",
    "context",
    type=click.Path(file_okay=False, path_type=Path),
    help="The build context the entry was built from (checked against its tree digest) "
    "[default: the context from the deposit store].",
)
@click.option(
    "--deposit-store",
    metavar="PATH|oci://HOST[:PORT]/REPO",
    help="The deposit store [default: ESCROW_DEPOSIT_STORE, else deposit_store in "
    "config.json, else ESCROW_HOME/deposits].",
)
@click.option(
    "--imported",
    is_flag=True,
    help="INDEX is an entry of an imported deposit (`escrow deposit import`), i.e. its "
    "index in the ledger it was exported from; it is not in the local ledger.",
)
@click.option(
    "--origin",
    help="With --imported, when deposits of several ledgers hold that index: the ledger's "
    "origin, its verifier key, or the 8 hex digits of its key hash.",
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="Value of a secret build argument (recorded only as a salted digest); repeatable.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="NAME=VALUE",
    help="Value of a secret label (recorded only as a salted digest); repeatable.",
)
@click.option(
    "-t", "--tag", help="Tag for the rebuilt image [default: escrow-rebuild:entry-INDEX]."
)
@click.option("--rm", "remove", is_flag=True, help="Remove the rebuilt image once compared.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where layer archives are spooled while compared [default: the temporary folder].",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress on stderr (warnings, errors and the result still).",
)
@json_option
@pass_app
def rebuild(
    app: App,
    index: int,
    context: Path | None,
    deposit_store: str | None,
    imported: bool,
    origin: str | None,
    build_args: tuple[str, ...],
    labels: tuple[str, ...],
    tag: str | None,
    remove: bool,
    workdir: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Rebuild ledger entry INDEX from its recorded inputs and record a signed verdict.

    The context must have the recorded tree digest (exit 2 otherwise, listing the
    files changed, missing and extra). Without --context everything comes from
    the deposit store (`escrow deposit`): the context is restored from it, base
    images the engine lacks are loaded from it, and the original layers are read
    from it. Base images must be in the engine (or the deposit) under their
    recorded image IDs; the build is pinned to them. A base whose tag has moved
    since, or that the engine lacks, is named with the builds of the ledger that
    made the recorded image and the one behind the tag now. The verdict —
    identical, equivalent, different, not-reproduced or unknown, per layer with
    the evidence — is signed and appended to the ledger.

    Exit codes: 0 identical or equivalent; 1 different, not-reproduced or unknown;
    2 bad input (context differs); 3 engine or database unreachable.
    """
    from escrow.capture.build import parse_build_args, parse_labels
    from escrow.capture.progress import make_progress
    from escrow.rebuild.verify import ContextMismatch, RebuildOptions, rebuild_entry

    if origin is not None and not imported:
        from escrow.errors import UsageError

        # INDEX would be taken as an entry of this ledger: another build than the one meant
        raise UsageError(
            "--origin names the ledger of an imported entry and needs --imported; "
            "nothing was rebuilt.",
            hint="Add --imported for an entry of an imported deposit, or drop --origin for "
            "an entry of this ledger.",
        )
    if tag is not None:
        from escrow.registry.reference import check_build_tag

        check_build_tag(tag)
    options = RebuildOptions(
        context=context,
        build_args=dict(parse_build_args(build_args)),
        labels=dict(parse_labels(labels)),
        tag=tag,
        remove=remove,
        workdir=workdir,
        deposit_store=deposit_store,
        imported=imported,
        origin=origin,
    )
    try:
        result = rebuild_entry(
            app.settings,
            index,
            options,
            progress=make_progress(sys.stderr, quiet=quiet),
            say=app.say,
            quiet=quiet,
        )
    except ContextMismatch as e:
        if as_json:
            app.emit_json({"ok": False, "error": e.diagnostics(), "context": e.changes})
        raise
    doc = {
        "ok": result.verdict.value in ("identical", "equivalent"),
        "verdict": result.verdict.value,
        "entry": result.entry.to_dict() if result.entry is not None else None,
        "rebuiltImage": result.rebuilt_image,
        "baseImages": result.images.get("baseImages", []),
        "copyFromImages": result.images.get("copyFromImages", []),
        "statement": result.statement,
    }
    if as_json:
        app.emit_json(doc)
    else:
        app.out(_render_verdict(result.statement, result.images))
        if result.entry is not None:
            app.out(
                f"Verdict recorded as entry {result.entry.index} "
                f"(leaf hash {result.entry.leaf_hash[:16]}…)."
            )
    if not doc["ok"]:
        from escrow.errors import CheckFailed

        raise CheckFailed(
            f"The rebuild of entry {index} is {result.verdict.value}"
            + (f"; the verdict is entry {result.entry.index}." if result.entry else ".")
        )


@click.command()
@click.argument("a", type=Integer(min=0))
@click.argument("b", type=Integer(min=0))
@click.option(
    "--files",
    is_flag=True,
    help="Compare the files of differing layers (both images must still be in the engine).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where layer archives are spooled while compared [default: the temporary folder].",
)
@json_option
@pass_app
def diff(app: App, a: int, b: int, files: bool, workdir: Path | None, as_json: bool) -> None:
    """What changed between ledger entries A and B (two builds of the same recipe, say):
    inputs (context files, Dockerfile lines, base images behind the same tag, build
    args), steps, image config and layers; with --files, the files in differing layers.
    """
    from escrow.blobs import BlobStore
    from escrow.documents.types import BUILD_MANIFEST, REBUILD_VERIFICATION, SCHEMA_NAMES
    from escrow.errors import InputError
    from escrow.rebuild.manifests import Side, diff_manifests, render_diff, trace_images
    from escrow.verification import built_by

    ledger = app.ledger(readonly=True)
    sides = []
    for index in (a, b):
        entry = ledger.get(index)
        if entry.predicate_type == REBUILD_VERIFICATION:
            original = (entry.statement()["predicate"].get("original") or {}).get("index")
            raise InputError(
                f"Entry {index} is the rebuild verdict of entry {original}, not a build.",
                hint=f"`escrow show {index}` prints its layer-by-layer comparison with "
                f"entry {original}; `escrow diff` compares two builds.",
            )
        if entry.predicate_type != BUILD_MANIFEST:
            kind = SCHEMA_NAMES.get(entry.predicate_type, entry.predicate_type)
            raise InputError(
                f"Entry {index} is a {kind}, not a build manifest.",
                hint="`escrow log --kind build-manifest` lists the builds.",
            )
        sides.append(Side(index, entry.statement()["predicate"]))
    blobs = BlobStore(app.settings.blobs_dir)
    if not files:
        doc = diff_manifests(sides[0], sides[1], blobs=blobs)
    else:
        from escrow.capture.engine import DockerEngine
        from escrow.rebuild.compare import wanted_layers
        from escrow.rebuild.engine import EngineLayers

        # the layers diff_manifests compares file by file (matched by their commands)
        want_a, want_b = wanted_layers(sides[0].predicate, sides[1].predicate, align=True)
        images = {
            "original": (sides[0].predicate.get("image") or {}).get("id"),
            "rebuilt": (sides[1].predicate.get("image") or {}).get("id"),
        }
        engine = DockerEngine()
        engine.facts()  # exit 3 now if the engine is unreachable
        with EngineLayers(
            engine.api,
            images,
            {"original": want_a, "rebuilt": want_b},
            workdir=workdir,
            endpoint=engine.endpoint,
        ) as source:
            if want_a or want_b:
                source.prefetch()
            doc = diff_manifests(sides[0], sides[1], blobs=blobs, source=source, progress=app.say)
    trace_images(doc, lambda image, before: built_by(ledger, image, before))
    if as_json:
        app.emit_json(doc)
    else:
        app.out(render_diff(doc))
