"""``escrow build``: a phoenix build through the engine, recorded as a build manifest.

:func:`phoenix_build` makes the context archive once (hashing it and every
entry), names every base image before the build starts, sends that same
archive to the engine's classic builder (no cache, intermediates removed),
records the steps as they run (logs to the blob store) and the image after,
and returns the in-toto Statement — succeeded or failed.  Signing and
appending are the caller's (:mod:`escrow.capture.publish`).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from escrow.blobs import BlobStore
from escrow.capture import dockerfile as dfparse
from escrow.capture.context import ContextArchive, ContextStream
from escrow.capture.engine import Engine
from escrow.capture.manifest import (
    build_section,
    builder_section,
    capture_image_facts,
    image_subject,
    log_tail,
    recipe_section,
    recipe_subject,
    statement,
    utf8_document,
    utf8_text,
)
from escrow.capture.progress import NoProgress, Progress
from escrow.capture.secrets import Redactor
from escrow.capture.source import builder_id, ci_facts, git_source
from escrow.errors import (
    EscrowError,
    InputError,
    UsageError,
    sigterm_raises_terminated,
)
from escrow.times import utc_now

if TYPE_CHECKING:
    import concurrent.futures

    from escrow.capture.steps import StepParser, StepRecord, StreamResult


# A NamedTuple, not a frozen dataclass: made at import on the way to `escrow build`'s
# request, where a frozen dataclass costs ~0.5 ms of start-up and this ~0.1 ms
# (docs/DESIGN-NOTES.md, "Start-up of escrow build").
class BuildRequest(NamedTuple):
    context: Path
    tags: tuple[str, ...]
    dockerfile: Path | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    platform: str | None = None
    project: str | None = None
    #: pull every base image fresh from its registry and pin it by manifest digest
    pull: bool = False
    #: labels set on the image (``docker build --label``), recorded as inputs
    labels: tuple[tuple[str, str], ...] = ()
    #: folders of the context neither sent nor recorded (escrow's own: its home, its
    #: deposit store), relative to it; listed in ``inputs.context.excluded``
    leave_out: tuple[str, ...] = ()
    #: the Dockerfile to build instead of ``dockerfile``'s own bytes (a rebuild's, its
    #: ``FROM`` lines pinned), sent so that the build's files are those a build of
    #: ``dockerfile`` has (:func:`escrow.capture.context._send_recipe`)
    recipe: bytes | None = None


@dataclass
class BuildOutcome:
    statement: dict[str, Any]
    status: str
    build_id: str
    project: str
    image_id: str | None = None
    failure: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


def parse_build_args(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``K=V`` strings → pairs; a value without ``=`` is a usage error."""
    return _pairs(values, "build argument", "--build-arg")


def parse_labels(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--label K=V`` strings → pairs; a value without ``=`` is a usage error."""
    return _pairs(values, "label", "--label")


def _pairs(values: Sequence[str], what: str, option: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for v in values:
        name, eq, value = v.partition("=")
        if not eq or not name:
            problem = "has no '='" if not eq else "has no name before '='"
            raise UsageError(f"The {what} {v!r} {problem}.", hint=f"Write {option} NAME=VALUE.")
        out.append((name, value))
    return tuple(out)


def default_project(context: Path) -> str:
    return Path(context).resolve().name or "default"


def _learn_dockerfile_secrets(df: dfparse.Dockerfile, redactor: Redactor) -> None:
    """Literal ``ENV``/``ARG``/``LABEL`` values with secret names in the Dockerfile itself."""
    for ins in df.instructions:
        if ins.keyword not in ("ENV", "ARG", "LABEL"):
            continue
        words = ins.args.split()
        if ins.keyword == "ENV" and len(words) >= 2 and "=" not in words[0]:
            pairs = [(words[0], " ".join(words[1:]))]  # legacy ``ENV NAME value``
        else:
            pairs = [(n, v) for n, _, v in (w.partition("=") for w in words)]
        for name, value in pairs:
            value = value.strip("\"'")
            if value and redactor.is_secret(name):
                redactor.learn(name, value)


def _pull_base(engine: Engine, reference: str, platform: str | None) -> tuple[dict[str, Any], str]:
    """``escrow build --pull``: pull ``reference`` fresh; (inspect, repo digest).

    The repo digest is the registry manifest digest the engine pulled (for
    ``name@sha256:…`` the one named), and the pulled image must carry it.
    """
    from escrow.registry.pull import pull_error

    try:
        digest = engine.pull(reference, platform)
    except InputError as e:
        raise pull_error(reference, e) from e
    inspect = engine.inspect_image(reference)
    if inspect is None:
        raise InputError(f"The base image {reference} was pulled but is not in the Docker Engine.")
    name, _, pinned = reference.partition("@")
    if pinned and digest and digest != pinned:
        from escrow.registry.errors import RegistryIntegrityError

        raise RegistryIntegrityError(
            f"Pulling {reference} gave the manifest {digest}, not the one named; nothing was "
            "built or recorded."
        )
    if not pinned:
        digest = _registry_digest(reference, digest)
    digest = pinned or digest
    carried = [str(d) for d in inspect.get("RepoDigests") or []]
    match = [d for d in carried if d.split("@", 1)[1] == digest] if digest else []
    if not match:
        raise InputError(
            f"The base image {reference} was pulled, but the engine names no registry digest "
            f"for it{f' ({digest})' if digest else ''}; it cannot be pinned.",
            hint="Pull from a registry (an image only built or loaded locally has no digest).",
        )
    return inspect, match[0]


def _registry_digest(reference: str, engine_digest: str | None) -> str | None:
    """The tag's manifest digest, read from the registry by escrow itself: its bytes must
    hash to the digest the registry announces, and that must be what the engine pulled
    (the engine checks the digests of pulls by digest, not the manifest of a tag)."""
    from escrow.registry.client import RegistryClient
    from escrow.registry.errors import RegistryIntegrityError
    from escrow.registry.reference import Reference

    ref = Reference.parse(reference)
    manifest = RegistryClient(ref.registry).manifest(ref.repository, ref.tag or "latest")
    if engine_digest and manifest.digest != engine_digest:
        raise RegistryIntegrityError(
            f"Pulling the base image {reference}: the engine got the manifest {engine_digest}, "
            f"but the registry names {manifest.digest} for the tag; nothing was built or "
            "recorded.",
            hint="The registry's copy is corrupted or changed during the pull; pull again, "
            "or pin the base by digest.",
        )
    return manifest.digest


def resolve_bases(
    df: dfparse.Dockerfile,
    engine: Engine,
    *,
    strict: bool = True,
    pull: bool = False,
    redactor: Redactor | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """``inputs.baseImages``: every stage's base, resolved in the engine before the build.

    ``strict`` (``escrow build``): a base image neither in the engine nor
    pullable is an :class:`InputError`.  Otherwise (``escrow capture``, whose
    image is already built) a missing base is recorded as ``unresolved``.
    ``pull`` (``escrow build --pull``): every base is pulled fresh and pinned
    by its registry manifest digest (``repoDigest``, ``pinnedBy``).
    ``redactor`` learns the secret-named ``Env`` and ``Labels`` values each base
    brings (a ``RUN`` may print them), before any step log is recorded.
    Returns the records and whether any base had to be pulled.
    """
    pulled = False
    records: list[dict[str, Any]] = []
    cache: dict[str, dict[str, Any]] = {}
    for stage in df.stages:
        record: dict[str, Any] = {
            "stage": stage.index,
            "stageName": stage.name,
            "reference": stage.reference,
            "imageId": None,
            "repoDigest": None,
        }
        if stage.platform:
            record["platform"] = stage.platform
        if stage.is_scratch:
            record["source"] = "scratch"
        elif stage.from_stage is not None:
            record["source"] = "stage"
            record["fromStage"] = stage.from_stage
        else:
            record["source"] = "image"
            if pull:
                if stage.reference not in cache:
                    fresh, repo_digest = _pull_base(engine, stage.reference, stage.platform)
                    cache[stage.reference] = {**fresh, "_pinned": repo_digest}
                pulled = True
                pinned = cache[stage.reference]
                _learn_base_secrets(pinned, redactor)
                record["imageId"] = str(pinned["Id"])
                record["repoDigest"] = str(pinned["_pinned"])
                record["pinnedBy"] = _pinned_by(stage.reference)
                records.append(record)
                continue
            inspect = cache.get(stage.reference) or engine.inspect_image(stage.reference)
            if inspect is None and not strict:
                record["source"] = "unresolved"
                records.append(record)
                continue
            if inspect is None:
                inspect = _pulled(
                    engine,
                    stage.reference,
                    stage.platform,
                    f"The base image {stage.reference} (stage {stage.index}, line "
                    f"{stage.instruction.line})",
                    "FROM",
                )
                pulled = True
            cache[stage.reference] = inspect
            _learn_base_secrets(inspect, redactor)
            record["imageId"] = str(inspect["Id"])
            record["repoDigest"] = _own_repo_digest(stage.reference, inspect)
        records.append(record)
    return records, pulled


def _pinned_by(reference: str) -> str:
    """``pinnedBy`` of an image ``--pull`` pinned: the digest the reference names, or the
    one its tag gave."""
    return "digest" if "@" in reference else "tag"


def _pulled(
    engine: Engine, reference: str, platform: str | None, what: str, keyword: str
) -> dict[str, Any]:
    """Pull ``reference``, which the engine lacks, before the build; its inspect.  ``what``
    names it in the error ("The base image … (stage 0, line 2)"); ``keyword`` is the
    instruction to fix."""
    hint = f"Build or load it first (docker load), or fix the {keyword} line."
    try:
        engine.pull(reference, platform)
    except InputError as e:
        raise InputError(
            f"{what} is not in the Docker Engine and cannot be pulled: {e.message.rstrip('.')}.",
            hint=hint,
        ) from e
    inspect = engine.inspect_image(reference)
    if inspect is None:
        raise InputError(f"{what} is not in the Docker Engine.", hint=hint)
    return inspect


def resolve_copy_sources(
    df: dfparse.Dockerfile,
    engine: Engine,
    *,
    strict: bool = True,
    pull: bool = False,
    platform: str | None = None,
) -> list[dict[str, Any]]:
    """``inputs.copyFromImages``: every image a ``COPY --from=IMAGE`` copies files from,
    resolved in the engine before the build (an input as much as a base image is).

    ``strict`` (``escrow build``): an image neither in the engine nor pullable is an
    :class:`InputError` before the build starts; otherwise (``escrow capture``) it is
    recorded with no image ID.  ``pull`` (``escrow build --pull``): each is pulled fresh
    and pinned by its registry manifest digest, as the bases are (``pinnedBy``), for the
    build's ``platform`` (the engine copies from that platform's image).
    """
    from escrow.registry.reference import Reference

    records: list[dict[str, Any]] = []
    found: dict[str, dict[str, Any] | None] = {}
    pinned: dict[str, str] = {}
    for src in df.copy_sources():
        if src.reference not in found and pull:
            fresh, pinned[src.reference] = _pull_base(engine, src.reference, platform)
            found[src.reference] = fresh
        if src.reference not in found:
            inspect = engine.inspect_image(src.reference)
            if inspect is None and strict:
                try:
                    Reference.parse(src.reference)
                except InputError:
                    # ``$VAR``: the classic builder expands no ARG in --from; no pull of it
                    raise InputError(
                        f"The COPY --from on line {src.instruction.line} (stage {src.stage}) "
                        f"names {src.reference!r}, which is neither an earlier stage of the "
                        "Dockerfile nor an image reference"
                        + (
                            " (the classic builder expands no ARG or ENV in --from)"
                            if "$" in src.reference
                            else ""
                        )
                        + ".",
                        hint="Name an earlier stage (by name or index) or an image, in full.",
                    ) from None
                inspect = _pulled(
                    engine,
                    src.reference,
                    platform,
                    f"The image {src.reference} that COPY --from names (stage {src.stage}, "
                    f"line {src.instruction.line})",
                    "COPY",
                )
            found[src.reference] = inspect
        inspect = found[src.reference]
        record: dict[str, Any] = {
            "stage": src.stage,
            "line": src.instruction.line,
            "reference": src.reference,
            "imageId": str(inspect["Id"]) if inspect else None,
            "repoDigest": _own_repo_digest(src.reference, inspect) if inspect else None,
        }
        if src.reference in pinned:
            record["repoDigest"] = pinned[src.reference]
            record["pinnedBy"] = _pinned_by(src.reference)
        records.append(record)
    return records


def _learn_base_secrets(inspect: Mapping[str, Any], redactor: Redactor | None) -> None:
    """Remember the secret-named ``Env`` and ``Labels`` values of a base image."""
    if redactor is None:
        return
    config = inspect.get("Config") or {}
    redactor.env([str(e) for e in config.get("Env") or []])
    redactor.labels({str(k): str(v) for k, v in (config.get("Labels") or {}).items()})


def _own_repo_digest(reference: str, inspect: Mapping[str, Any]) -> str | None:
    """The engine's registry digest of ``reference``'s own repository, or None.

    An image pushed to (or pulled from) several repositories carries a digest for
    each; only one of the repository the ``FROM`` line names says where this base
    came from.  Another repository's digest is never recorded in its place.
    """
    from escrow.registry.reference import Reference

    try:
        wanted = Reference.parse(reference).name
    except InputError:
        return None
    for digest in (str(d) for d in inspect.get("RepoDigests") or []):
        try:
            if Reference.parse(digest).name == wanted:
                return digest
        except InputError:
            continue
    return None


def _resolve_step_images(
    steps: list[StepRecord], engine: Engine, known: list[str]
) -> dict[str, str]:
    """Short step image IDs → full IDs: from ``known`` (the final image's history
    endpoint names every local intermediate image), else one inspect each."""
    full: dict[str, str] = {}
    for s in steps:
        short = s.image_short
        if short and short not in full:
            match = [k for k in known if k.removeprefix("sha256:").startswith(short)]
            if len(match) == 1:
                full[short] = match[0]
                continue
            inspect = engine.inspect_image(short)
            if inspect is not None:
                full[short] = str(inspect["Id"])
    return full


def steps_section(
    result: StreamResult,
    engine: Engine,
    blobs: BlobStore,
    redactor: Redactor,
    known_images: list[str] | None = None,
) -> list[dict[str, Any]]:
    full = _resolve_step_images(result.steps, engine, known_images or [])
    out: list[dict[str, Any]] = []
    for s in result.steps:
        failed = s is result.failed_step
        image_id = None if failed or not s.image_short else full.get(s.image_short)
        out.append(
            {
                "index": s.index,
                "instruction": redactor.text(s.instruction),
                "stage": s.stage,
                "imageId": image_id,
                "exitCode": s.exit_code,
                "startedOn": s.started_on,
                "durationMs": s.duration_ms,
                "log": s.log.store(blobs, redactor),
            }
        )
    return out


def leftover_step_images(
    predicate: Mapping[str, Any], *, built_stage_too: bool = False
) -> list[str]:
    """The images a build's steps made that its result does not need, children first:
    those of every stage before the one built — the classic builder keeps them, untagged,
    and their history names the build args their ``RUN`` steps used, secret ones too —
    and, with ``built_stage_too`` (a failed build, a rebuild whose image is removed),
    those of the built stage as well.  Never a ``FROM`` step's image (a base, or an
    earlier stage built upon) nor an input image."""
    steps = [s for s in predicate.get("steps") or [] if isinstance(s, Mapping)]
    if not steps:
        return []
    built = steps[-1].get("stage")
    inputs = predicate.get("inputs") or {}
    keep = {
        str(b.get("imageId"))
        for key in ("baseImages", "copyFromImages")
        for b in inputs.get(key) or []
        if isinstance(b, Mapping) and b.get("imageId")
    }
    out: list[str] = []
    for step in reversed(steps):
        image = step.get("imageId")
        keyword = str(step.get("instruction") or "").split(" ", 1)[0].upper()
        if not image or keyword == "FROM" or str(image) in keep or str(image) in out:
            continue
        if step.get("stage") is None:  # before any FROM (a global ARG): no image of a stage
            continue
        if built_stage_too or step.get("stage") != built:
            out.append(str(image))
    return out


#: Dockerfile syntax only BuildKit understands (escrow drives the engine's classic builder)
_BUILDKIT_ONLY = (
    ("a `# syntax=` frontend", re.compile(r"\A\s*#\s*syntax\s*=", re.I)),
    ("heredocs", re.compile(r"^\s*(?:RUN|COPY|ADD)\b.*<<-?\s*[\"']?[A-Za-z_]\w*", re.I | re.M)),
    (
        "RUN --mount/--network/--security",
        re.compile(r"^\s*RUN\s+--(?:mount|network|security)\b", re.I | re.M),
    ),
    (
        "COPY/ADD --link/--chmod/--parents/--exclude",
        re.compile(r"^\s*(?:COPY|ADD)\b.*\s--(?:link|chmod|parents|exclude)\b", re.I | re.M),
    ),
)


def buildkit_only(dockerfile: str) -> list[str]:
    """The BuildKit-only features ``dockerfile`` uses (the classic builder refuses them)."""
    return [name for name, pattern in _BUILDKIT_ONLY if pattern.search(dockerfile)]


def _buildkit_hint(dockerfile: bytes | None) -> str | None:
    found = buildkit_only((dockerfile or b"").decode("utf-8", errors="replace"))
    # the classic builder reads a `# syntax=` line as a comment: never why it refused
    found = [name for name in found if name != _BUILDKIT_ONLY[0][0]]
    if not found:
        return None
    return (
        f"This Dockerfile uses BuildKit-only syntax ({', '.join(found)}); escrow builds with "
        "the engine's classic builder, so write those parts without it (a heredoc as RUN "
        "lines, a cache mount as a plain RUN)."
    )


#: Instructions that never add a layer (``WORKDIR`` may: it creates the directory).
NO_LAYER = frozenset(
    "ARG CMD ENTRYPOINT ENV EXPOSE HEALTHCHECK LABEL MAINTAINER ONBUILD SHELL STOPSIGNAL USER "
    "VOLUME".split()
)


def _layers_watch(
    df: dfparse.Dockerfile, layers_done: Callable[[str], None]
) -> Callable[[StepRecord], None]:
    """A :class:`StepParser` ``on_step`` hook: when step N starts and it and every later
    instruction of the Dockerfile add no layer, step N-1's image has the built image's
    layers.  The step numbers of the classic builder count every instruction of the
    file (global ``ARG`` included); a step whose text is not the instruction expected
    there (or a ``--target`` stage followed by others) is never taken for one."""
    last: list[StepRecord] = []  # the step before this one

    def on_step(step: StepRecord) -> None:
        previous = last[0] if last else None
        last[:] = [step]
        rest = df.instructions[step.index - 1 : step.total]
        if (
            previous is None
            or not previous.image_short
            or step.total != len(df.instructions)
            or not rest
            or rest[0].keyword != step.instruction.split(" ", 1)[0].upper()
        ):
            return
        if all(ins.keyword in NO_LAYER for ins in rest):
            layers_done(previous.image_short)

    return on_step


def _ahead(
    config_of: Callable[[str], dict[str, Any]], image_id: str
) -> Callable[[str], dict[str, Any]]:
    """``config_of`` with the answer for ``image_id`` already on its way (in a thread,
    while the steps and the history are read): ``escrow build``'s save of the image.

    The thread is a daemon: a build interrupted meanwhile (Ctrl-C, an error) exits
    without waiting for the save of a large image to finish (the deposit store writes
    each blob to a temporary file first, so nothing half-written is left under a name).
    """
    import concurrent.futures

    future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(config_of(image_id))
        except BaseException as e:  # noqa: BLE001 - handed to the caller by the future
            future.set_exception(e)

    threading.Thread(target=run, name="escrow-config", daemon=True).start()

    def read(wanted: str) -> dict[str, Any]:
        got = future.result()
        return got if wanted == image_id else config_of(wanted)

    return read


def _remove_leftovers(engine: Engine, parser: StepParser) -> None:
    """A build stopped part way records nothing, so it leaves nothing in the engine
    either: the images of the steps it finished (never a ``FROM`` step's base image)."""
    images = [
        s.image_short
        for s in parser.steps
        if s.image_short and s.instruction.split(" ", 1)[0].upper() != "FROM"
    ]
    if not images:
        return
    try:
        engine.remove_leftovers(images)
    except EscrowError:
        pass  # the engine went away meanwhile: the stop's own error is the one to report


class _FinishOnce:
    """A :class:`Progress` whose ``finish`` happens once: the first message says how the
    build ended; a later one (the build stopped while it was being recorded) is dropped."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.finished = False
        self.shows_output = bool(getattr(progress, "shows_output", True))

    def start(self, title: str) -> None:
        self._progress.start(title)

    def step(self, index: int, total: int | None, text: str) -> None:
        self._progress.step(index, total, text)

    def output(self, text: str) -> None:
        self._progress.output(text)

    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None:
        self._progress.step_done(index, duration_ms, exit_code)

    def finish(self, message: str) -> None:
        if not self.finished:
            self.finished = True
            self._progress.finish(message)


def phoenix_build(
    request: BuildRequest,
    *,
    engine: Engine,
    blobs: BlobStore,
    redactor: Redactor | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
    on_build_started: Callable[[], None] | None = None,
    config_of: Callable[[str], dict[str, Any]] | None = None,
    check: Callable[[], None] | None = None,
    layers_done: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Build and record; a failed build returns ``status == "failed"`` (it does not raise).

    ``check()`` runs after every message of the engine; what it raises stops the
    build (the connection is closed) and is raised from here.

    ``config_of(image_id)``: how to read the built image's raw config, when not
    with :meth:`Engine.image_config` (``escrow build`` saves the image into its
    deposit store and reads the config from there: one ``docker save``, not two).

    ``layers_done(image)`` is called (at most a few times, with a short image ID)
    while the engine still builds, once only instructions that add no layer remain:
    the built image will have that image's layers (``escrow build`` saves them into
    its deposit then, so that none is left to save when the build ends).

    Raises :class:`InputError` for bad inputs found before the build starts
    (context, Dockerfile, a missing base image, a target that does not exist,
    a Dockerfile the engine rejects) and :class:`EngineUnavailable`.
    """
    redactor = redactor or Redactor()
    progress = progress or NoProgress()
    if not request.tags:
        raise UsageError("A build needs a tag.", hint="Pass -t NAME:TAG.")
    started_on = utc_now()
    build_id = str(uuid.uuid4())
    # a folder name that is not UTF-8 is recorded with ``\xNN`` escapes, as by ``record``
    project = utf8_text(request.project or default_project(request.context))
    args = dict(request.build_args)
    arg_records = [redactor.build_arg(name, value) for name, value in request.build_args]
    label_records = [redactor.build_arg(name, value) for name, value in request.labels]

    stream = ContextStream(request.context, request.dockerfile, request.leave_out, request.recipe)
    root = stream.plan.root
    df = dfparse.parse(stream.dockerfile_bytes.decode("utf-8", errors="replace"), args)
    built = df
    if request.target is not None:
        # the classic builder drops the stages after the target before it resolves any
        # FROM: their bases are neither needed nor used, so neither are they recorded
        built = df._replace(stages=df.stages[: df.stage_index(request.target) + 1])
    _learn_dockerfile_secrets(df, redactor)
    bases, pulled = resolve_bases(built, engine, pull=request.pull, redactor=redactor)
    copied = resolve_copy_sources(built, engine, pull=request.pull, platform=request.platform)
    pulled = pulled or (request.pull and bool(copied))
    ci = ci_facts(environ)
    progress.start(f"escrow: phoenix build of {root} as {request.tags[0]}")
    progress = _FinishOnce(progress)
    restore_sigterm = sigterm_raises_terminated()  # stops the build as Ctrl-C does
    made: StepParser | None = None
    try:

        def parser() -> StepParser:
            """The parser of the engine's messages, made when the first one comes (the
            module is imported while the engine starts the build, not before the request)."""
            nonlocal made
            if made is None:
                from escrow.capture.logs import LogBuffer
                from escrow.capture.steps import StepParser

                on_step = _layers_watch(df, layers_done) if layers_done else None
                made = StepParser(
                    progress,
                    redactor.text,
                    on_step=on_step,
                    # a large step log goes on, scrubbed, to the blob store as it comes
                    new_log=lambda: LogBuffer(blobs, redactor),
                )
            return made

        # git, the engine's own facts and ``on_build_started`` run while the engine
        # builds: they start once the engine has the whole context (``on_sent``), so
        # that they hold up neither the request nor its end.
        background: list[concurrent.futures.Future[Any]] = []

        def start_background() -> None:
            if background:
                return
            import concurrent.futures  # here, not before the request: ~4 ms with logging

            pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="escrow-facts")
            background.extend(
                (
                    pool.submit(
                        git_source,
                        root,
                        leave_out=request.leave_out,
                        recipe=Path(request.dockerfile) if request.dockerfile else None,
                        environ=environ,
                    ),
                    pool.submit(engine.facts),
                )
            )
            pool.shutdown(wait=False)
            if on_build_started is not None:
                on_build_started()

        messages = engine.build(
            stream.chunks(),
            dockerfile=stream.dockerfile_in_archive,
            tags=list(request.tags),
            build_args=args,
            target=request.target,
            platform=request.platform,
            labels=dict(request.labels),
            on_sent=start_background,  # not before: the engine waits for the whole context
        )
        stopped = False
        read_to_the_end = False
        try:
            for msg in messages:
                parser().feed(msg)
                if check is not None:
                    try:
                        check()
                    except EscrowError:  # e.g. the signing key failed to load
                        stopped = True
                        raise
            read_to_the_end = True
        except EscrowError as e:
            if stopped:
                progress.finish("escrow: the build was stopped; nothing is recorded.")
            else:
                progress.finish("escrow: the build did not run.")
                stream.result()  # an unreadable context file is the better explanation
                if isinstance(e, InputError):
                    e.hint = _buildkit_hint(stream.dockerfile_bytes) or e.hint
            raise
        finally:
            close = getattr(messages, "close", None)
            if close is not None:
                close()  # a build stopped early: the engine sees the connection close
            if not read_to_the_end and made is not None:  # stopped (an error, Ctrl-C)
                _remove_leftovers(engine, made)
        ctx = stream.result()
        start_background()  # when the engine stopped reading the context early
        source = background[0].result()
        engine_facts = background[1].result()
        inputs = _inputs(ctx, df, request, arg_records, bases, source, blobs, redactor)
        if copied:
            inputs["copyFromImages"] = copied
        if label_records:
            inputs["labels"] = label_records
        result = parser().finish()
        if result.error is not None and not result.steps:
            progress.finish("escrow: the Docker Engine rejected the build.")
            raise InputError(
                f"The Docker Engine rejected the build: {redactor.text(result.error).rstrip('.')}.",
                hint=_buildkit_hint(stream.dockerfile_bytes)
                or "Fix the Dockerfile (see the message) and build again.",
            )

        status = "succeeded" if result.error is None and result.image_id else "failed"
        if status == "succeeded" and config_of is not None:
            config_of = _ahead(config_of, str(result.image_id))
        history_items: list[dict[str, Any]] = []
        inspected: dict[str, Any] | None = None
        if status == "succeeded" and result.image_id:
            history_items, inspected = _history_and_inspect(engine, result.image_id)
        known = [
            str(h.get("Id")) for h in history_items if str(h.get("Id", "")).startswith("sha256:")
        ]
        steps = steps_section(result, engine, blobs, redactor, known)
        predicate: dict[str, Any] = {
            "build": build_section(
                build_id=build_id,
                project=project,
                kind="dockerfile",
                status=status,
                started_on=started_on,
                finished_on=utc_now(),
                source=source,
                phoenix=True,
                pulled_base=pulled,
            ),
            "builder": builder_section(engine_facts, ci, builder_id(ci)),
            "inputs": inputs,
            "steps": steps,
        }
        outcome = BuildOutcome(statement={}, status=status, build_id=build_id, project=project)
        if status == "succeeded":
            assert result.image_id is not None
            facts = capture_image_facts(
                engine,
                result.image_id,
                redactor,
                history=history_items,
                config_of=config_of,
                inspected=inspected,
            )
            if facts is None:
                raise InputError(f"The built image {result.image_id} vanished from the engine.")
            image, layers, history = facts
            for tag in request.tags:
                if tag not in image["tags"]:
                    image["tags"].append(tag)
            predicate.update({"image": image, "layers": layers, "history": history})
            subject = image_subject(image, request.tags[0])
            outcome.image_id = image["id"]
            progress.finish(f"escrow: built {image['id']} ({request.tags[0]})")
        else:
            failure = _failure(result, redactor)
            predicate["build"]["failure"] = failure
            outcome.failure = failure
            subject = recipe_subject(inputs["recipe"]["path"], inputs["recipe"]["sha256"])
            failed = result.failed_step
            where = f"step {failed.index}" if failed else "the build"
            progress.finish(f"escrow: {where} failed: {failure['message']}")
        outcome.statement = utf8_document(redactor.document(statement(subject, predicate)))
        outcome.steps = steps
        return outcome
    except BaseException:  # Ctrl-C, an engine gone: a live display is not left running
        progress.finish("escrow: the build was stopped; nothing is recorded.")
        raise
    finally:
        restore_sigterm()
        if made is not None:
            for step in made.steps:
                step.log.close()  # a large log's temporary file


def _history_and_inspect(
    engine: Engine, image_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The built image's history and inspect, asked at once on two connections (~1 ms
    less than one after the other)."""
    import concurrent.futures  # imported already, for the facts gathered during the build

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="escrow-history") as pool:
        asked = pool.submit(engine.history, image_id)
        inspected = engine.inspect_image(image_id)
        return asked.result(), inspected


def _failure(result: StreamResult, redactor: Redactor) -> dict[str, Any]:
    """``build.failure`` of a build that made no image: the step that failed (when one
    did), its exit code, the engine's message and the end of the step's log."""
    failed = result.failed_step
    return {
        "step": failed.index if failed else None,
        "instruction": redactor.text(failed.instruction) if failed else None,
        "exitCode": result.error_code,
        "message": redactor.text(result.error or "the build produced no image"),
        "logTail": log_tail(failed.log.scrubbed_end(redactor)) if failed else "",
    }


def _inputs(
    ctx: ContextArchive,
    df: dfparse.Dockerfile,
    request: BuildRequest,
    arg_records: list[dict[str, Any]],
    bases: list[dict[str, Any]],
    source: dict[str, Any] | None,
    blobs: BlobStore,
    redactor: Redactor,
) -> dict[str, Any]:
    assert ctx.dockerfile_path is not None and ctx.dockerfile_bytes is not None
    inputs: dict[str, Any] = {
        "recipe": recipe_section(ctx.dockerfile_path, ctx.dockerfile_bytes, redactor),
        "context": ctx.to_manifest(blobs),
        "buildArgs": arg_records,
        "target": request.target,
        "platform": request.platform,
        "baseImages": bases,
    }
    if df.global_args:
        inputs["globalArgs"] = [
            {"name": n, "default": d if not redactor.is_secret(n) or d is None else None}
            for n, d in df.global_args
        ]
    if source is not None:
        inputs["source"] = source
    return inputs
