"""``escrow build``, ``escrow capture``, ``escrow record`` and ``escrow logs``.

Thin: parse the options, call :mod:`escrow.capture`, sign and append, print.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from escrow.cli.app import App, json_option, pass_app
from escrow.errors import BuildFailed, EnvironmentProblem, EscrowError, InputError, UsageError

if TYPE_CHECKING:
    from escrow.capture.build import BuildOutcome
    from escrow.capture.engine import DockerEngine
    from escrow.capture.publish import Publisher
    from escrow.capture.secrets import Redactor
    from escrow.deposit.ahead import ContextAhead
    from escrow.deposit.deposit import DepositResult
    from escrow.deposit.store import DepositStore
    from escrow.ledger.store import Entry

_secret_option = click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME",
    help="Treat the build argument or variable NAME as a secret (recorded only as a salted "
    "SHA-256). Names matching ESCROW_SECRET_PATTERNS are secret anyway.",
)


def _check_project(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A project name the ledger can store (checked before anything is built)."""
    if value is not None and ("\x00" in value or len(value) > 200):
        raise click.BadParameter("a project name is at most 200 characters, with no NUL.")
    return value


_project_option = click.option(
    "--project",
    metavar="NAME",
    callback=_check_project,
    help="Project the entry belongs to [default: the context folder's name].",
)
_capture_project_option = click.option(
    "--project",
    metavar="NAME",
    callback=_check_project,
    help="Project the entry belongs to [default: the --context folder's name; without "
    "--context, the image's repository name: tool for registry.local/team/tool:2].",
)


def _redactor(app: App, secrets: tuple[str, ...]) -> Redactor:
    from escrow.capture.secrets import Redactor, secret_patterns

    return Redactor(secret_patterns(app.settings.home), secrets)


def _result(entry: Entry, created: bool, statement: dict[str, Any]) -> dict[str, Any]:
    pred = statement["predicate"]
    build = pred["build"]
    return {
        "index": entry.index,
        "leaf_hash": entry.leaf_hash,
        "image_id": (pred.get("image") or {}).get("id"),
        "status": build["status"],
        "project": build["project"],
        "build_id": build["id"],
        "created": created,
    }


def _deposit_summary(deposit: DepositResult) -> dict[str, Any]:
    """``deposit`` of the JSON result: whether it is complete, and what it lacks."""
    return {"complete": deposit.complete, "missing": deposit.missing}


def _report(
    app: App,
    as_json: bool,
    entry: Entry,
    created: bool,
    statement: dict[str, Any],
    *,
    deposit: DepositResult | None = None,
    registry: dict[str, Any] | None = None,
    check: bool = True,
) -> None:
    """Print the result; with ``check``, a recorded failed build then raises (exit 1)."""
    result = _result(entry, created, statement)
    failure = statement["predicate"]["build"].get("failure")
    if failure is not None:
        result["failure"] = failure
    if deposit is not None:
        result["deposit"] = _deposit_summary(deposit)
    if registry is not None:
        result.update(registry)
    if as_json:
        app.emit_json(result)
    else:
        app.out(f"ledger entry {entry.index} (leaf {entry.leaf_hash})")
        app.out(f"status:   {result['status']}")
        app.out(f"project:  {result['project']}")
        app.out(f"build id: {result['build_id']}")
        if result["image_id"]:
            app.out(f"image:    {result['image_id']}")
        for b in (registry or {}).get("bases") or []:
            app.out(f"base:     {b['reference']} = {b['repoDigest']} ({b['imageId']})")
        for p in (registry or {}).get("pushed") or []:
            app.out(f"pushed:   {p['reference']} = {p['digest']}")
        if deposit is not None:
            if deposit.complete:
                from escrow.deposit.deposit import complete_words

                app.out(f"deposit:  {complete_words(statement['predicate'])}")
            else:
                lacking = ", ".join(f"{m.get('kind')} {m.get('name')}" for m in deposit.missing)
                app.out(
                    f"deposit:  incomplete, lacking {lacking} "
                    f"(`escrow deposit check {entry.index}` says why)"
                )
    for moved in (registry or {}).get("movedBases") or []:
        app.say(f"escrow: note: {moved['message']}")
    if failure is not None and check:
        where = f"step {failure['step']}" if failure.get("step") else "the build"
        code = failure.get("exitCode")
        # no exit code: the engine refused the instruction itself (a COPY source missing,
        # a platform it cannot parse); its own words say why
        reason = " ".join(str(failure.get("message") or "").split()).rstrip(".")
        raise BuildFailed(
            f"{where[0].upper()}{where[1:]} failed"
            + (f" with exit code {code}" if code is not None else "")
            + (f" ({reason})" if code is None and reason else "")
            + f"; the failure is recorded as ledger entry {entry.index}.",
            hint=_buildkit_step_hint(failure)
            or (
                f"`escrow logs {entry.index} {failure['step']}` prints the step's whole log."
                if failure.get("step")
                else None
            ),
        )


def _buildkit_step_hint(failure: dict[str, Any]) -> str | None:
    """Why a step failed when it uses syntax only BuildKit runs: the classic builder
    parses ``RUN --mount`` (and, on older engines, ``COPY --chmod``), starts the build and
    then fails that step with the engine's own message."""
    from escrow.capture.build import buildkit_only

    instruction = str(failure.get("instruction") or "")
    if _PLATFORM_ARG.search(instruction):
        return (
            "The classic builder does not set BuildKit's automatic platform ARGs "
            "($BUILDPLATFORM, $TARGETPLATFORM, …): declare the one FROM uses with a global "
            "ARG (e.g. ARG BUILDPLATFORM=linux/amd64) or name the platform itself."
        )
    found = buildkit_only(instruction)
    if not found:
        return None
    return (
        f"The step uses BuildKit-only syntax ({', '.join(found)}); escrow builds with the "
        "engine's classic builder, so write it without that syntax (a cache mount as a "
        "plain RUN)."
    )


#: ``FROM --platform=$BUILDPLATFORM`` and the like: BuildKit sets these ARGs, the classic
#: builder leaves them empty (and fails the FROM when it parses the platform)
_PLATFORM_ARG = re.compile(
    r"^\s*FROM\s+--platform=\S*\$\{?(?:BUILD|TARGET)(?:PLATFORM|OS|ARCH|VARIANT)\b", re.I
)


def _from_stdin(context: Path, dockerfile: Path | None) -> None:
    """``-`` for the context or the Dockerfile (``docker build -``, ``-f -``): escrow reads
    neither from standard input (it records and deposits files it can read again)."""
    if str(context) == "-" or (dockerfile is not None and str(dockerfile) == "-"):
        what = "build context" if str(context) == "-" else "Dockerfile"
        raise UsageError(
            f"escrow build does not read the {what} from standard input ('-').",
            hint="Save it to a file and pass its path with -f."
            if what == "Dockerfile"
            else "Unpack it into a folder and pass the folder as CONTEXT.",
        )


def _deposit_later(
    index: int, context: Path, dockerfile: Path | None, deposit_store: str | None
) -> str:
    """The command that deposits entry ``index`` once the store works again: the context
    (and Dockerfile) it was built from, and the store named on the command line."""
    import shlex

    words = ["escrow", "deposit", str(index), "--context", str(context)]
    if dockerfile is not None:
        words += ["-f", str(dockerfile)]
    if deposit_store:
        words += ["--deposit-store", deposit_store]
    return shlex.join(words)


def _store_problem(store: DepositStore, error: Exception) -> EscrowError:
    """A deposit store failure as an environment problem (exit 3) naming the store."""
    if isinstance(error, EscrowError):
        return error
    reason = getattr(error, "strerror", None) or str(error)
    return EnvironmentProblem(
        f"Cannot write to the deposit store {store.location}: {reason}.",
        hint="Check the store's path, space and permissions (--deposit-store, "
        "ESCROW_DEPOSIT_STORE).",
    )


def _while_building(publisher: Publisher, context: ContextAhead | None) -> Callable[[], None]:
    """What starts once the engine has the context: the key and ledger (in the
    publisher's thread) and the deposit of the context."""

    def start() -> None:
        publisher.start()
        if context is not None:
            context.start()

    return start


def _publisher(app: App) -> Publisher:
    from escrow.capture.publish import Publisher

    return Publisher.open(app.settings)


@click.command()
@click.argument("context", type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--file",
    "dockerfile",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="The Dockerfile [default: CONTEXT/Dockerfile].",
)
@click.option(
    "-t", "--tag", "tags", multiple=True, required=True, help="Name:tag of the image (repeatable)."
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="A build argument (repeatable).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="NAME=VALUE",
    help="A label set on the image (repeatable), as with docker build; recorded as an input.",
)
@click.option("--target", help="Build only up to this stage.")
@click.option("--platform", help="Target platform, e.g. linux/amd64.")
@click.option(
    "--no-deposit",
    is_flag=True,
    help="Do not deposit the inputs (context, base images, logs) and the built image "
    "for a later rebuild.",
)
@click.option(
    "--pull",
    is_flag=True,
    help="Pull every base image (and COPY --from image) fresh from its registry and pin it "
    "by its manifest digest "
    "(FROM name@sha256:… is honoured); reports a base tag that moved since the last build.",
)
@click.option(
    "--push",
    is_flag=True,
    help="Push the result to the registry named by each -t tag and record the pushed "
    "manifest digest as a second subject.",
)
@click.option(
    "--deposit-store",
    metavar="PATH|oci://HOST[:PORT]/REPO",
    help="The deposit store [default: ESCROW_DEPOSIT_STORE, else deposit_store in "
    "config.json, else ESCROW_HOME/deposits].",
)
@_project_option
@_secret_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress on stderr: neither the steps nor their output (warnings, errors and "
    "the result still).",
)
@json_option
@pass_app
def build(
    app: App,
    context: Path,
    dockerfile: Path | None,
    tags: tuple[str, ...],
    build_args: tuple[str, ...],
    labels: tuple[str, ...],
    target: str | None,
    platform: str | None,
    no_deposit: bool,
    pull: bool,
    push: bool,
    deposit_store: str | None,
    project: str | None,
    secrets: tuple[str, ...],
    quiet: bool,
    as_json: bool,
) -> None:
    """Phoenix-build CONTEXT (no cache, intermediates removed) and record it.

    The context archive is made once by escrow (honouring .dockerignore),
    hashed, and sent as-is to the Docker Engine; the steps, their logs and
    the image are recorded in a signed build manifest appended to the
    ledger.  A failed build is recorded too, and exits with code 1.

    With --pull every base is pulled fresh and pinned by digest; with --push
    the result is pushed and its manifest digest recorded.  A push that fails
    leaves the build recorded without any pushed digest and exits with 3 (the
    registry or the engine failed, refused or could not be reached), or with 1
    when a digest does not match (the registry holds other bytes than were
    pushed).
    """
    from escrow.blobs import BlobStore
    from escrow.capture.build import BuildRequest, parse_build_args, parse_labels, phoenix_build
    from escrow.capture.context import check_context_dir, escrow_folders_in, left_out_note
    from escrow.capture.engine import DockerEngine
    from escrow.capture.progress import make_progress

    _from_stdin(context, dockerfile)
    args = parse_build_args(build_args)
    image_labels = parse_labels(labels)
    from escrow.registry.reference import check_build_tag

    for tag in tags:  # before anything is built: the engine refuses a bad name after
        check_build_tag(tag)
    tags = tuple(dict.fromkeys(tags))  # `-t X -t X`: one tag, tagged and pushed once
    check_context_dir(context)
    request = BuildRequest(
        context=context,
        tags=tags,
        dockerfile=dockerfile,
        build_args=args,
        target=target,
        platform=platform,
        project=project,
        pull=pull,
        labels=image_labels,
        leave_out=escrow_folders_in(context, app.settings.home, deposit_store),
    )
    if request.leave_out and not quiet:
        app.say(left_out_note(request.leave_out, "build context"))
    store = None
    if not no_deposit:  # through a server too: the store is this machine's, or a registry
        from escrow.deposit.store import check_store, open_store

        store = open_store(app.settings.home, deposit_store)  # a bad location fails first
        check_store(store)  # and one that cannot be opened or reached, before the build
    if push:
        from escrow.registry.pull import check_push_tags

        check_push_tags(tags)
    registry: dict[str, Any] | None = None
    push_error: EscrowError | None = None
    deposit_error: EscrowError | None = None
    with _publisher(app) as publisher, DockerEngine() as engine:
        config_of = None
        ahead = None
        context_ahead = None
        if store is not None:
            from escrow.deposit.ahead import ContextAhead, SaveAhead

            # while the engine builds: the context stored, the layers saved
            context_ahead = ContextAhead(store, context, dockerfile, request.leave_out)
            ahead = SaveAhead(engine, store)

            def config_of(image_id: str) -> dict[str, Any]:
                nonlocal deposit_error
                # imported by then, by the deposit ahead: not before the build request
                from escrow.deposit.images import saved_config

                assert store is not None
                try:
                    return saved_config(engine, store, image_id, ahead)
                except (EnvironmentProblem, OSError) as e:
                    # the store failed during the build: record the build all the same
                    deposit_error = _store_problem(store, e)
                    return engine.image_config(image_id)

        outcome = phoenix_build(
            request,
            engine=engine,
            blobs=BlobStore(app.settings.blobs_dir),
            redactor=_redactor(app, secrets),
            progress=make_progress(sys.stderr, quiet=quiet),
            on_build_started=_while_building(publisher, context_ahead),
            config_of=config_of,
            check=publisher.check,
            layers_done=ahead.offer if ahead is not None else None,
        )
        if push and outcome.status == "succeeded":
            from escrow.registry.pull import push_image, record_push

            try:
                pushed = [push_image(engine, tag) for tag in tags]
                record_push(outcome.statement, pushed)
                registry = {"pushed": pushed}
            except EscrowError as e:
                push_error = e
        entry, created = publisher.publish(outcome.statement)
        if pull:
            registry = {**(registry or {}), **_pulled_bases(publisher, outcome, entry)}
        deposit = None
        if store is not None and deposit_error is None:
            from escrow.deposit.deposit import deposit_entry

            try:
                deposit = deposit_entry(
                    store,
                    entry,
                    blobs_dir=app.settings.blobs_dir,
                    context_dir=context,
                    dockerfile=dockerfile,
                    engine=engine,
                    say=app.say if not quiet else None,
                    context_ahead=context_ahead,
                )
            except (EnvironmentProblem, OSError) as e:
                deposit_error = _store_problem(store, e)
        _remove_leftover_images(engine, outcome)
    if deposit_error is not None:
        failed = {"deposit": {"complete": False, "error": deposit_error.message}}
        _report(
            app,
            as_json,
            entry,
            created,
            outcome.statement,
            registry={**(registry or {}), **failed},
            check=False,
        )
        later = _deposit_later(entry.index, context, dockerfile, deposit_store)
        deposit_error.message = (
            f"{deposit_error.message.rstrip('.')}. The build is recorded as ledger entry "
            f"{entry.index}, without a deposit (`{later}` makes it later)."
        )
        raise deposit_error
    if push_error is not None:
        _report_not_pushed(app, as_json, entry, created, outcome.statement, deposit)
        # the registry's own message ends "nothing was recorded": the build is, though
        reason = push_error.message.rstrip(".").removesuffix("; nothing was recorded")
        push_error.message = (
            f"{reason}. The build is recorded as ledger entry {entry.index} without any "
            "pushed digest."
        )
        raise push_error
    _report(app, as_json, entry, created, outcome.statement, deposit=deposit, registry=registry)


def _remove_leftover_images(engine: DockerEngine, outcome: BuildOutcome) -> None:
    """Once the build is recorded: remove the images of the stages before the one built
    (of a failed build, all its step images).  The classic builder keeps them, untagged,
    and their history names the build args, secret ones too.  A single-stage build that
    succeeded has none, and costs nothing here."""
    import contextlib

    from escrow.capture.build import leftover_step_images

    images = leftover_step_images(
        outcome.statement["predicate"], built_stage_too=outcome.status != "succeeded"
    )
    if images:
        with contextlib.suppress(EscrowError):  # the build is recorded: tidying is optional
            engine.remove_step_images(images)


def _pulled_bases(publisher: Publisher, outcome: BuildOutcome, entry: Entry) -> dict[str, Any]:
    """What ``--pull`` adds to the result: ``bases``, each base image as it was pinned, and
    ``movedBases``, those whose tag moved since the project's last build."""
    from escrow.registry.pins import moved_bases

    predicate = outcome.statement["predicate"]
    return {
        "bases": [
            {k: b.get(k) for k in ("stage", "reference", "repoDigest", "imageId", "pinnedBy")}
            for b in predicate["inputs"]["baseImages"]
            if b.get("source") == "image"
        ],
        "movedBases": moved_bases(
            publisher.ledger, predicate, before=entry.index, project=outcome.project
        ),
    }


def _report_not_pushed(
    app: App,
    as_json: bool,
    entry: Entry,
    created: bool,
    statement: dict[str, Any],
    deposit: DepositResult | None,
) -> None:
    """Print the result of a build that is recorded but whose push failed."""
    if not as_json:
        app.out(f"ledger entry {entry.index} (leaf {entry.leaf_hash}), NOT pushed")
        return
    result = _result(entry, created, statement)
    if deposit is not None:
        result["deposit"] = _deposit_summary(deposit)
    app.emit_json({**result, "pushed": []})


@click.command(short_help="Record IMAGE, built by other means, as it is.")
@click.argument("image")
@click.option(
    "--context",
    "context",
    type=click.Path(path_type=Path),
    metavar="DIRECTORY",
    help="The build context the image was made from (recorded as inputs).",
)
@click.option(
    "-f",
    "--file",
    "dockerfile",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="The Dockerfile or build script the image was made from.",
)
@_capture_project_option
@_secret_option
@json_option
@pass_app
def capture(
    app: App,
    image: str,
    context: Path | None,
    dockerfile: Path | None,
    project: str | None,
    secrets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Record IMAGE, built by other means (e.g. `docker commit` steps), as it is.

    Records its config, full history (each commit's command or comment),
    layers mapped to history entries, and the inputs when --context is given.
    """
    from escrow.blobs import BlobStore
    from escrow.capture.capture import capture_image
    from escrow.capture.engine import DockerEngine

    with _publisher(app) as publisher, DockerEngine() as engine:
        statement = capture_image(
            image,
            engine=engine,
            blobs=BlobStore(app.settings.blobs_dir),
            context=context,
            dockerfile=dockerfile,
            project=project,
            redactor=_redactor(app, secrets),
        )
        entry, created = publisher.publish(statement)
    _report(app, as_json, entry, created, statement)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--image",
    metavar="IMAGE",
    help="The image the command produces (recorded when it succeeds).",
)
@click.option(
    "--context",
    "context",
    type=click.Path(path_type=Path),
    metavar="DIRECTORY",
    help="The folder the command builds from [default: the working directory].",
)
@_project_option
@_secret_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress on stderr: the command's output is not echoed there (it is recorded "
    "all the same; warnings, errors and the result still).",
)
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def record(
    app: App,
    image: str | None,
    context: Path | None,
    project: str | None,
    secrets: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (after --) and record it: argv, exit code, duration, log,
    the context digest before and after, and the image it produced.

    escrow exits with the command's own exit code, except: 1 when the command succeeded
    but the --image it should have made is not in the engine (recorded as a failed
    build), and 3 when the ledger cannot be reached (the signed entry is kept under
    ESCROW_HOME/unrecorded/ for `escrow post`).
    """
    from escrow.blobs import BlobStore
    from escrow.capture.engine import DockerEngine
    from escrow.capture.record import record_command

    with _publisher(app) as publisher, DockerEngine() as engine:
        outcome = record_command(
            list(command),
            image=image,
            context=context,
            project=project,
            engine=engine if image else None,
            blobs=BlobStore(app.settings.blobs_dir),
            redactor=_redactor(app, secrets),
            echo=None if quiet else sys.stderr,
        )
        entry, created = publisher.publish(outcome.statement)
    result = _result(entry, created, outcome.statement)
    result["exit_code"] = outcome.exit_code
    cmd = outcome.statement["predicate"]["command"]
    result["inputs_changed"] = cmd["inputsChanged"]
    failure = outcome.statement["predicate"]["build"].get("failure")
    if failure is not None:  # why it failed (an --image that was not made), as `build` says
        result["failure"] = failure
    if as_json:
        app.emit_json(result)
    else:
        app.out(f"ledger entry {entry.index} (leaf {entry.leaf_hash})")
        app.out(f"status:    {result['status']} (exit code {outcome.exit_code})")
        app.out(f"project:   {result['project']}")
        if result["image_id"]:
            app.out(f"image:     {result['image_id']}")
    if cmd.get("contextAfterError"):
        app.say(
            "escrow: warning: the context after the command could not be read "
            f"({str(cmd['contextAfterError']).rstrip('.')}), so whether the command changed "
            "its own inputs is unknown."
        )
    elif cmd["inputsChanged"]:
        app.say(
            "escrow: warning: the command changed its own inputs (the context digest differs"
            " before and after)."
        )
    if result["image_id"] is not None and cmd.get("imageBefore") == result["image_id"]:
        app.say(
            f"escrow: warning: {image} was already this image before the command ran, so "
            "the command did not make it (or made the very same image); recorded as "
            "`command.imageBefore`."
        )
    if outcome.exit_code != 0:
        how = (
            f"was killed by {outcome.signal} (exit code {outcome.exit_code})"
            if outcome.signal is not None
            else f"exited with code {outcome.exit_code}"
        )
        app.say(f"escrow: the command {how}; recorded as ledger entry {entry.index}.")
        sys.exit(outcome.exit_code)
    if failure is not None:
        raise BuildFailed(
            f"{failure['message'].rstrip('.')}; recorded as failed ledger entry {entry.index}."
        )


@click.command()
@click.argument("index", type=int)
@click.argument("step", type=int, required=False)
@json_option
@pass_app
def logs(app: App, index: int, step: int | None, as_json: bool) -> None:
    """Print the recorded logs of ledger entry INDEX (all steps, or STEP)."""
    from escrow.blobs import BlobStore
    from escrow.capture.logs import entry_logs

    entry = app.ledger(readonly=True).get(index)
    try:
        items = entry_logs(entry.statement(), BlobStore(app.settings.blobs_dir), step)
    except InputError as e:  # name the entry (`The entry has no …` does not)
        if e.message.startswith("The entry has no recorded logs"):
            from escrow.documents.types import SCHEMA_NAMES

            kind = SCHEMA_NAMES.get(entry.predicate_type, entry.predicate_type)
            build = (entry.statement().get("predicate") or {}).get("build") or {}
            if kind == "build-manifest" and build.get("kind") == "image":
                # `escrow capture`: a build-manifest too, but of an image built elsewhere
                raise InputError(
                    f"Entry {index} has no recorded logs (it records an image captured with "
                    "`escrow capture`, built by other means, whose output escrow never saw)."
                ) from e
            raise InputError(
                f"Entry {index} has no recorded logs (it is a {kind}, not a build or a "
                "recorded command)."
            ) from e
        if e.message.startswith("The entry "):
            raise InputError(f"Entry {index} {e.message[len('The entry ') :]}", hint=e.hint) from e
        raise
    if as_json:
        app.emit_json({"index": index, "logs": [_json_log(item) for item in items]})
        return
    # to a file or a pipe, the recorded bytes as they are (they hash to the recorded
    # digest); to a terminal, as text: a build's output must not drive the reader's
    # terminal (retitle it, erase or rewrite rows) any more than a recorded name may
    isatty = getattr(sys.stdout, "isatty", None)
    terminal = bool(isatty is not None and isatty())
    exact = not terminal and (sys.stdout is None or hasattr(sys.stdout, "buffer"))
    for item in items:
        if step is None:
            app.say(f"── step {item['step']}: {item['instruction']}")
        if not item["data"]:  # else nothing at all says the step was found and is empty
            app.say(f"escrow: step {item['step']} printed nothing.")
        if exact:  # whatever the locale (nowhere, started with stdout closed)
            from escrow.cli.stdout import write_bytes

            write_bytes(item["data"])
        elif terminal:  # in the terminal's encoding, what it lacks written readably
            from escrow.text import printable

            text = item["data"].decode("utf-8", errors="replace").replace("\r\n", "\n")
            sys.stdout.write(printable(text))
            sys.stdout.flush()
        else:
            sys.stdout.write(item["data"].decode("utf-8", errors="replace"))


def _json_log(item: dict[str, Any]) -> dict[str, Any]:
    """One log of ``escrow logs --json``: ``text``, exact when ``exact`` is true (the log is
    UTF-8); a log that is not (binary output) has its bytes exactly in ``base64`` too, and
    ``text`` shows them with U+FFFD for what is not UTF-8."""
    import base64

    data: bytes = item["data"]
    out = {k: v for k, v in item.items() if k != "data"}
    try:
        out.update(text=data.decode("utf-8"), exact=True)
    except UnicodeDecodeError:
        out.update(
            text=data.decode("utf-8", errors="replace"),
            exact=False,
            base64=base64.b64encode(data).decode("ascii"),
        )
    return out
