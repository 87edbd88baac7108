"""``escrow rebuild``: rebuild a recorded phoenix build and record a signed verdict.

1. **Inputs.**  The context directory must have the recorded tree digest
   (computed by :func:`escrow.capture.context.make_context`, the very function
   that recorded it), else :class:`ContextMismatch` (exit 2) lists the files
   changed, missing and extra.  Every base image must be in the engine under
   its recorded image ID, and secret build arguments (recorded only as salted
   digests) must be given again and match; otherwise the verdict is
   ``unknown``, naming what is missing.
2. **Build.**  A phoenix build through :func:`escrow.capture.build.phoenix_build`
   with the recorded Dockerfile, build args and target.  Base images are pinned
   by image ID: when every recorded reference still names its recorded image,
   the recorded Dockerfile is built as it is; when a reference has moved (or is
   gone) the ``FROM`` lines are rewritten to the recorded image IDs
   (``FROM sha256:…``) in a copy of the Dockerfile kept outside the context —
   the engine is never re-tagged, so builds running at the same time are not
   affected.  Either way the image IDs the build actually started from are
   checked against the record afterwards.
3. **Compare and record.**  Image ID, runtime config field by field, diff IDs in
   order, files of differing layers (:mod:`escrow.rebuild.compare`).  The
   verdict is a rebuild-verification Statement, signed with the build key and
   appended to the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escrow.documents.types import BUILD_MANIFEST, REBUILD_VERIFICATION, STATEMENT_TYPE
from escrow.errors import EscrowError, InputError, UsageError
from escrow.rebuild.compare import ImageComparison, Verdict, compare_images, wanted_layers
from escrow.rebuild.engine import EngineLayers
from escrow.rebuild.manifests import diff_file_lists, file_list

if TYPE_CHECKING:
    from escrow.blobs import BlobStore
    from escrow.capture.engine import DockerEngine
    from escrow.capture.progress import Progress
    from escrow.capture.secrets import Redactor
    from escrow.config import Settings
    from escrow.ledger.store import Entry, Ledger
    from escrow.server.client import RemoteLedger

_RECORDED_BY = {"image": "capture", "command": "record"}
#: how to make a comparable entry again, by the command that recorded one
_AGAIN_BY = {
    "capture": "Build the same recipe with `escrow build`",
    "record": "Run the command again with `escrow record`",
}

#: tag given to rebuilt images unless another is asked for
DEFAULT_TAG = "escrow-rebuild:entry-{index}"


class ContextMismatch(InputError):
    """The context given for a rebuild is not the recorded one."""

    def __init__(self, message: str, *, changes: dict[str, Any], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.changes = changes


@dataclass
class RebuildOptions:
    context: Path | None = None
    #: build argument values given again (secret ones are recorded only as digests)
    build_args: dict[str, str] = field(default_factory=dict)
    #: label values given again (secret ones are recorded only as digests)
    labels: dict[str, str] = field(default_factory=dict)
    tag: str | None = None
    remove: bool = False
    workdir: Path | None = None
    #: the deposit store (``None``: ``--deposit-store`` / ``ESCROW_DEPOSIT_STORE`` / default)
    deposit_store: str | None = None
    #: take the entry from an imported deposit (its index in the ledger it came from)
    imported: bool = False
    #: with ``imported``: the origin of that ledger, when several were imported
    origin: str | None = None


@dataclass
class RebuildResult:
    statement: dict[str, Any]
    verdict: Verdict
    comparison: ImageComparison | None = None
    entry: Entry | None = None
    rebuilt_image: str | None = None
    pinned_from: str = "as-recorded"
    #: the recorded input images and the builds of the ledger that made them
    #: (:func:`trace_bases`): ``baseImages`` and ``copyFromImages``
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# the original entry


def load_original(ledger: Ledger | RemoteLedger, index: int) -> tuple[Entry, dict[str, Any]]:
    """The entry to rebuild and its build-manifest predicate, after checking its signature."""
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

    entry = ledger.get(index)
    if entry.predicate_type == REBUILD_VERIFICATION:
        verified = (entry.statement()["predicate"].get("original") or {}).get("index")
        raise InputError(
            f"Entry {index} is the rebuild verdict of entry {verified}, not a build.",
            hint=f"`escrow rebuild {verified}` rebuilds that build again; "
            f"`escrow show {index}` prints this verdict.",
        )
    if entry.predicate_type != BUILD_MANIFEST:
        raise InputError(
            f"Entry {index} is not a build manifest ({entry.predicate_type}).",
            hint="Rebuild an entry recorded by `escrow build`; `escrow log` lists them.",
        )
    # stored bytes that no longer parse were changed after the append: the statement says
    # so (tampering, exit 1, naming the entry) before the signature is checked
    predicate: dict[str, Any] = entry.statement()["predicate"]
    key = ledger.key(entry.signer)
    Envelope.from_bytes(entry.envelope).verify([PublicKey.from_pem(key.public_pem)])
    build = predicate.get("build") or {}
    if build.get("kind", "dockerfile") != "dockerfile":
        how = _RECORDED_BY.get(str(build.get("kind")), "?")
        raise InputError(
            f"Entry {index} was recorded by `escrow {how}`, "
            "not by a Dockerfile build escrow ran, so there is no recipe to rebuild.",
            hint=_AGAIN_BY.get(how, "Build it again with `escrow build`")
            + f" and compare the two with `escrow diff {index} NEW` (NEW: the new entry's index).",
        )
    if build.get("status") != "succeeded" or not (predicate.get("image") or {}).get("id"):
        raise InputError(
            f"Entry {index} is a failed build; there is no image to reproduce.",
            hint="Rebuild an entry whose build succeeded.",
        )
    return entry, predicate


# ---------------------------------------------------------------------------
# inputs


def _outside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    return False


def recipe_file(
    predicate: Mapping[str, Any], context: Path, scratch: Path, deposited: bytes | None = None
) -> Path:
    """The Dockerfile to build: in the context, or (when it was outside) the recorded text
    (or the ``deposited`` bytes)."""
    recipe = predicate["inputs"]["recipe"]
    path = str(recipe["path"])
    if not os.path.isabs(path):
        return context / path
    text = recipe.get("text")
    data = deposited if deposited is not None else None if text is None else str(text).encode()
    if data is None or hashlib.sha256(data).hexdigest() != recipe["sha256"]:
        raise InputError(
            f"The Dockerfile of this build ({path}, outside the context) was recorded with "
            "secrets redacted or without its text, so it cannot be rebuilt from the ledger.",
            hint="Keep Dockerfiles with secret literals inside the build context.",
        )
    out = scratch / "recipe" / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def check_context(
    predicate: Mapping[str, Any], context: Path, dockerfile: Path, blobs: BlobStore | None
) -> str:
    """Raise :class:`ContextMismatch` unless ``context`` has the recorded tree digest."""
    from escrow.capture.context import make_context

    recorded = predicate["inputs"]["context"]
    if not dockerfile.is_file():
        rel = str(predicate["inputs"]["recipe"]["path"])
        raise ContextMismatch(
            f"The build context {context} is not the recorded one: {rel} is missing.",
            changes={"changed": [], "missing": [rel], "extra": []},
            hint="Pass the context the build used (--context DIR).",
        )
    left_out = tuple(recorded.get("excluded") or ())  # escrow's folders, as the build did
    # only hashed: the build sends its own archive
    with make_context(context, dockerfile, leave_out=left_out, keep_archive=False) as ctx:
        digest, files = ctx.tree_digest, ctx.files
    if digest == recorded.get("treeDigest"):
        return digest
    listed = file_list(recorded, blobs)
    if listed is None:
        raise ContextMismatch(
            f"The build context {context} is not the recorded one (tree digest "
            f"{digest[:12]}… instead of {str(recorded.get('treeDigest'))[:12]}…); the recorded "
            "file list is not available to say which files differ.",
            changes={"treeDigest": digest, "recorded": recorded.get("treeDigest")},
        )
    d = diff_file_lists(listed, files)
    changes = {
        "changed": d["changed"],
        "missing": d["removed"],
        "extra": d["added"],
        "treeDigest": digest,
        "recorded": recorded.get("treeDigest"),
    }
    summary = mismatch_summary(changes) or (
        f"its tree digest is {digest[:12]}… instead of {str(recorded.get('treeDigest'))[:12]}…, "
        "though no file in the recorded list differs"
    )
    raise ContextMismatch(
        f"The build context {context} differs from the recorded one: {summary}.",
        changes=changes,
        hint="Restore the files as they were at build time, or pass the right --context.",
    )


#: paths named per group (changed, missing, extra) in a context mismatch message
MISMATCH_LISTED = 10


def mismatch_summary(changes: Mapping[str, Any], listed: int = MISMATCH_LISTED) -> str:
    """The files of a context mismatch for people, in the words of its JSON (``changes``):
    ``changed: app.sh (content), run.sh (mode); missing: keep.txt; extra: new.txt``.

    A changed file carries its kinds as the JSON lists them (``type``, ``content``,
    ``mode``, ``link`` — the symlink target); a missing file is one the recorded context
    had (removed since), an extra one is new.  Each group names ``listed`` paths and says
    how many more there are."""

    def group(name: str, items: Sequence[str]) -> str:
        more = len(items) - listed
        return f"{name}: " + ", ".join(items[:listed]) + (f" and {more} more" if more > 0 else "")

    from escrow.text import one_line  # a name with a line break stays in the sentence

    parts = []
    changed = [
        f"{one_line(c['path'])} ({', '.join(c['kinds'])})" for c in changes.get("changed") or []
    ]
    if changed:
        parts.append(group("changed", changed))
    if changes.get("missing"):
        parts.append(group("missing", [one_line(str(p)) for p in changes["missing"]]))
    if changes.get("extra"):
        parts.append(group("extra", [one_line(str(p)) for p in changes["extra"]]))
    return "; ".join(parts)


@dataclass
class BasePlan:
    missing: list[dict[str, Any]]
    rewrite: bool
    pins: list[dict[str, Any]]
    #: every recorded input image: ``stage``, ``reference``, ``imageId`` (the ``line`` of
    #: a ``COPY --from``), whether the engine holds it (``inEngine``) and the image its
    #: reference names now (``referenceNow``, ``None`` for none)
    images: list[dict[str, Any]] = field(default_factory=list)


def check_bases(predicate: Mapping[str, Any], engine: DockerEngine) -> BasePlan:
    """Every recorded input image (each stage's base, each ``COPY --from`` image) present
    under its image ID; does any reference need pinning?  A pin of a ``COPY --from`` image
    carries the ``line`` of its ``COPY``."""
    missing: list[dict[str, Any]] = []
    pins: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    rewrite = False
    inputs = predicate["inputs"]
    for base in [*(inputs.get("baseImages") or []), *(inputs.get("copyFromImages") or [])]:
        image_id = base.get("imageId")
        if not image_id:
            continue  # scratch or an earlier stage
        ref = str(base.get("reference"))
        copy = base.get("line") is not None
        present = engine.inspect_image(str(image_id)) is not None
        current = engine.inspect_image(ref)
        now = str(current["Id"]) if current else None
        image = {"stage": base.get("stage"), "reference": ref, "imageId": str(image_id)}
        if copy:
            image["line"] = int(base["line"])
        images.append({**image, "inEngine": present, "referenceNow": now})
        if not present:
            where = f" (COPY --from on line {base['line']})" if copy else ""
            missing.append(
                {
                    "kind": "base-image",
                    "name": ref,
                    "digest": str(image_id),
                    "reason": f"image {str(image_id)[:19]}{where} is not in the Docker Engine",
                }
            )
            continue
        if now != image_id:
            rewrite = True
        pin = {"stage": base.get("stage"), "reference": ref, "imageId": image_id}
        if copy:
            pin["line"] = int(base["line"])
        pins.append({**pin, "referenceNow": now})
    return BasePlan(missing, rewrite, pins, images)


def trace_bases(
    ledger: Ledger | RemoteLedger | None, index: int, images: Sequence[Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The recorded input images of entry ``index`` (:attr:`BasePlan.images`) as
    ``--json`` gives them: ``baseImages`` and ``copyFromImages``, each with its ``stage``
    (and the ``line`` of its ``COPY``), ``reference``, ``inEngine``, the ``recorded``
    image and, when the reference names another image now (or none), the ``now`` one.
    Each image a succeeded build of ``ledger`` made carries ``builtBy`` (``index``,
    ``project``), as ``escrow diff`` names it (:func:`escrow.verification.built_by`): for
    the recorded image the first such build before entry ``index`` (a phoenix build of
    the base), for the one behind the reference now any build so far.  Without a ledger
    (an imported entry, whose indexes are another ledger's) no maker is named."""
    from escrow.verification import built_by

    size = ledger.size() if ledger is not None else 0
    makers: dict[tuple[str, int], dict[str, Any] | None] = {}

    def side(image_id: str | None, before: int) -> dict[str, Any]:
        out: dict[str, Any] = {"imageId": image_id}
        if ledger is not None and image_id:
            if (image_id, before) not in makers:
                makers[(image_id, before)] = built_by(ledger, image_id, before)
            maker = makers[(image_id, before)]
            if maker is not None:
                out["builtBy"] = maker
        return out

    traced: dict[str, list[dict[str, Any]]] = {"baseImages": [], "copyFromImages": []}
    for image in images:
        item: dict[str, Any] = {"stage": image.get("stage")}
        if "line" in image:
            item["line"] = image["line"]
        item.update(
            reference=image["reference"],
            inEngine=bool(image["inEngine"]),
            recorded=side(str(image["imageId"]), index),
        )
        if image["referenceNow"] != image["imageId"]:
            item["now"] = side(image["referenceNow"], size)
        traced["copyFromImages" if "line" in image else "baseImages"].append(item)
    return traced


def check_build_args(
    predicate: Mapping[str, Any], given: Mapping[str, str]
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The build arguments to pass, and those missing (secret ones not given again)."""
    return _given_again(
        list(predicate["inputs"].get("buildArgs") or []),
        given,
        kind="build-arg",
        what="build argument",
        option="--build-arg",
        unknown_text="given to the recorded build",
    )


def recorded_labels(
    predicate: Mapping[str, Any], given: Mapping[str, str] | None = None
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The ``--label`` values of the recorded build, and those missing (secret ones, or a
    URL whose credentials were stripped, not given again with ``escrow rebuild --label``)."""
    return _given_again(
        list(predicate["inputs"].get("labels") or []),
        dict(given or {}),
        kind="label",
        what="label",
        option="--label",
        unknown_text="given to the recorded build",
    )


def _given_again(
    recorded: list[Mapping[str, Any]],
    given: Mapping[str, str],
    *,
    kind: str,
    what: str,
    option: str,
    unknown_text: str,
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The recorded ``{name, value}`` inputs to give the rebuild, and those missing.

    One recorded only as a salted digest (a secret, or a URL whose credentials were
    stripped) must be given again in ``given`` and match its digest; a plain one is
    taken as recorded, and given again only with the same value."""
    unknown = sorted(set(given) - {str(r["name"]) for r in recorded})
    if unknown:
        raise UsageError(
            f"The {what} {unknown[0]} was not {unknown_text}."
            if len(unknown) == 1
            else f"The {what}s {', '.join(unknown)} were not {unknown_text}.",
            hint=f"Only give {option} for the secret {what}s the build was recorded with.",
        )
    out: list[tuple[str, str]] = []
    missing: list[dict[str, Any]] = []
    for r in recorded:
        name = str(r["name"])
        hidden = bool(r.get("secret") or r.get("credentialsStripped") or r.get("value") is None)
        if not hidden:
            if name in given and given[name] != r["value"]:
                raise UsageError(
                    f"The {what} {name} was recorded as {r['value']!r}; "
                    "a rebuild uses the recorded value.",
                    hint=f"Leave out {option} {name}.",
                )
            out.append((name, str(r["value"])))
            continue
        if name not in given:
            missing.append(
                {
                    "kind": kind,
                    "name": name,
                    "reason": f"recorded as a salted digest; give it with {option}",
                }
            )
            continue
        value = given[name]
        if "salt" in r and "sha256" in r:
            digest = hashlib.sha256(bytes.fromhex(str(r["salt"])) + value.encode()).hexdigest()
            if digest != r["sha256"]:
                raise InputError(
                    f"The value given for the {what} {name} is not the recorded one "
                    "(its salted SHA-256 differs).",
                    hint="Give the value the original build used.",
                )
        out.append((name, value))
    return out, missing


#: how a recorded text names a secret value it hid (``Redactor.placeholder``)
_PLACEHOLDER = re.compile(r"\[secret ([^\]\s]+)\]")


def rebuild_redactor(home: Path | None, predicate: Mapping[str, Any]) -> Redactor:
    """The redactor of a rebuild: the configured patterns, and every name the original
    build kept secret (``--secret NAME`` included, which no pattern may match), so that
    the rebuild hides the same values, records the same texts, and leaks none into its
    verdict."""
    from escrow.capture.secrets import Redactor, secret_patterns

    inputs = predicate.get("inputs") or {}
    names = {
        str(r["name"])
        for key in ("buildArgs", "labels")
        for r in inputs.get(key) or []
        if r.get("secret")
    }
    texts = [str(h.get("createdBy") or "") for h in predicate.get("history") or []]
    texts += [str(s.get("instruction") or "") for s in predicate.get("steps") or []]
    for text in texts:
        names.update(_PLACEHOLDER.findall(text))
    return Redactor(secret_patterns(home), sorted(names))


def rewrite_from_lines(
    text: str,
    build_args: Mapping[str, str],
    ids: Mapping[int, str],
    copies: Mapping[int, str] | None = None,
) -> str:
    """Rewrite the ``FROM`` of each stage index in ``ids`` to that image ID, and the
    ``COPY --from=IMAGE`` on each line in ``copies`` to that image ID."""
    from escrow.capture import dockerfile as dfparse

    copies = copies or {}
    df = dfparse.parse(text, build_args)
    lines = text.split("\n")
    starts = sorted(ins.line for ins in df.instructions)
    for src in df.copy_sources():
        if src.instruction.line not in copies:
            continue
        # the flag, whole, on one of the physical lines of its COPY (continued or not)
        first = src.instruction.line
        after = next((n for n in starts if n > first), len(lines) + 1)
        hit = next(
            (
                (n, pos)
                for n in range(first - 1, min(after - 1, len(lines)))
                if n == first - 1 or not lines[n].lstrip().startswith("#")
                for pos in [_whole_word(lines[n], src.written)]
                if pos >= 0
            ),
            None,
        )
        if hit is None:
            raise InputError(
                f"The --from flag of the COPY on line {first} is split over lines; escrow "
                f"cannot pin it to the recorded image {copies[first][:19]} (the rebuild "
                "would copy from what the reference names now).",
                hint="Write --from=IMAGE whole on one line of the Dockerfile.",
            )
        n, pos = hit
        pinned = f"--from={copies[first]}"
        lines[n] = lines[n][:pos] + pinned + lines[n][pos + len(src.written) :]
    for stage in df.stages:
        if stage.index not in ids:
            continue
        n = stage.instruction.line - 1
        line = lines[n]
        at = line.upper().find("FROM")
        pos = line.find(stage.raw_reference, at + 4) if at >= 0 else -1
        if pos < 0:
            raise InputError(
                f"The FROM of stage {stage.index} (line {stage.instruction.line}) spans lines; "
                "escrow cannot pin it to the recorded image.",
            )
        lines[n] = line[:pos] + ids[stage.index] + line[pos + len(stage.raw_reference) :]
    return "\n".join(lines)


def _whole_word(line: str, word: str) -> int:
    """Where ``word`` stands on ``line`` as a whole word (whitespace or the line's ends
    around it: not followed by a continuation), else -1."""
    if not word:
        return -1
    start = 0
    while (pos := line.find(word, start)) >= 0:
        end = pos + len(word)
        if (pos == 0 or line[pos - 1].isspace()) and (end == len(line) or line[end].isspace()):
            return pos
        start = pos + 1
    return -1


# ---------------------------------------------------------------------------
# the statement


def _layers_of(predicate: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for layer in (predicate or {}).get("layers") or []:
        item: dict[str, Any] = {"index": int(layer["index"]), "diffId": str(layer["diffId"])}
        if layer.get("size") is not None:
            item["size"] = int(layer["size"])
        if layer.get("createdBy") is not None:
            item["createdBy"] = str(layer["createdBy"])
        out.append(item)
    return out


def verdict_statement(
    entry: Entry,
    original: Mapping[str, Any],
    *,
    rebuilt: Mapping[str, Any] | None,
    builder: Mapping[str, Any],
    started_on: str,
    finished_on: str,
    verdict: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    image = original["image"]
    image_id = str(image["id"])
    name = (image.get("tags") or [image_id])[0]
    rebuild: dict[str, Any] = {
        "imageId": ((rebuilt or {}).get("image") or {}).get("id"),
        "layers": _layers_of(rebuilt),
        "builder": dict(builder),
        "startedOn": started_on,
        "finishedOn": finished_on,
    }
    if rebuilt is not None:
        rebuild["buildId"] = rebuilt["build"]["id"]
    rebuild.update(extra or {})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": str(name), "digest": {"sha256": image_id.removeprefix("sha256:")}}],
        "predicateType": REBUILD_VERIFICATION,
        "predicate": {
            "original": {
                "index": entry.index,
                "leafHash": entry.leaf_hash,
                "imageId": image_id,
                "buildId": str(original["build"]["id"]),
            },
            "project": str(original["build"]["project"]),
            "rebuild": rebuild,
            "verdict": verdict,
        },
    }


def _uncompared_layers(c: ImageComparison) -> list[dict[str, Any]]:
    """The layers whose diff IDs differ but whose files could not be read (the original
    image neither in the engine nor deposited) when nothing else differs: the rebuild may
    well be equivalent, so the verdict cannot say ``different``. Empty otherwise."""
    if c.config:
        return []
    different = [layer for layer in c.layers if layer.verdict is Verdict.DIFFERENT]
    if not different or any(
        layer.comparison is not None or layer.original is None or layer.rebuilt is None
        for layer in different
    ):
        return []
    return [
        {
            "kind": "other",
            "name": f"layer {layer.index}",
            "digest": str(layer.original),
            "reason": "its diff ID differs and its files could not be compared"
            + (
                f" ({layer.note.split(': ', 1)[1].rstrip('.')})"
                if layer.note and ": " in layer.note
                else ""
            )
            + (
                ""
                if layer.advised  # the note says what to do (a damaged deposit: repair it)
                else "; keep the original image in the engine or deposit it (escrow deposit)"
            ),
        }
        for layer in different
    ]


def verdict_document(c: ImageComparison) -> dict[str, Any]:
    v = c.verdict
    missing = _uncompared_layers(c) if v is Verdict.DIFFERENT else []
    doc: dict[str, Any] = {
        "overall": str(Verdict.UNKNOWN if missing else v),
        "layers": [layer.to_dict() for layer in c.layers],
        "config": [d.to_dict() for d in c.config],
    }
    if missing:
        doc["missing"] = missing
    if v is Verdict.EQUIVALENT:
        doc["normalisations"] = c.normalisations
    return doc


# ---------------------------------------------------------------------------
# the rebuild


def _scratch_dir(context: Path, home: Path, workdir: Path | None) -> Path:
    for parent in (workdir, Path(tempfile.gettempdir()), home):
        if parent is not None and _outside(parent, context):
            parent.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="escrow-rebuild-", dir=parent))
    raise UsageError(
        "The temporary folder and ESCROW_HOME are both inside the build context.",
        hint="Pass a --workdir outside the context.",
    )


def rebuild_entry(
    settings: Settings,
    index: int,
    options: RebuildOptions,
    *,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
    engine: DockerEngine | None = None,
    quiet: bool = False,
) -> RebuildResult:
    """Rebuild entry ``index``, compare, sign the verdict and append it to the ledger.

    ``say`` gets the progress messages (what is being done) and the warnings; with
    ``quiet`` only the warnings.
    """
    from escrow.blobs import BlobStore
    from escrow.capture.build import BuildRequest, leftover_step_images, phoenix_build
    from escrow.capture.engine import DockerEngine
    from escrow.capture.manifest import builder_section
    from escrow.capture.publish import Publisher
    from escrow.capture.source import builder_id, ci_facts
    from escrow.times import utc_now

    say = say or (lambda _m: None)
    tell = (lambda _m: None) if quiet else say  # progress: silenced by quiet
    publisher = Publisher.open(settings)  # fail fast on a locked key or a missing ledger
    from escrow.deposit.store import open_store

    # the deposit store: the inputs without --context; with it, only what the engine lacks
    store = None
    if options.imported or options.context is None:
        store = open_store(settings.home, options.deposit_store, reach=True)
    if options.imported:
        from escrow.deposit.bundle import imported_entry

        assert store is not None
        entry, original = imported_entry(store, index, options.origin)
        _check_rebuildable(index, original)
    else:
        entry, original = load_original(publisher.ledger, index)
    # the values given again are checked first: a mistyped one is told before the
    # context is restored or hashed
    args, missing_args = check_build_args(original, options.build_args)
    labels, missing_labels = recorded_labels(original, options.labels)
    deposited_dockerfile: bytes | None = None
    engine = engine or DockerEngine()
    blobs = BlobStore(settings.blobs_dir)
    if options.context is None:
        from escrow.deposit.rebuild import prepare_from_deposit

        assert store is not None
        scratch = _scratch_dir(settings.home, settings.home, options.workdir)
        try:
            prepared = prepare_from_deposit(store, entry, original, engine, scratch, tell)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        context = prepared.context
        deposited_dockerfile = prepared.dockerfile
        deposit_blobs = _DepositBlobs(store, blobs)
    else:
        from escrow.capture.context import check_context_dir

        context = Path(options.context)
        check_context_dir(context)
        scratch = _scratch_dir(context, settings.home, options.workdir)
        deposit_blobs = None
    try:
        dockerfile = recipe_file(original, context, scratch, deposited_dockerfile)
        check_context(original, context, dockerfile, deposit_blobs or blobs)  # type: ignore[arg-type]
        tell(f"escrow: the context of entry {index} matches the record")
        started_on = utc_now()
        builder = builder_section(engine.facts(), ci_facts(), builder_id(ci_facts()))
        plan = check_bases(original, engine)
        bases_from_deposit = False
        if plan.missing and options.context is not None:
            # the context is given, but a base the engine lacks may be in the deposit
            from escrow.deposit.rebuild import load_bases

            try:
                store = store or open_store(settings.home, options.deposit_store, reach=True)
                bases_from_deposit = bool(load_bases(store, original, engine, tell))
            except EscrowError as e:  # the store is optional here: unknown, as without it
                say(f"escrow: the base images could not be taken from the deposit store: {e}")
            if bases_from_deposit:
                plan = check_bases(original, engine)
        traced = trace_bases(None if options.imported else publisher.ledger, index, plan.images)
        missing = plan.missing + missing_args + missing_labels

        def finish(
            verdict: dict[str, Any], rebuilt: Mapping[str, Any] | None, result_extra: dict[str, Any]
        ) -> RebuildResult:
            extra: dict[str, Any] = {"pinning": result_extra.get("pinning", "as-recorded")}
            if options.context is None:
                extra["inputsFrom"] = "deposit"
            elif bases_from_deposit:
                extra["basesFrom"] = "deposit"
            if options.imported:
                extra["originalFrom"] = "imported-deposit"
            statement = verdict_statement(
                entry,
                original,
                rebuilt=rebuilt,
                builder=builder,
                started_on=started_on,
                finished_on=utc_now(),
                verdict=verdict,
                extra=extra,
            )
            appended, _ = publisher.publish(statement)
            return RebuildResult(
                statement=statement,
                verdict=Verdict(verdict["overall"]),
                comparison=result_extra.get("comparison"),
                entry=appended,
                rebuilt_image=((rebuilt or {}).get("image") or {}).get("id"),
                pinned_from=extra["pinning"],
                images=traced,
            )

        if missing:
            return finish({"overall": "unknown", "layers": [], "missing": missing}, None, {})

        pinning = "as-recorded"
        recipe: bytes | None = None
        if plan.rewrite:
            pinning = "rewritten-from"
            text = dockerfile.read_text(encoding="utf-8")
            ids = {int(p["stage"]): str(p["imageId"]) for p in plan.pins if "line" not in p}
            copies = {int(p["line"]): str(p["imageId"]) for p in plan.pins if "line" in p}
            # built in place of the recorded Dockerfile, whose files the build keeps
            recipe = rewrite_from_lines(text, dict(args), ids, copies).encode("utf-8")
            told = set()
            for p in plan.pins:
                moved = (p["reference"], p["imageId"], "line" in p)
                if p["referenceNow"] != p["imageId"] and moved not in told:
                    told.add(moved)
                    say(
                        f"escrow: {p['reference']} now names "
                        f"{str(p['referenceNow'])[:19] if p['referenceNow'] else 'nothing'}; "
                        f"{'copying from' if 'line' in p else 'building FROM'} the recorded "
                        f"{str(p['imageId'])[:19]}"
                    )

        inputs = original["inputs"]
        tag = options.tag or DEFAULT_TAG.format(index=index)
        # with --rm, the image the tag names before the rebuild gets it back afterwards
        named = engine.inspect_image(tag) if options.remove else None
        tag_before = str(named["Id"]) if named and named.get("Id") else None
        request = BuildRequest(
            context=context,
            tags=(tag,),
            dockerfile=dockerfile,
            recipe=recipe,
            build_args=tuple(args),
            labels=tuple(labels),
            target=inputs.get("target"),
            platform=inputs.get("platform"),
            project=str(original["build"]["project"]),
            leave_out=tuple(inputs.get("context", {}).get("excluded") or ()),
        )
        try:
            outcome = phoenix_build(
                request,
                engine=engine,
                blobs=blobs,
                redactor=rebuild_redactor(settings.home, original),
                progress=progress,
            )
        except InputError as e:  # the engine refused what it built before
            failure = {"step": None, "exitCode": None, "logTail": "", "message": e.diagnostics()}
            return finish(
                {"overall": "not-reproduced", "layers": [], "failure": failure},
                None,
                {"pinning": pinning},
            )
        rebuilt = outcome.statement["predicate"]
        if outcome.status != "succeeded":
            f = outcome.failure or {}
            failure = {
                "step": f.get("step"),
                "exitCode": f.get("exitCode"),
                "logTail": str(f.get("logTail") or ""),
                "message": str(f.get("message") or "the rebuild failed"),
            }
            if f.get("instruction"):
                failure["instruction"] = str(f["instruction"])
            return finish(
                {"overall": "not-reproduced", "layers": [], "failure": failure},
                rebuilt,
                {"pinning": pinning},
            )

        # the build must have started from the recorded images
        used = {
            int(b["stage"]): b.get("imageId") for b in rebuilt["inputs"].get("baseImages") or []
        }
        copied = {
            int(b["line"]): b.get("imageId") for b in rebuilt["inputs"].get("copyFromImages") or []
        }
        drift = [
            {
                "kind": "base-image",
                "name": str(p["reference"]),
                "digest": str(p["imageId"]),
                "reason": f"the rebuild started from {str(used.get(int(p['stage'])))[:19]}",
            }
            for p in plan.pins
            if "line" not in p and used.get(int(p["stage"])) != p["imageId"]
        ] + [
            {
                "kind": "base-image",
                "name": str(p["reference"]),
                "digest": str(p["imageId"]),
                "reason": f"the rebuild copied from {str(copied.get(int(p['line'])))[:19]} "
                f"(COPY --from on line {p['line']})",
            }
            for p in plan.pins
            if "line" in p and copied.get(int(p["line"])) != p["imageId"]
        ]
        if drift:
            if options.remove:
                _remove_image(engine, tag, say, (rebuilt.get("image") or {}).get("id"), tag_before)
            return finish(
                {"overall": "unknown", "layers": [], "missing": drift},
                rebuilt,
                {"pinning": pinning},
            )

        tell("escrow: comparing the rebuilt image with the original")
        want_a, want_b = wanted_layers(original, rebuilt)
        images = {"original": str(original["image"]["id"]), "rebuilt": str(rebuilt["image"]["id"])}
        layers: Any = None
        if store is None and want_a and engine.inspect_image(images["original"]) is None:
            with contextlib.suppress(EscrowError):  # optional: else "files not compared"
                store = open_store(settings.home, options.deposit_store, reach=True)
        if store is not None:
            from escrow.deposit.rebuild import DepositLayers

            if DepositLayers(store, None).covers(want_a):
                want_a = set()  # the original layers come from the deposit
        with EngineLayers(
            engine.api,
            images,
            {"original": want_a, "rebuilt": want_b},
            workdir=scratch,
            endpoint=engine.endpoint,
        ) as source:
            if want_a or want_b:
                source.prefetch()
            if store is not None:
                from escrow.deposit.rebuild import DepositLayers

                layers = DepositLayers(store, source)
            comparison = compare_images(original, rebuilt, layers or source, progress=tell)
        result = finish(
            verdict_document(comparison), rebuilt, {"pinning": pinning, "comparison": comparison}
        )
        if options.remove:
            _remove_image(engine, tag, say, images["rebuilt"], tag_before)
        with contextlib.suppress(EscrowError):  # the verdict is recorded: tidying is optional
            # the earlier stages' images (their history names the build args given again),
            # and with --rm what is left of the rebuilt image
            engine.remove_step_images(leftover_step_images(rebuilt, built_stage_too=options.remove))
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _DepositBlobs:
    """Blob lookups (the recorded file list) in the blob store, else the deposit store."""

    def __init__(self, store: Any, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs

    def get(self, digest: str) -> bytes:
        if self._blobs.exists(digest):
            return self._blobs.get(digest)
        data: bytes = self._store.get(digest)
        return data

    def exists(self, digest: str) -> bool:
        return self._blobs.exists(digest) or bool(self._store.has(digest))

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self.exists(digest)


def _check_rebuildable(index: int, predicate: Mapping[str, Any]) -> None:
    build = predicate.get("build") or {}
    if build.get("kind", "dockerfile") != "dockerfile":
        raise InputError(f"The imported entry {index} is not a Dockerfile build escrow ran.")
    if build.get("status") != "succeeded" or not (predicate.get("image") or {}).get("id"):
        raise InputError(
            f"The imported entry {index} is a failed build; there is nothing to reproduce."
        )


def _remove_image(
    engine: DockerEngine,
    tag: str,
    say: Callable[[str], None],
    rebuilt: str | None = None,
    before: str | None = None,
) -> None:
    """``--rm``: remove the rebuilt image by its tag; ``before``, the image the tag named
    before the rebuild (``-t`` naming an image of the user's), is tagged with it again —
    and is kept when it is the rebuilt image itself (a bit-for-bit reproduction)."""
    import docker.errors
    from docker.utils import parse_repository_tag

    if before is not None and before == rebuilt:
        return  # the image was there before the rebuild: not the rebuild's to remove
    try:
        engine.api.remove_image(tag)
    except docker.errors.APIError as e:  # the verdict is recorded: warn, do not fail
        say(f"escrow: warning: could not remove the rebuilt image {tag}: {e.explanation or e}")
        return
    if before is None:
        return
    repository, name = parse_repository_tag(tag)
    try:
        engine.api.tag(before, repository, name or "latest")
    except docker.errors.APIError as e:
        say(
            f"escrow: warning: could not tag {before[:19]} as {tag} again (it named it before "
            f"the rebuild): {e.explanation or e}"
        )
